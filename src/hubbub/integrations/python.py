"""In-process Python handlers, written exactly as for Lambda: ``handler(event, context)``.

Plain functions run in a thread pool so that a blocking call (boto3, a database) never stalls the
event loop; ``async def`` handlers are awaited on the loop. Modules are loaded by file path
relative to the config's folder, once per file (like one warm Lambda container), with that folder
on ``sys.path`` so handlers can import their siblings.

A route with its own code root (``code = "functions/chat"``, as an imported template gives it)
loads through :func:`load_function` instead: each function imports from its code root and layers
only, apart from every other function (see there).
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import contextvars
import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

from hubbub.errors import ConfigError, HandlerError
from hubbub.integrations.base import LambdaContext

_MODULES: dict[Path, ModuleType] = {}
# (code root, layer paths, module) -> the module, once per function's code like a warm container.
_FUNCTIONS: dict[tuple[Path, tuple[Path, ...], str], ModuleType] = {}
_import_lock = threading.Lock()


def load_handler(
    spec: str, base_dir: Path, *, key: str = "handler", fresh: bool = False
) -> Callable[..., Any]:
    """Resolve ``"pkg.module.function"`` against ``base_dir``; errors name the config ``key``.

    ``fresh``: import the module again even if it is loaded (a hot reload, see
    hubbub.integrations.reimport); if that fails, the loaded module stays.
    """
    module_path, _, func_name = spec.rpartition(".")
    rel = Path(*module_path.replace("/", ".").split("."))
    candidates = [base_dir / rel.with_suffix(".py"), base_dir / rel / "__init__.py"]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise ConfigError(key, f"no module {module_path!r} under {base_dir} ({candidates[0].name})")
    module = _load_module(file.resolve(), base_dir.resolve(), module_path, key, fresh)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(key, f"{module_path!r} has no function {func_name!r}")
    handler: Callable[..., Any] = func
    return handler


def _load_module(file: Path, base_dir: Path, dotted: str, key: str, fresh: bool) -> ModuleType:
    cached = _MODULES.get(file)
    if cached is not None and not fresh:
        return cached
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    # A unique module name per file: two APIs (or tests) may both have a "handler.py".
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    name = f"_hubbub_handler_{digest}_{dotted.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for exotic files
        raise ConfigError(key, f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if cached is not None:
            sys.modules[name] = cached  # a failed reload keeps the module that works
        else:
            del sys.modules[name]
        raise HandlerError(key, f"importing {file.name} failed", *_failure(exc)) from exc
    _MODULES[file] = module
    return module


def _failure(exc: BaseException) -> tuple[str, str]:
    """Where an import failed (``file:line`` of the last frame) and the error, one line each."""
    if isinstance(exc, SyntaxError):  # raised by the compiler: no frame of the file itself
        return f"{exc.filename}:{exc.lineno}", f"SyntaxError: {exc.msg}"
    frames = traceback.extract_tb(exc.__traceback__)
    location = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    text = str(exc)
    return location, f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def layer_path(layer: Path) -> Path:
    """Where a layer's Python packages are: its python/ folder (Lambda puts /opt/python on the
    path), else the layer folder itself (a SAM layer built from its source folder)."""
    python = layer / "python"
    return python if python.is_dir() else layer


def load_function(
    spec: str,
    code: Path,
    layers: tuple[Path, ...] = (),
    *,
    key: str = "handler",
    fresh: bool = False,
) -> Callable[..., Any]:
    """Resolve ``"pkg/module.function"`` (Lambda's spelling) in a function's own code root.

    The module is imported by its own name (``app``, ``src.handlers.connect``), as Lambda
    imports it, with ``code`` and the layers first on ``sys.path``. Functions whose modules share
    a name (three ``lambda_function.py`` in three folders) must not see each other's: while one
    loads, modules of the same top-level names loaded for another function are out of
    ``sys.modules``, and afterwards every module that came from this function's folders is taken
    out again (the function keeps them through its module's globals). Imports of sibling modules
    made inside a handler at call time (rather than at module level) don't see the code root.
    ``fresh``: import again even if loaded (a hot reload); if that fails, the loaded one stays.
    """
    module_name, _, func_name = spec.rpartition(".")
    dotted = module_name.replace("/", ".")
    roots = (code.resolve(), *(layer_path(layer).resolve() for layer in layers))
    cache_key = (roots[0], roots[1:], dotted)
    module = None if fresh else _FUNCTIONS.get(cache_key)
    if module is None:
        with _import_lock:
            module = (None if fresh else _FUNCTIONS.get(cache_key)) or _import_isolated(
                dotted, roots, key
            )
            _FUNCTIONS[cache_key] = module
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(key, f"{module_name!r} in {code} has no function {func_name!r}")
    handler: Callable[..., Any] = func
    return handler


def _import_isolated(dotted: str, roots: tuple[Path, ...], key: str) -> ModuleType:
    top = dotted.split(".", maxsplit=1)[0]
    first = roots[0] / Path(*dotted.split("."))
    if not (first.with_suffix(".py").is_file() or (first / "__init__.py").is_file()):
        raise ConfigError(key, f"no module {dotted!r} under {roots[0]} ({first.name}.py)")
    # Top-level names this function's folders provide: an earlier import of the same name
    # (another function's, or the process's own) must not answer for them.
    own = {top}
    for root in roots:
        for entry in root.iterdir():
            name = entry.stem if entry.suffix == ".py" else entry.name
            if entry.suffix == ".py" or (entry.is_dir() and name.isidentifier()):
                own.add(name)
    shadowed = {
        name: module for name, module in list(sys.modules.items()) if name.split(".")[0] in own
    }
    for name in shadowed:
        del sys.modules[name]
    before = set(sys.modules)
    saved_path = list(sys.path)
    sys.path[:0] = [str(root) for root in roots]
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(dotted)
    except Exception as exc:
        where = f"importing {dotted} from {roots[0]} failed"
        raise HandlerError(key, where, *_failure(exc)) from exc
    finally:
        sys.path[:] = saved_path
        new = set(sys.modules) - before
        # Decide for all first: a namespace package's path is recomputed from its parent's.
        mine = [n for n in new if n.split(".")[0] in own or _inside(sys.modules[n], roots)]
        for name in mine:
            del sys.modules[name]
        sys.modules.update(shadowed)
    return module


def _inside(module: ModuleType | None, roots: tuple[Path, ...]) -> bool:
    spec = getattr(module, "__spec__", None)
    file = getattr(module, "__file__", None) or getattr(spec, "origin", None)
    if file is None:
        locations = list(getattr(spec, "submodule_search_locations", None) or [])
        file = locations[0] if locations else None
    if not isinstance(file, str):
        return False
    path = Path(file)
    return any(path.is_relative_to(root) for root in roots)


# A call waiting for a thread: its future, the caller's context, the function and its arguments.
_Call: TypeAlias = tuple[
    "asyncio.Future[object]", contextvars.Context, Callable[..., Any], tuple[Any, ...]
]
# A finished call: its future, and the result or the exception.
_Done: TypeAlias = tuple["asyncio.Future[object]", object, BaseException | None]


class HandlerPool:
    """One route's threads for plain ``def`` handlers, and the handoff between them and the loop.

    Replaces ``loop.run_in_executor`` on a ``ThreadPoolExecutor``, which cost a ``def`` $connect
    five to seven context switches (the server runs on one core): waking a thread preempted the
    loop only for the thread to wait for the GIL, and each result woke the loop the same way.
    Here the threads yield to the loop on wakeups (see :func:`_yield_to_the_loop`), a thread is
    woken only when no other is about to look for calls (one just woken, or between two calls),
    and finished calls go back in batches: one ``call_soon_threadsafe`` per batch, not per
    result. Together: about 0.3 context switches per $connect, and a ``concurrent.futures``
    future, work item and ``wrap_future`` less per call.

    The handoff uses only C-level primitives: each sleeping thread waits on a lock of its own
    (held while it sleeps, released by whoever wakes it), where a ``threading.Condition`` runs
    a dozen lines of Python per wait and per notify and allocates a lock per wait.

    A thread that takes a call while more wait wakes one more, so handlers that block still run
    side by side, up to ``max_threads`` and never on another route's threads. One pool serves
    one event loop: the first that runs a call in it.

    A call its caller gave up on while it runs (the handler timed out) cannot be stopped: Python
    cannot kill a thread. Its thread is *abandoned* instead: it no longer counts against
    ``max_threads``, so another thread takes the waiting calls, and it ends once the handler
    returns. Abandoned threads are bounded too (``ABANDONED_PER_THREAD`` times ``max_threads``):
    past that, a timed-out call keeps its place, and the pool is as slow as its handlers until
    they return.
    """

    ABANDONED_PER_THREAD = 3

    def __init__(self, max_threads: int, name: str) -> None:
        self._max_threads = max_threads
        self._name = name
        self._lock = _thread.allocate_lock()
        self._calls: deque[_Call] = deque()  # guarded by _lock, like the flag and counters
        self._closed = False
        self._threads = 0
        # The wake-up locks of the sleeping threads, held by the thread while it sleeps; the
        # last to sleep is woken first (its stack and caches are the warmest).
        self._idle: list[_thread.LockType] = []
        self._takers = 0  # threads woken or between calls: they look for a call before sleeping
        self._running: set[asyncio.Future[object]] = set()  # calls a thread has taken
        self._abandoned = 0  # threads still in a call whose caller gave up (see above)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: deque[_Done] = deque()  # finished calls the loop has not seen yet
        # A delivery is scheduled on the loop. Read and set without the lock: a race only
        # schedules one delivery too many, which finds nothing to deliver.
        self._delivering = False

    def submit(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[object]:
        """On the loop: ``func(*args)`` on one of the threads, in a copy of the caller's context
        (the function's environment overlay, see environment.py). The future has its result, or
        its exception.

        Cancelled (the caller's timeout), the call still runs if a thread took it already; its
        result is then dropped. A call no thread took yet never runs.
        """
        loop = self._loop
        if loop is None:  # looked up once: on Python 3.11 it is a getpid system call per call
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: the handler pool is closed")
            self._calls.append((future, contextvars.copy_context(), func, args))
            if not self._takers:
                self._wake_one()
        future.add_done_callback(self._given_up)
        return future

    def _given_up(self, future: asyncio.Future[object]) -> None:
        """On the loop, when a call's future is done: if it was cancelled while a thread runs
        it, abandon that thread (see the class docstring) and let another take the queue."""
        if not future.cancelled():
            return
        with self._lock:
            if future not in self._running:
                return  # not taken yet (it never runs), or finished already
            if self._abandoned >= self._max_threads * self.ABANDONED_PER_THREAD:
                return  # bounded: the thread keeps its place in max_threads
            self._running.discard(future)
            self._threads -= 1
            self._abandoned += 1
            if self._calls:
                self._wake_one()

    def close(self) -> None:
        """On the loop: cancel the calls no thread took; the threads end (after their call)."""
        with self._lock:
            self._closed = True
            calls = list(self._calls)
            self._calls.clear()
            self._takers += len(self._idle)  # woken below: each looks once more, then ends
            for wake in self._idle:
                wake.release()
            self._idle.clear()
        for future, *_ in calls:
            future.cancel()

    def _wake_one(self) -> None:
        """Make sure some thread takes the newest call (with _lock held)."""
        if self._takers:
            return
        if self._idle:
            self._takers += 1
            self._idle.pop().release()
        elif self._threads < self._max_threads:
            self._threads += 1
            self._takers += 1
            name = f"{self._name}_{self._threads - 1}"
            # A daemon: a handler that never returns must not keep the process alive.
            threading.Thread(target=self._work, name=name, daemon=True).start()
        # Otherwise every thread is in a call: the first to finish takes this one.

    def _work(self) -> None:
        """A pool thread: take calls until the pool closes or abandons it. One frame for the
        whole loop (taking a call, running it, handing its result over)."""
        _yield_to_the_loop()
        wake = _thread.allocate_lock()  # held while this thread sleeps (see _idle)
        wake.acquire()
        lock = self._lock
        calls = self._calls
        running = self._running
        while True:
            with lock:
                while not calls:
                    self._takers -= 1
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle.append(wake)
                    lock.release()
                    try:
                        wake.acquire()  # whoever releases it counts us as a taker again
                    finally:
                        lock.acquire()
                future, context, func, args = calls.popleft()
                running.add(future)
                self._takers -= 1
                if calls:
                    self._wake_one()  # the rest must not wait for this call to end
            done: _Done | None = None
            if not future.cancelled():  # else its caller gave up before a thread took it
                try:
                    done = (future, context.run(func, *args), None)
                except BaseException as exc:  # the caller's to handle, as with run_in_executor
                    done = (future, None, exc)
            with lock:
                if future not in running:  # abandoned: another thread has its place
                    self._abandoned -= 1
                    return
                running.discard(future)
                self._takers += 1  # between calls: it looks for the next one before sleeping
            if done is not None:
                self._done.append(done)
                if not self._delivering:
                    self._deliver_soon()
            del done, future, context, func, args  # not kept alive while this thread sleeps

    def _deliver_soon(self) -> None:
        self._delivering = True
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits for these results any more
            self._done.clear()

    def _deliver(self) -> None:
        """On the loop: every finished call's result to its caller."""
        self._delivering = False  # before draining: a result appended from now on is seen
        done = self._done
        while done:
            future, result, exc = done.popleft()
            if future.done():  # cancelled by the caller's timeout
                continue
            if exc is None:
                future.set_result(result)
            elif isinstance(exc, StopIteration):
                # A future refuses StopIteration (the TypeError would lose the rest of the
                # batch): the caller gets the handler's failure as a RuntimeError instead.
                error = RuntimeError(f"handler raised StopIteration: {exc!r}")
                error.__cause__ = exc
                future.set_exception(error)
            else:
                future.set_exception(exc)


def _yield_to_the_loop() -> None:
    """Let the calling handler thread never preempt the event loop when it wakes (Linux).

    The gateway often runs on one core. A normal thread woken there (a new call, a blocking
    call's answer) preempts the loop at once, only to find the GIL taken and sleep again: two
    context switches for nothing. A ``SCHED_BATCH`` thread is not run ahead of the running
    thread on wakeup; it runs when the loop waits in ``select`` (releasing the GIL) or at the
    next scheduler tick, and then takes every call queued meanwhile. Elsewhere, or where a
    sandbox refuses it, the thread keeps the normal policy. Threads a handler starts inherit it.
    """
    setscheduler = getattr(os, "sched_setscheduler", None)
    if setscheduler is None:
        return
    with contextlib.suppress(OSError):
        setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class PythonIntegration:
    """One route's Python handler."""

    def __init__(self, name: str, func: Callable[..., Any], pool: HandlerPool) -> None:
        self.name = name
        self._func = func
        self._pool = pool
        self.is_async = inspect.iscoroutinefunction(func)

    def with_handler(self, func: Callable[..., Any]) -> PythonIntegration:
        """The same function with a reloaded handler, on the same threads (calls of the old
        handler that are queued or running there finish on it)."""
        return PythonIntegration(self.name, func, self._pool)

    def invoke(self, event: dict[str, Any], context: LambdaContext) -> Awaitable[object]:
        """The handler's coroutine, or the pool's future of a ``def`` handler's result: handed
        to the invoker as they are (a coroutine of ours awaiting them would cost a frame to
        create and resume per call)."""
        if self.is_async:
            coro: Awaitable[object] = self._func(event, context)
            return coro
        return self._pool.submit(self._func, event, context)

    async def close(self) -> None:
        return None

"""Route → integration: timeouts, concurrency caps, and the one place handler errors are caught.

Every invocation ends in an :class:`Outcome` (on the message path, a successful one in its bare
proxy result: :meth:`Invoker.answer_now`); nothing a handler does (raise, hang, return garbage)
escapes this module. The callers turn outcomes into HTTP statuses ($connect) or frames (messages).

Two ways to invoke: :meth:`Invoker.invoke` awaits the integration under the caps and the
watchdog (callers give it a task of its own), and :meth:`Invoker.invoke_inline` runs an ``async
def`` handler without ``await`` to its end at once: it cannot suspend, so it needs no task, no
watchdog and no wait for a slot (messages, which may have no coroutine to await it in, use
:meth:`Invoker.answer_now`, the same without a coroutine of its own). :meth:`Invoker.invoke_awaited`
picks one of the two for $connect and $disconnect, which await their handler in a task of their
own anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

from hubbub.aws.results import ProxyResult, parse_proxy_result
from hubbub.errors import InvalidProxyResult
from hubbub.gateway import logs
from hubbub.gateway.metrics import RouteStats
from hubbub.integrations import environment
from hubbub.integrations.base import Integration, LambdaContext, LambdaFunction

log = logging.getLogger("hubbub.invoke")
_clock = time.perf_counter
# Bound once for Invoker.answer_now, which runs once per routed message.
_function_env = environment.function_env
_reset_env = environment.reset
_access = logs.ACCESS
_access_enabled = _access.isEnabledFor
# Logger.isEnabledFor is a Python frame per call. Its answers are kept in the logger's _cache,
# which every setLevel (and logging.disable) empties in place, so answer_now reads that dict
# from C and asks isEnabledFor only when it holds no answer; ``disabled`` (set by
# logging.config) is never cached, so it is read as isEnabledFor reads it. Without the
# attribute the lookup always misses: isEnabledFor answers every time.
_access_cached: Callable[[int], bool | None] = getattr(_access, "_cache", {}).get
_monotonic = time.monotonic
_INFO = logging.INFO

# Inline handlers are ``async def`` functions (routing.never_suspends): real coroutines.
_Coroutine: TypeAlias = "types.CoroutineType[Any, Any, object]"  # not subscriptable in 3.11
InlineHandler: TypeAlias = Callable[[dict[str, Any], LambdaContext], _Coroutine]


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    integration: Integration
    timeout: float
    two_way: bool = False
    is_async: bool = False
    # The function's own environment variables (see hubbub.integrations.environment).
    environment: Mapping[str, str] = field(default_factory=dict)
    # The handler itself when it is an ``async def`` without ``await`` (see Invoker.invoke_inline).
    inline: InlineHandler | None = None
    # The Lambda function this route is (name, ARN, log names, memory) for its context.
    function: LambdaFunction | None = None
    # Its invocations, counted and timed for /metrics (hubbub.gateway.metrics).
    stats: RouteStats = field(default_factory=RouteStats, compare=False)


class Outcome(NamedTuple):
    """``result`` on success; otherwise ``error`` says what went wrong (for logs and frames).

    A named tuple rather than a frozen dataclass: one per message, built in a third of the time.
    """

    result: ProxyResult | None
    error: str | None = None
    rejected: bool = False  # refused by a concurrency cap before running
    raw: object = None  # the handler's return value, before proxy-result parsing
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


BUSY = "Too many concurrent requests"
_new_tuple = tuple.__new__


class _NotNow:
    """The type of :data:`NOT_NOW`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_NOW"


#: :meth:`Invoker.answer_now`'s answer when no slot is free (or someone waits for one): nothing
#: ran, the caller takes the queued path (:meth:`Invoker.invoke` in a task of its own).
NOT_NOW = _NotNow()

#: What :meth:`Invoker.answer_now` answers: the route response's body (a ``str``, the common
#: ``{"statusCode": 200, "body": "<ASCII text>"}``), any other proxy result, an Outcome when the
#: invocation failed, None when the handler cancelled itself, or :data:`NOT_NOW`.
Answer: TypeAlias = "str | ProxyResult | Outcome | _NotNow | None"


def _as_outcome(answer: str | ProxyResult | Outcome) -> Outcome:
    """An answer of :meth:`Invoker.answer_now` as the Outcome :meth:`Invoker.invoke_now` gives."""
    if type(answer) is str:
        answer = ProxyResult(200, body=answer)
    if type(answer) is ProxyResult:
        return _new_tuple(Outcome, (answer, None, False, None, None))
    return answer  # type: ignore[return-value]  # an Outcome


@types.coroutine
def _inline_driver() -> Generator[object, _Coroutine | None, None]:
    """Drive inline handlers' coroutines, one per ``send``, answering each one's return value.

    ``yield from`` gets a finished coroutine's value from the interpreter directly; a caller's
    own ``coro.send(None)`` would get it in a ``StopIteration``. Prime it with ``send(None)``.
    When the coroutine raises, so does ``send``, and the driver is finished. When it suspends,
    ``send`` answers what it yielded, and the coroutine's ``cr_frame`` is still set.
    """
    raw: object = None
    while True:
        coro = yield raw
        assert coro is not None
        raw = yield from coro  # type: ignore[misc]  # allowed: this is a types.coroutine


class Deadline:
    __slots__ = ("at", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], at: float) -> None:
        self.task = task
        self.at = at
        self.expired = False


class Watchdog:
    """Handler timeouts for every invocation from one periodic check.

    ``asyncio.timeout`` per invocation cost ~7% of the routed message path (a timer handle, a
    context manager and the current-task lookup each time). Handler timeouts are seconds long
    (AWS: 50 ms - 29 s), so a check every ``TICK`` seconds is precise enough: an invocation is
    cancelled at most ``TICK`` late, and the invoker turns that cancellation into a timeout.
    """

    TICK = 0.025

    def __init__(self) -> None:
        self._watched: dict[Deadline, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        # The loop of the last watch: asking for the current task of a given loop skips
        # get_running_loop, a getpid system call per call on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, timeout: float) -> Deadline:
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is None:  # the first watch, or a loop that is not running (any more)
            loop = self._loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
        assert task is not None
        assert loop is not None
        deadline = Deadline(task, loop.time() + timeout)
        self._watched[deadline] = None
        if self._timer is None:
            self._timer = loop.call_later(self.TICK, self._check, loop)
        return deadline

    def forget(self, deadline: Deadline) -> None:
        self._watched.pop(deadline, None)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for deadline in [d for d in self._watched if d.at <= now]:
            del self._watched[deadline]
            deadline.expired = True
            deadline.task.cancel()
        self._timer = loop.call_later(self.TICK, self._check, loop) if self._watched else None


class Invoker:
    """Runs integrations under a global cap with a bounded wait queue."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        region: str,
        account_id: str,
        async_api: Any = None,
        sync_api: Any = None,
    ) -> None:
        # The cap is two counters and a queue rather than an asyncio.Semaphore: its locked,
        # acquire and release (and their scans of the waiters) were ~7 Python frames per
        # invocation. ``in_flight`` counts the slots held; a slot freed while invocations wait
        # goes to the first waiter (FIFO, as the semaphore's) without leaving ``in_flight``, and
        # that waiter is counted in ``_waiting`` until it runs on.
        self._max_concurrent = max_concurrent
        self._max_waiting = max_concurrent
        self._waiting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._region = region
        self._account_id = account_id
        self._functions: dict[str, LambdaFunction] = {}
        self.async_api = async_api
        self.sync_api = sync_api
        self.in_flight = 0
        self._watchdog = Watchdog()
        # answer_now's _inline_driver, between two invocations (None while one runs).
        self._driver: Generator[object, _Coroutine | None, None] | None = None

    async def invoke(
        self,
        route: Route,
        event: dict[str, Any],
        *,
        connection_id: str,
        request_id: str,
        proxy: bool = True,
        queue: bool = False,
    ) -> Outcome:
        """Run ``route``'s handler; ``proxy=False`` keeps the raw result (authorizers).

        ``queue=True`` waits for a slot however many already wait, never refused: for
        ``$disconnect``, which must run once per connection whatever the load. Its waiters are the
        closing connections' own tasks, so the queue is bounded by the connections the node held.
        """
        if self.in_flight < self._max_concurrent and not self._waiting:  # can_run_inline
            self.in_flight += 1
        elif self._waiting >= self._max_waiting and not queue:
            logs.event(log, "rejected", route=route.key, connectionId=connection_id, reason=BUSY)
            route.stats.rejected += 1
            return Outcome(None, BUSY, rejected=True)
        else:
            await self._slot_freed()
        started = time.perf_counter()
        try:
            outcome = await self._run(route, event, connection_id, request_id, proxy)
        finally:
            self._release()
        stats = route.stats  # counted for /metrics: a duration, and a label if it failed
        stats.samples.append(_clock() - started)
        result = outcome.result
        if result is None or not 200 <= result.status_code < 300:
            stats.failed(outcome)
        if logs.ACCESS.isEnabledFor(logging.INFO):  # skip building the line when it is off
            self._log_access(route, outcome, connection_id, request_id, started)
        return outcome

    async def _slot_freed(self) -> None:
        """Wait in line for a slot; it is this invocation's (in ``in_flight``) on return."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._waiting += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot as it was cancelled
                self._release()  # passed on
            elif waiter in self._waiters:  # out of the line, not left for _release to skip
                self._waiters.remove(waiter)
            raise
        finally:
            self._waiting -= 1

    def _release(self) -> None:
        """Give up a slot: to the first waiter still waiting, else back to the free ones."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter's future is done: skipped
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def can_run_inline(self) -> bool:
        """A slot is free and nobody waits for one: :meth:`invoke_inline` may run now.

        ``in_flight`` counts the slots held, and a slot being handed to a waiter still counts
        that waiter in ``_waiting``.
        """
        return self.in_flight < self._max_concurrent and not self._waiting

    async def invoke_inline(
        self, route: Route, event: dict[str, Any], *, connection_id: str, request_id: str
    ) -> Outcome | None:
        """Run ``route.inline``; call only when :meth:`can_run_inline`, and await it at once.

        An ``async def`` without ``await`` cannot suspend, so neither does this: awaited in the
        connection's read loop, it runs to its end before the loop reads on. That saves what
        :meth:`invoke` needs for a handler that may suspend (about 3 µs per message): a task,
        the slot's acquire and release (the slot is held across no suspension, so nobody can
        see it taken) and the watchdog (nothing could interrupt the handler before it returns,
        as with any handler stuck in a CPU loop). The handler runs in the caller's task (the
        handshake's, for ``$connect``; messages use :meth:`answer_now`, where there may be no
        task at all). Returns None when the handler raised
        CancelledError itself: nothing to answer, as for a cancelled task.
        """
        assert route.inline is not None
        self.in_flight += 1
        started = time.perf_counter()
        token = environment.function_env(route.environment)
        try:
            # Awaited rather than driven with send(): the return value then needs no
            # StopIteration (an exception object and a traceback per message).
            raw = await route.inline(event, self._context(route))
            outcome = self._parsed(route, raw, connection_id)  # inside the try: see _run
        except asyncio.CancelledError:
            return None
        except Exception as exc:
            outcome = self._failed(route, exc, connection_id, request_id, proxy=True)
        finally:
            environment.reset(token)
            self.in_flight -= 1
        return self._finished(route, outcome, connection_id, request_id, started)

    def invoke_now(
        self, route: Route, event: dict[str, Any], *, connection_id: str, request_id: str
    ) -> Outcome | None:
        """:meth:`invoke_inline` without a coroutine of its own: the handler's coroutine is
        driven to its end here, so a caller that is not a coroutine (the read path of
        :meth:`Socket.deliver_to <hubbub.gateway.transport_aiohttp.Socket.deliver_to>`, called
        by the transport as a frame is parsed) can run it. Same conditions: call only when
        :meth:`can_run_inline`. See :meth:`answer_now`, which does the work.
        """
        answer = self.answer_now(route, event, connection_id, request_id)
        if answer is None:
            return None
        if answer is NOT_NOW:
            raise RuntimeError("invoke_now without a free slot: check can_run_inline first")
        return _as_outcome(answer)  # type: ignore[arg-type]  # not NOT_NOW

    def answer_now(
        self, route: Route, event: dict[str, Any], connection_id: str, request_id: str
    ) -> Answer:
        """:meth:`invoke_now` for the message path, which calls it for every inline route: runs
        the handler when :meth:`can_run_inline` (checked here, one call less per message), else
        answers :data:`NOT_NOW` and runs nothing.

        The handler's proxy result comes back without the :class:`Outcome` around it (building
        one costs as much as the environment's set and reset together). The common result,
        ``{"statusCode": 200, "body": "<ASCII text>"}`` (an ``int`` 200, a ``str`` body, no
        other key), comes back as its body alone: what :func:`parse_proxy_result` would make of
        it is ``ProxyResult(200, body=body)``, and building that tuple (and the call) was about
        3,000 instructions per message. Any other result is parsed. An Outcome when the
        invocation failed (its ``result`` is None); None when the handler raised CancelledError
        itself.

        The coroutine is driven by a generator that outlives it (:func:`_inline_driver`), which
        gets the return value without a ``StopIteration`` (an exception object per message).
        The steps of :meth:`_context`, :meth:`_parsed` and :meth:`_finished` are written out
        here: this runs once per routed message, and each Python call is a sizeable part of it.
        """
        inline = route.inline
        assert inline is not None
        if self.in_flight >= self._max_concurrent or self._waiting:  # can_run_inline, written out
            return NOT_NOW
        self.in_flight += 1
        started = _clock()
        token = _function_env(route.environment)
        try:
            function = route.function
            if function is None:
                context = self._context(route)
            else:
                # LambdaFunction.context written out (its Python frame is a tenth of this).
                context = function.context_type()
                context.gateway = self.async_api if route.is_async else self.sync_api
                context._deadline = _monotonic() + route.timeout
            coro = inline(event, context)
            driver = self._driver
            self._driver = None  # a handler that reaches another inline invocation gets its own
            if driver is None:
                driver = _inline_driver()
                driver.send(None)
            raw = driver.send(coro)
            if coro.cr_frame is not None:  # never_suspends said it cannot; never leave it half run
                driver.close()
                raise RuntimeError("an inline handler suspended")
            self._driver = driver  # (one that raised is finished: a new one next time)
            answer: str | ProxyResult | Outcome
            if (
                type(raw) is dict
                and len(raw) == 2
                and type(body := raw.get("body")) is str
                and type(status := raw.get("statusCode")) is int
                and status == 200
                and body.isascii()  # else parse_proxy_result checks it is Unicode text
            ):
                answer = body
            else:
                try:
                    answer = parse_proxy_result(raw)
                except InvalidProxyResult as exc:  # inside the outer try: see _run
                    answer = self._invalid(route, raw, connection_id, exc)
        except asyncio.CancelledError:
            return None
        except Exception as exc:
            answer = self._failed(route, exc, connection_id, request_id, proxy=True)
        finally:
            _reset_env(token)
            self.in_flight -= 1
        stats = route.stats  # counted for /metrics: a duration, and a label if it failed
        stats.samples.append(_clock() - started)
        if type(answer) is not str and (
            type(answer) is not ProxyResult or not 200 <= answer.status_code < 300
        ):
            stats.failed(_as_outcome(answer))
        enabled = _access_cached(_INFO)  # skip building the line when it is off
        if enabled is None:
            enabled = _access_enabled(_INFO)
        if enabled and not _access.disabled:
            self._log_access(route, _as_outcome(answer), connection_id, request_id, started)
        return answer

    def _finished(
        self, route: Route, outcome: Outcome, connection_id: str, request_id: str, started: float
    ) -> Outcome:
        stats = route.stats  # counted for /metrics: a duration, and a label if it failed
        stats.samples.append(_clock() - started)
        result = outcome.result
        if result is None or not 200 <= result.status_code < 300:
            stats.failed(outcome)
        if logs.ACCESS.isEnabledFor(logging.INFO):  # skip building the line when it is off
            self._log_access(route, outcome, connection_id, request_id, started)
        return outcome

    def invoke_awaited(
        self,
        route: Route,
        event: dict[str, Any],
        *,
        connection_id: str,
        request_id: str,
        queue: bool = False,
    ) -> Coroutine[Any, Any, Outcome | None]:
        """Run ``route``'s handler in the caller's own task ($connect, $disconnect): inline when
        it never suspends and a slot is free, else through :meth:`invoke` (caps and timeout).
        Await the result at once.

        Inline spares a handshake the slot, the watchdog and the timeout bookkeeping. A plain
        function returning the chosen coroutine rather than a coroutine awaiting it: one frame
        less to create and resume per call. None as for :meth:`invoke_inline`: the handler
        raised CancelledError itself. ``queue``: see :meth:`invoke`.
        """
        if route.inline is not None and self.can_run_inline():
            return self.invoke_inline(
                route, event, connection_id=connection_id, request_id=request_id
            )
        return self.invoke(
            route, event, connection_id=connection_id, request_id=request_id, queue=queue
        )

    def _context(self, route: Route) -> LambdaContext:
        function = route.function
        if function is None:  # a route built without one: one per integration name
            name = route.integration.name
            function = self._functions.get(name)
            if function is None:
                function = LambdaFunction(name, region=self._region, account_id=self._account_id)
                self._functions[name] = function
        gateway = self.async_api if route.is_async else self.sync_api
        return function.context(route.timeout, gateway)

    async def _run(
        self, route: Route, event: dict[str, Any], connection_id: str, request_id: str, proxy: bool
    ) -> Outcome:
        context = self._context(route)
        token = environment.function_env(route.environment)
        deadline = self._watchdog.watch(route.timeout)
        try:
            try:
                raw = await route.integration.invoke(event, context)
            except asyncio.CancelledError:
                if not deadline.expired:
                    raise  # cancelled from outside (shutdown): not ours to swallow
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                raise TimeoutError from None
            finally:
                self._watchdog.forget(deadline)
            if not proxy:
                return Outcome(None, raw=raw)
            # Inside the try: what the handler returned may break more than the proxy-result
            # rules (an object whose str() raises); that too is the handler's fault.
            return self._parsed(route, raw, connection_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._failed(route, exc, connection_id, request_id, proxy)
        finally:
            environment.reset(token)

    def _failed(
        self, route: Route, exc: Exception, connection_id: str, request_id: str, proxy: bool
    ) -> Outcome:
        """The outcome of a handler that raised or timed out."""
        if isinstance(exc, TimeoutError):
            log.warning(
                "handler timed out",
                extra={
                    "fields": {
                        "route": route.key,
                        "connectionId": connection_id,
                        "timeout_s": route.timeout,
                    }
                },
            )
            return Outcome(None, f"timed out after {route.timeout:g}s", exception=exc)
        if not proxy and str(exc) == "Unauthorized":
            # An authorizer refusing a client is the normal path, not a failure.
            return Outcome(None, "Unauthorized", exception=exc)
        # The handler's own fault: log it with the connection id, keep the socket.
        log.error(
            "handler raised",
            exc_info=exc,
            extra={
                "fields": {
                    "route": route.key,
                    "connectionId": connection_id,
                    "requestId": request_id,
                }
            },
        )
        return Outcome(None, f"{type(exc).__name__}: {exc}", exception=exc)

    def _parsed(self, route: Route, raw: object, connection_id: str) -> Outcome:
        """The outcome of a handler that returned ``raw``: a proxy result, or an error."""
        try:
            # tuple.__new__ skips the named tuple's Python-level __new__ (once per message).
            return _new_tuple(Outcome, (parse_proxy_result(raw), None, False, None, None))
        except InvalidProxyResult as exc:
            return self._invalid(route, raw, connection_id, exc)

    def _invalid(
        self, route: Route, raw: object, connection_id: str, exc: InvalidProxyResult
    ) -> Outcome:
        """The outcome of a handler whose result is not a valid proxy result."""
        log.error(
            "handler returned an invalid result",
            extra={
                "fields": {
                    "route": route.key,
                    "connectionId": connection_id,
                    "problem": str(exc),
                }
            },
        )
        return Outcome(None, f"invalid result: {exc}", raw=raw, exception=exc)

    def _log_access(
        self, route: Route, outcome: Outcome, connection_id: str, request_id: str, started: float
    ) -> None:
        result = outcome.result
        logs.event(
            logs.ACCESS,
            "invoke",
            route=route.key,
            connectionId=connection_id,
            requestId=request_id,
            status=result.status_code if result else ("error" if outcome.error else "ok"),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            **({"error": outcome.error} if outcome.error else {}),
        )

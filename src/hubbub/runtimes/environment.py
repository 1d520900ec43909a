"""One execution environment: a runtime process and the Runtime API endpoint it alone talks to.

Each environment listens on a loopback port of its own (``AWS_LAMBDA_RUNTIME_API`` =
``127.0.0.1:<port>``): runtimes build their URLs as ``http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/
...``, so the port is the only part of the address that can say which environment asks for its
next event. An environment answers only its own invocation's request id (400
``InvalidRequestID`` otherwise).

Life cycle: started (the process initialises: its first ``GET .../next`` says it is ready), then
one invocation at a time. It ends when the process exits (a crash fails the invocation in flight
with ``Runtime.ExitError``), when it reports ``/init/error`` (its invocation fails with that
error), when it is killed (timeout), or when it is stopped (SIGTERM, then SIGKILL after a grace).

The process runs in a session of its own (killed as a group) and, on Linux, with a parent-death
signal: when hubbub dies, even by SIGKILL, the kernel kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from hubbub.errors import InvocationError
from hubbub.runtimes import http11, protocol
from hubbub.runtimes.endpoint import Connection, Reply

log = logging.getLogger("hubbub.runtime")
# The function's own output: one record per line, with the function's name and request id.
output = logging.getLogger("hubbub.function")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_LINE = 256 * 1024  # longer output lines are split (a runaway print must not grow memory)
_STOP_GRACE = 2.0  # seconds a runtime gets to exit on SIGTERM before SIGKILL

_PR_SET_PDEATHSIG = 1
_libc: Any = None
if sys.platform.startswith("linux"):
    # Loaded here, before any fork: the child only calls prctl (no dlopen after fork).
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # hubbub died before prctl took effect
            os._exit(1)

    return preexec


class Invocation:
    """One event for the environment, and the future its result arrives in."""

    __slots__ = (
        "arn",
        "deadline_ms",
        "delivered",
        "environment",
        "future",
        "payload",
        "released",
        "request_id",
    )

    def __init__(
        self, request_id: str, payload: bytes, deadline_ms: int, arn: str, loop: Any
    ) -> None:
        self.request_id = request_id
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.delivered = False
        self.future: asyncio.Future[object] = loop.create_future()
        self.environment: Environment | None = None  # the one it was handed to (assign)
        # The environment went back to its pool when the runtime answered (on_answered):
        # whoever waits for the result must not release it again.
        self.released = False


class Environment:
    """One runtime process; see the module docstring. ``on_exit`` is called once it has ended."""

    def __init__(
        self,
        function: str,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        *,
        on_exit: Callable[[Environment], None],
        on_answered: Callable[[Environment, Invocation], None] | None = None,
        generation: int = 0,
    ) -> None:
        self.function = function
        self._argv = list(argv)
        self._cwd = cwd
        self._env = dict(env)
        self._on_exit = on_exit
        self._on_answered = on_answered
        self.generation = generation
        self.ready = False  # initialised: it asked for its first event
        self.ended = False  # its process is gone
        self.retiring = False  # killed or stopping: no further invocation
        self.init_error: protocol.FunctionError | None = None
        self.current: Invocation | None = None
        # Output lines without a request id of their own carry the invocation running, or the
        # last one (a line printed just before the answer is read after it, and output between
        # invocations comes from the last one, as on Lambda).
        self._last_request_id: str | None = None
        self._waiting_next: Reply | None = None  # the long poll of invocation/next
        self._process: asyncio.subprocess.Process | None = None
        self._connections: set[Connection] = set()
        self._listener: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.pid = 0
        self.runtime_api = ""  # its AWS_LAMBDA_RUNTIME_API, host:port, once started

    # -- process ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, then start the process (raises InvocationError when it cannot start)."""
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: Connection(self._handle, protocol.MAX_RESPONSE_BYTES, self._connections),
            "127.0.0.1",
            0,
        )
        port = self._listener.sockets[0].getsockname()[1]
        self.runtime_api = f"127.0.0.1:{port}"
        env = {**self._env, "AWS_LAMBDA_RUNTIME_API": self.runtime_api}
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv,
                cwd=self._cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
                limit=_MAX_LINE,
            )
        except OSError as exc:
            await self._close_listener()
            self.ended = True
            raise InvocationError(
                f"Runtime.InvalidEntrypoint: cannot start {self._argv[0]}: {exc.strerror}"
            ) from exc
        self.pid = self._process.pid
        self._tasks.append(loop.create_task(self._pump(self._process)))
        self._tasks.append(loop.create_task(self._watch(self._process)))

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        """The process's stdout and stderr, line by line, into hubbub's log."""
        stream = process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: take what is buffered
                line = await stream.read(_MAX_LINE)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            match = _UUID.search(text)
            request_id = match.group(0) if match else self._last_request_id
            fields: dict[str, object] = {"function": self.function}
            if request_id:
                fields["requestId"] = request_id
            output.info(text, extra={"fields": fields})

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        status = await process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # what it left behind in its session
        if self.init_error is not None:
            error = InvocationError(str(self.init_error))
        else:
            how = f"signal {-status}" if status < 0 else f"exit status {status}"
            error = InvocationError(f"Runtime.ExitError: Runtime exited with error: {how}")
            if self.current is not None and not self.current.future.done():
                log.error(
                    "function runtime exited",
                    extra={
                        "fields": {
                            "function": self.function,
                            "requestId": self.current.request_id,
                            "status": how,
                        }
                    },
                )
        self._end(error)
        await self._close_listener()

    def _end(self, error: InvocationError) -> None:
        if self.ended:
            return
        self.ended = True
        if self.current is not None and not self.current.future.done():
            self.current.future.set_exception(error)
        waiting, self._waiting_next = self._waiting_next, None
        if waiting is not None and waiting.open:
            waiting.refuse(500, "ServiceException", "the execution environment ended")
        self._on_exit(self)

    def kill(self) -> None:
        """SIGKILL the process and everything in its session (a timed-out invocation)."""
        self.retiring = True
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def stop(self, grace: float = _STOP_GRACE) -> None:
        """SIGTERM, SIGKILL after ``grace``; returns once the process ended and its output was
        logged to the last line."""
        self.retiring = True
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            except TimeoutError:
                self.kill()
        if self._tasks:
            # The output pipe closes once every process of the session exited (killpg above).
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
        await self._close_listener()

    async def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()

    # -- invocations ------------------------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> object:
        """Hand ``invocation`` to the runtime and wait for its result (raises InvocationError
        for a reported error, a crash, or an init failure)."""
        self.assign(invocation)
        try:
            return await invocation.future
        finally:
            if self.current is invocation:
                self.current = None

    def assign(self, invocation: Invocation) -> None:
        """Make ``invocation`` this environment's next one: it goes out at once when the runtime
        waits in ``invocation/next``, else with its next ``invocation/next``. Its future gets the
        result (an InvocationError when the environment has ended)."""
        invocation.environment = self
        if self.ended:
            invocation.future.set_exception(
                InvocationError("Runtime.ExitError: the execution environment ended")
            )
            return
        self.current = invocation
        self._last_request_id = invocation.request_id
        waiting, self._waiting_next = self._waiting_next, None
        if waiting is not None and waiting.open:
            self._deliver(invocation, waiting)  # the event goes out from here: no task, no hop

    def unassign(self, invocation: Invocation) -> None:
        """Take back ``invocation`` if the runtime has not received it yet (its caller gave up)."""
        if self.current is invocation and not invocation.delivered:
            self.current = None

    def _handle(self, request: http11.Request, reply: Reply) -> None:
        """One Runtime API request (endpoint.py calls it; ``reply`` may be kept: the long poll)."""
        call = protocol.parse_call(request.method, request.path)
        if isinstance(call, protocol.Refusal):
            reply.refuse(call.status, call.error_type, call.message)
            return
        if call.kind == "next":
            self._next(reply)
            return
        if call.kind == "init_error":
            self._init_error(request, reply)
            return
        invocation = self.current
        if (
            invocation is None
            or not invocation.delivered
            or invocation.request_id != (call.request_id)
        ):
            reply.refuse(400, "InvalidRequestID", f"no invocation {call.request_id} here")
            return
        if invocation.future.done():
            reply.refuse(400, "InvalidStateTransition", "the invocation was already answered")
            return
        if call.kind == "response":
            if request.too_large:
                message = (
                    f"Exceeded maximum allowed payload size ({protocol.MAX_RESPONSE_BYTES} bytes)."
                )
                invocation.future.set_exception(
                    InvocationError(f"Function.ResponseSizeTooLarge: {message}")
                )
                reply.refuse(413, "RequestEntityTooLarge", message)
                self._done(invocation)
                return
            body = request.body
            try:
                result = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                invocation.future.set_exception(
                    InvocationError("Runtime.InvalidResponse: the response is not JSON")
                )
            else:
                invocation.future.set_result(result)
            reply.send_answer(_ACCEPTED[reply.keep_alive])
            self._done(invocation)
            return
        error = protocol.parse_function_error(
            _error_body(request), request.headers.get(_ERROR_TYPE)
        )
        invocation.future.set_exception(InvocationError(str(error)))
        reply.send_answer(_ACCEPTED[reply.keep_alive])
        self._done(invocation)

    def _done(self, invocation: Invocation) -> None:
        """The runtime answered ``invocation``: the environment is free for the next one, which
        its pool may assign right here (on_answered), before the waiting caller even resumes, so
        that the runtime's pipelined ``invocation/next`` gets it within the same read."""
        self.current = None
        if self._on_answered is not None:
            self._on_answered(self, invocation)

    def _next(self, reply: Reply) -> None:
        self.ready = True
        previous = self.current
        if previous is not None and previous.delivered and not previous.future.done():
            # Asking for another event answers this one with nothing: the runtime broke the
            # protocol, and the invocation fails rather than waiting for its timeout.
            previous.future.set_exception(
                InvocationError("Runtime.InvalidResponse: next event asked before answering")
            )
            self._done(previous)
        if self.ended:
            reply.refuse(500, "ServiceException", "the execution environment ended")
            return
        current = self.current
        if current is not None and not current.delivered:
            self._deliver(current, reply)
            return
        # The long poll: answered by invoke() (or _end) when an event comes.
        self._waiting_next = reply

    def _deliver(self, invocation: Invocation, reply: Reply) -> None:
        invocation.delivered = True
        reply.send_answer(
            protocol.invocation_answer(
                invocation.payload,
                invocation.request_id,
                invocation.deadline_ms,
                invocation.arn,
                reply.keep_alive,
            )
        )

    def _init_error(self, request: http11.Request, reply: Reply) -> None:
        if self.ready:
            reply.refuse(403, "InvalidStateTransition", "init/error after initialisation")
            return
        self.init_error = protocol.parse_function_error(
            _error_body(request), request.headers.get(_ERROR_TYPE)
        )
        log.error(
            "function init failed",
            extra={
                "fields": {
                    "function": self.function,
                    "errorType": self.init_error.error_type,
                    "errorMessage": self.init_error.message,
                }
            },
        )
        if self.current is not None and not self.current.future.done():
            self.current.future.set_exception(InvocationError(str(self.init_error)))
        # Lambda ends an environment whose init failed; the next invocation starts a new one.
        self.retiring = True
        asyncio.get_running_loop().call_soon(self.kill)
        reply.send_answer(_ACCEPTED[reply.keep_alive])


_ERROR_TYPE = protocol.ERROR_TYPE.lower()
# The 202 of every accepted post, made once (by keep_alive: with Connection: close or not).
_ACCEPTED = {
    keep_alive: http11.answer(202, b'{"status":"OK"}', keep_alive=keep_alive)
    for keep_alive in (False, True)
}


def _error_body(request: http11.Request) -> bytes:
    """An error report's body; one over MAX_ERROR_BYTES is dropped (the log and the frame need
    little), as if the runtime had sent none."""
    if request.too_large or len(request.body) > protocol.MAX_ERROR_BYTES:
        return b""
    return request.body

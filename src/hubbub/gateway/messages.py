"""The message path of one connection: read, limit, route, invoke, answer.

Each text message is routed by the selection expression and its invocation started as a task —
invocations of one connection run concurrently, as on AWS — bounded by the per-connection cap.
A route whose handler is an ``async def`` without ``await`` cannot suspend: it runs to completion
right here, without a task (see :meth:`Invoker.answer_now`), unless the global cap is reached.
Text messages that arrive while the loop waits are handled as the transport parses them
(:meth:`Socket.deliver_to`); the steps are the same synchronous :meth:`MessageLoop._text`.
Recovery control messages of opted-in clients (``{"hubbub": ...}``) are answered here and never
routed. Everything that ends the read loop records its close code and reason on the connection.
Error frames (Forbidden, busy, rate limit, internal error) go out through :meth:`Hub.send` like
every reply, so they count against ``send_queue_bytes``: a peer that floods unroutable messages and
never reads is dropped with 1013 instead of growing the server's buffer for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from hubbub.aws.events import MessageEventFactory
from hubbub.aws.frames import error_frame, forbidden_frame, internal_error_frame
from hubbub.aws.ids import new_request_id
from hubbub.aws.results import ProxyResult
from hubbub.aws.selection import RouteSelector
from hubbub.config import LimitsConfig
from hubbub.errors import ManagementError
from hubbub.gateway.connection import Connection, now_ms
from hubbub.gateway.hub import Hub
from hubbub.gateway.invoke import BUSY, NOT_NOW, Invoker, Outcome, Route
from hubbub.gateway.limits import ABUSE_STRIKES, TOO_MANY_REQUESTS, TokenBucket
from hubbub.gateway.metrics import Metrics
from hubbub.gateway.recovery import Resumer
from hubbub.wire.close import (
    BINARY_REFUSED,
    NO_STATUS_REASON,
    PEER_ERROR_REASONS,
    PING_TIMEOUT,
    RATE_EXCEEDED,
    CloseCode,
)
from hubbub.wire.kinds import MessageKind
from hubbub.wire.session import CONTROL_PREFIX, control_error

# Bound once: the read loop compares every message's kind and code with these.
_TEXT = MessageKind.TEXT
_BINARY = MessageKind.BINARY
_CLOSE = MessageKind.CLOSE
_ERROR = MessageKind.ERROR
_NO_STATUS = CloseCode.NO_STATUS.value
_ABNORMAL = CloseCode.ABNORMAL.value
_time_ns = time.time_ns


class MessageLoop:
    def __init__(
        self,
        *,
        limits: LimitsConfig,
        selector: RouteSelector,
        routes: Mapping[str, Route],
        invoker: Invoker,
        hub: Hub,
        resumer: Resumer | None,
        metrics: Metrics,
        touch: Callable[[str, int], Awaitable[None]] | None = None,
    ) -> None:
        self.limits = limits
        self.selector = selector
        self.routes = routes
        self.invoker = invoker
        self.hub = hub
        self.resumer = resumer
        self.metrics = metrics
        self.touch = touch

    async def run(self, conn: Connection) -> None:
        """Read until the connection ends; record why in ``conn.set_close``."""
        sock = conn.socket
        receive = sock.receive
        allow_binary = self.limits.allow_binary
        message_rate = self.limits.message_rate
        if message_rate > 0:
            conn.rate = TokenBucket(message_rate)
        touch = self.touch
        # Handlers run in one context per connection whichever way a message came (context
        # variables a handler sets stay for the connection's later handlers, as they stay
        # between invocations of a Lambda container): a copy of the handshake's, made with the
        # first text message so that an idle connection holds none of this.
        run: Callable[..., None] | None = None
        try:
            while True:
                kind, data, extra = await receive()
                if kind == _TEXT:
                    now = now_ms()
                    conn.last_active = now
                    if touch is not None:  # shared registries: lastActiveAt for other nodes
                        await touch(conn.id, now)
                    if run is None:
                        run = contextvars.copy_context().run
                        if touch is None:
                            # The next text messages that arrive while this loop waits here are
                            # handled as the transport parses them (everything but ``touch`` is
                            # synchronous): no future, no task wake-up, no receive() per
                            # message. The loop still gets the others, in order.
                            sock.deliver_to(run, functools.partial(self._text, conn, conn.factory))
                    run(self._text, conn, conn.factory, data, now)
                elif kind == _BINARY and not allow_binary:
                    await conn.close(*BINARY_REFUSED)
                elif kind == _BINARY:
                    # Opt-in (limits.allow_binary): to $default, base64 with isBase64Encoded true,
                    # the way API Gateway hands binary payloads to Lambda elsewhere.
                    conn.last_active = now_ms()
                    self._binary(conn, data)
                elif kind == _CLOSE:
                    code = data or _NO_STATUS
                    conn.set_close(code, NO_STATUS_REASON if code == _NO_STATUS else extra or "")
                    return
                elif kind == _ERROR:
                    if isinstance(data, TimeoutError):  # no pong within server.ping_timeout
                        conn.set_close(*PING_TIMEOUT)
                    else:
                        code = getattr(data, "code", _ABNORMAL)
                        conn.set_close(code, PEER_ERROR_REASONS.get(code, str(data)))
                    return
                else:  # CLOSING / CLOSED: the transport is gone or we are closing it
                    conn.set_close(_ABNORMAL, "")
                    return
        finally:
            if run is not None and touch is None:
                sock.deliver_to(None, None)

    def _text(
        self, conn: Connection, factory: MessageEventFactory, data: str, now: int | None = None
    ) -> None:
        """One text message: limit, route, invoke (inline handlers to their end), answer.

        ``factory`` is ``conn.factory`` (bound once per connection: this runs once per message).
        ``now`` is when it arrived, already in ``conn.last_active``; without it, now.
        Never awaits, so the transport can call it as it parses a frame (:meth:`run`).
        """
        if now is None:
            now = _time_ns() // 1_000_000  # now_ms() written out
            conn.last_active = now
        if conn.rate is not None and not self._within_rate(conn):
            return
        if conn.session is not None and data.startswith(CONTROL_PREFIX):
            self._spawn(conn, self._control(conn, data))
            return
        routes = self.routes
        key = self.selector.select(data, routes)
        if key is None:
            self.metrics.messages_in[""] += 1
            self.metrics.error_frames += 1
            self.hub.send(conn, forbidden_frame(conn.id, new_request_id()))
            return
        route = routes[key]
        if conn.in_flight >= self.limits.max_invocations_per_connection:
            route.stats.rejected += 1
            self.metrics.error_frames += 1
            self.hub.send(conn, error_frame(BUSY, conn.id, new_request_id()))
            return
        request_id = new_request_id()
        event = factory.build(key, data, request_id, new_request_id(), now)
        if route.inline is not None:
            answer = self.invoker.answer_now(route, event, conn.id, request_id)
            if type(answer) is str:  # a 200 with this body (see answer_now): _answer's common case
                if route.two_way:
                    self.metrics.route_responses += 1
                    self.hub.send(conn, answer.encode("utf-8"))
                return
            if type(answer) is ProxyResult:
                if route.two_way:
                    body = answer.body if not answer.is_base64 else answer.body_text()
                    if body is not None:
                        self.metrics.route_responses += 1
                        self.hub.send(conn, body.encode("utf-8"))
                return
            if answer is None:  # the handler cancelled itself: nothing to answer
                return
            if answer is not NOT_NOW:  # the invocation failed
                self._answer(conn, route, answer, request_id)  # type: ignore[arg-type]
                return
            # NOT_NOW: no free slot, or someone waits for one; the queued path below
        conn.in_flight += 1
        self._spawn(conn, self._message(conn, route, event, request_id))

    def _spawn(self, conn: Connection, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _control(self, conn: Connection, text: str) -> None:
        """A recovery control message (resume) of an opted-in client; never routed."""
        assert self.resumer is not None
        try:
            reply = await self.resumer.control(conn, text)
        except ManagementError as exc:
            reply = control_error(str(exc))
        if reply is not None:
            self.hub.send(conn, reply)

    def _binary(self, conn: Connection, data: bytes) -> None:
        route = self.routes.get("$default")
        if route is None:
            self.hub.send(conn, forbidden_frame(conn.id, new_request_id()))
            return
        request_id = new_request_id()
        body = base64.b64encode(data).decode("ascii")
        event = conn.factory.build("$default", body, request_id, new_request_id(), now_ms())
        event["isBase64Encoded"] = True
        conn.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._message(conn, route, event, request_id))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    def _within_rate(self, conn: Connection) -> bool:
        """Apply the per-connection message rate; False means the message is refused."""
        assert conn.rate is not None
        if conn.rate.allow():
            conn.strikes = 0
            return True
        conn.strikes += 1
        if conn.strikes >= ABUSE_STRIKES:
            conn.expire(RATE_EXCEEDED)
        else:
            self.metrics.error_frames += 1
            self.hub.send(conn, error_frame(TOO_MANY_REQUESTS, conn.id, new_request_id()))
        return False

    async def _message(
        self, conn: Connection, route: Route, event: dict[str, Any], request_id: str
    ) -> None:
        try:
            outcome = await self.invoker.invoke(
                route, event, connection_id=conn.id, request_id=request_id
            )
        finally:
            conn.in_flight -= 1
        self._answer(conn, route, outcome, request_id)

    def _answer(self, conn: Connection, route: Route, outcome: Outcome, request_id: str) -> None:
        """Answer one invocation: its reply on a two-way route, or the error frame."""
        result = outcome.result
        if result is None:
            self.metrics.error_frames += 1
            frame = (
                error_frame(BUSY, conn.id, request_id)
                if outcome.rejected
                else internal_error_frame(conn.id, request_id)
            )
            self.hub.send(conn, frame)
            return
        if route.two_way:
            body = result.body_text()
            if body is not None:
                self.metrics.route_responses += 1
                self.hub.send(conn, body.encode("utf-8"))

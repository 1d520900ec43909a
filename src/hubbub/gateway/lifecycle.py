"""The life of a connection, from its handshake to its one ``$disconnect``, and the drain.

AWS semantics (docs/compatibility.md, "Handshake refusals" and "Close codes"):

1. Handshake (:meth:`Lifecycle.handshake`): a connection id is drawn and ``$connect`` runs
   *before* the 101. A non-2xx result is returned as that HTTP status, a handler error as 502.
   The connection does not exist for the management API yet (410).
2. Accepted (:meth:`Lifecycle.run`): the 101 carries the handler's response headers; only now is
   the connection put in the hub and the registry. A client gone before its 101 never gets there,
   but its ``$connect`` succeeded, so it still gets its ``$disconnect`` (1006).
3. Messages: each text message is routed and invoked concurrently (:class:`MessageLoop.run
   <hubbub.gateway.messages.MessageLoop>`).
4. Closed (:meth:`Lifecycle.retire`): it leaves the hub, the registry, its rooms and users; then
   ``$disconnect`` runs exactly once, with the close code and reason (queued for a slot when the
   invocation cap is reached). A dead node's connections are retired by the node that reaps them
   (:meth:`Lifecycle.reaped`), with 1006 "Gateway node lost".

Shutdown (:meth:`Lifecycle.drain`): close every connection with 1001 "Going away", deliver every
``$disconnect`` (they queue for the invocation cap's slots, never refused), wait up to
``server.shutdown_grace``, cancel what is left. ``$disconnect`` handlers still not done then are
logged with their count (``hubbub serve`` then exits 1).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from hubbub.aws.events import (
    ApiContext,
    ConnectionContext,
    connect_event,
    disconnect_event,
    gateway_headers,
)
from hubbub.aws.ids import new_connection_id, new_request_id, new_trace_id
from hubbub.aws.results import is_success
from hubbub.gateway import logs
from hubbub.gateway.auth import ConnectAuthorizer
from hubbub.gateway.connection import Connection, Timeouts, now_ms
from hubbub.gateway.health import Status
from hubbub.gateway.hub import Hub
from hubbub.gateway.invoke import Invoker, Route
from hubbub.gateway.limits import Admission
from hubbub.gateway.management.services import GatewayApi
from hubbub.gateway.messages import MessageLoop
from hubbub.gateway.metrics import Metrics
from hubbub.gateway.presence import RoomPresence
from hubbub.gateway.proxies import TrustedProxies
from hubbub.gateway.recovery import Resumer
from hubbub.gateway.transport_aiohttp import Accept, Socket
from hubbub.store import ConnectionRecord, Store
from hubbub.store.recovery import Position, Session
from hubbub.wire.close import GOING_AWAY, GONE_BEFORE_OPEN, NODE_LOST
from hubbub.wire.http import Handshake, HttpResponse, find_headers
from hubbub.wire.session import SUBPROTOCOL, session_frame, wants_recovery

log = logging.getLogger("hubbub.gateway")

# Response headers of $connect that are the WebSocket handshake's own, never the handler's.
_HOP_BY_HOP = {
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
}


class Lifecycle:
    """Handshakes, open connections, their retirement and ``$disconnect`` (module docstring)."""

    def __init__(
        self,
        *,
        node_id: str,
        status: Status,
        hub: Hub,
        store: Store,
        metrics: Metrics,
        timeouts: Timeouts,
        admission: Admission,
        proxies: TrustedProxies,
        presence: RoomPresence,
        api: GatewayApi,
        invoker: Invoker,
        routes: Mapping[str, Route],
        api_context: ApiContext,
        method_arn: str,
        authorizer: ConnectAuthorizer | None,
        resumer: Resumer | None,
        messages: MessageLoop,
    ) -> None:
        self._node_id = node_id
        self._status = status
        self._hub = hub
        self._registry = store.registry
        self._metrics = metrics
        self._timeouts = timeouts
        self._admission = admission
        self._proxies = proxies
        self._presence = presence
        self._api = api
        self._invoker = invoker
        self._routes = routes
        self.api_context = api_context
        self._method_arn = method_arn
        # Replaced by hot reload (hubbub.gateway.reload) when the authorizer's files change.
        self.authorizer = authorizer
        self._resumer = resumer
        self._messages = messages
        # Invocations that outlive their caller ($disconnect, presence events); drain waits.
        self.background: set[asyncio.Task[Any]] = set()
        self._disconnects: set[asyncio.Task[None]] = set()  # a subset of background
        # Connections between the start and the end of retire; the drain waits for none.
        self._retiring = 0
        # What the drain waits on while some are retiring; made only then (an Event cleared
        # and set by every retire was two Python calls per connection).
        self._retire_idle: asyncio.Future[None] | None = None

    # -- handshake ----------------------------------------------------------------------------
    async def handshake(self, hs: Handshake) -> Accept | HttpResponse:
        """The public listener's answer to an upgrade request: a 101 (Accept) or a refusal."""
        if self._proxies:  # the client's address and scheme as the trusted proxy saw them
            hs = self._proxies.apply(hs)
        if not self._status.accepting:
            return HttpResponse(503, {}, b"Service Unavailable: the gateway is shutting down\n")
        admission = self._admission
        refusal = admission.check(
            # The header is looked up only when an origin list is configured (one scan of the
            # request's headers less per handshake otherwise).
            origin=hs.header("Origin") if admission.checks_origin else None,
            remote=hs.remote,
            open_connections=len(self._hub.connections),
        )
        if refusal is not None:
            logs.event(logs.ACCESS, "refused", sourceIp=hs.remote, status=refusal.status)
            self._metrics.handshakes[("refused", refusal.status)] += 1
            return refusal
        # Counted until the connection opens, so a burst of slow $connects cannot overshoot.
        self._admission.pending += 1
        try:
            answer = await self._admitted_handshake(hs)
        finally:
            self._admission.pending -= 1
        if isinstance(answer, HttpResponse):
            self._metrics.handshakes[("refused", answer.status)] += 1
        else:
            self._metrics.handshakes[("accepted", 101)] += 1
        return answer

    async def _admitted_handshake(self, hs: Handshake) -> Accept | HttpResponse:
        connected = now_ms()
        query = parse_qsl(hs.query_string, keep_blank_values=True) if hs.query_string else None
        # The three headers this reads, found in one pass (one scan per ``hs.header`` call before).
        user_agent, host, requested = find_headers(
            hs.headers, "user-agent", "host", "sec-websocket-protocol"
        )
        # Positional (connection id, connected at, source ip, user agent, headers, query):
        # keyword arguments cost about 2,800 instructions more.
        ctx = ConnectionContext(
            new_connection_id(),
            connected,
            hs.remote,
            user_agent or "",
            gateway_headers(
                hs.headers,
                source_ip=hs.remote,
                port=hs.port,
                proto=hs.scheme,
                trace_id=new_trace_id(connected),
            ),
            query,
        )
        if self.authorizer is not None:
            request_id = new_request_id()
            verdict = await self.authorizer.authorize(
                self._invoker,
                connect_event(self.api_context, ctx, request_id=request_id, now_ms=connected),
                headers=hs.headers,
                query=query,
                method_arn=self._method_arn,
                connection_id=ctx.connection_id,
                request_id=request_id,
            )
            if isinstance(verdict, HttpResponse):
                decision = "deny" if verdict.status in (401, 403) else "error"
                self._metrics.authorizer[decision] += 1
                return verdict
            self._metrics.authorizer["allow"] += 1
            ctx.authorizer = verdict
        headers: dict[str, str] = {}
        subprotocol = None
        route = self._routes.get("$connect")
        if route is not None:
            request_id = new_request_id()
            event = connect_event(self.api_context, ctx, request_id=request_id, now_ms=connected)
            outcome = await self._invoker.invoke_awaited(
                route, event, connection_id=ctx.connection_id, request_id=request_id
            )
            if outcome is None:
                # The handler cancelled itself inline: end the handshake as when it does so in
                # invoke (there the CancelledError passes through to the transport).
                raise asyncio.CancelledError
            result = outcome.result
            if result is None:
                status = 429 if outcome.rejected else 502
                return HttpResponse(status, {}, b"")
            if not is_success(result.status_code):
                body = result.body_text()
                return HttpResponse(
                    result.status_code, dict(result.headers), (body or "").encode("utf-8")
                )
            for name, value in result.headers.items():
                if name.lower() == "sec-websocket-protocol":
                    subprotocol = value.split(",")[0].strip()
                elif name.lower() not in _HOP_BY_HOP:
                    headers[name] = value
        opted_in = False
        if self._resumer is not None:  # only recovery asks for the offered subprotocols
            # Asked only when the client offered a subprotocol or sent a query: a plain
            # handshake skips the call and its generator (~3,300 instructions).
            opted_in = wants_recovery(requested, query) if requested or query else False
            if opted_in and subprotocol is None and SUBPROTOCOL in (requested or ""):
                subprotocol = SUBPROTOCOL  # hubbub's own protocol: we answer for it ourselves
        return Accept(
            # A partial, not a lambda: it lives as long as the connection (~250 bytes less).
            # The Host header is taken here, from the request's few headers, rather than from
            # the event's longer sorted list in run().
            run=functools.partial(self.run, ctx, opted_in, host or ""),
            gone=functools.partial(self.gone_before_open, ctx),
            headers=headers,
            subprotocol=subprotocol,
        )

    # -- an open connection -------------------------------------------------------------------
    async def run(self, ctx: ConnectionContext, opted_in: bool, host: str, sock: Socket) -> None:
        """The 101 went out: register the connection, read its messages, retire it.

        ``host``: the upgrade request's Host header ("" when it had none)."""
        conn = Connection(sock, ctx, self.api_context)
        self._metrics.opened += 1
        if opted_in and self._resumer is not None:
            conn.session = self._resumer.new_session()
        self._hub.add(conn)
        await self._registry.add(
            ConnectionRecord(
                connection_id=conn.id,
                node_id=self._node_id,
                connected_at=ctx.connected_at,
                last_active_at=ctx.connected_at,
                source_ip=ctx.source_ip,
                user_agent=ctx.user_agent,
                host=host,
                authorizer=dict(ctx.authorizer) if ctx.authorizer else None,
                session=conn.session,
            )
        )
        ctx.forget_handshake()
        if conn.session is not None:
            self._hub.send(conn, session_frame(conn.session, conn.id))
        principal = (ctx.authorizer or {}).get("principalId")
        if principal and 1 <= len(str(principal)) <= 128:
            # Authorised connections belong to their principal: @users/{principalId} reaches them.
            await self._api.users.bind(str(principal), conn.id)
        if logs.ACCESS.isEnabledFor(logging.INFO):  # (no call or fields dict when it is off)
            logs.event(logs.ACCESS, "connect", connectionId=conn.id, sourceIp=ctx.source_ip)
        self._timeouts.add(conn)
        try:
            await self._messages.run(conn)
        except asyncio.CancelledError:
            conn.set_close(*GOING_AWAY)
            raise
        finally:
            await self.retire(conn)

    async def _save_session(
        self,
        record: ConnectionRecord,
        joined: Mapping[str, Position] | None = None,
        presence: dict[str, Any] | None = None,
    ) -> None:
        if record.session is not None and self._resumer is not None:
            rooms = sorted(record.rooms)
            principal = (record.authorizer or {}).get("principalId")
            session = Session(
                rooms,
                sorted(record.users),
                record.attributes,
                {r: p for r, p in (joined or {}).items() if r in record.rooms},
                connection_id=record.connection_id,
                presence=presence or {},
                principal=None if principal is None else str(principal),
            )
            try:
                await self._resumer.save(record.session, session)
            except Exception:  # best effort: the client will be told "session expired"
                log.exception("saving a recovery session failed")

    async def close_local(self, conn: Connection, code: int, reason: str) -> None:
        """DeleteConnection on a local connection: gone for the API at once, then closed."""
        conn.set_close(code, reason)
        await self.retire(conn)
        await conn.close(code, reason)

    async def retire(self, conn: Connection) -> None:
        """Remove a connection from hub and registry, then schedule its one ``$disconnect``."""
        if conn.retired:
            return
        conn.retired = True
        self._retiring += 1
        try:
            self._timeouts.remove(conn)
            conn.stop_drainer()
            self._hub.remove(conn)
            record = await self._registry.remove(conn.id)
            code, reason = conn.close_status
            self._metrics.closed[code] += 1
            if logs.ACCESS.isEnabledFor(logging.INFO):
                logs.event(
                    logs.ACCESS, "disconnect", connectionId=conn.id, code=code, reason=reason
                )
            # Its presence leaves now, or is deferred for a resume (no store call when it was
            # present nowhere). Also when a reaper got the record: then nothing is left to do.
            kept = await self._presence_retired(conn) if self._presence.tracks(conn.id) else {}
            if conn.resumed is not None and self._resumer is not None:
                try:
                    await self._resumer.release(conn)
                except Exception:  # best effort: the claim expires with the session
                    log.exception("releasing a recovery session failed")
            if record is None:  # someone else (a reaping node) already delivered $disconnect
                return
            if record.session is not None:  # checked here: spares a coroutine per plain close
                await self._save_session(record, conn.joined, kept)
            self._spawn_disconnect(conn.context, code, reason)
        finally:
            self._retiring -= 1
            idle = self._retire_idle
            if idle is not None and not self._retiring:
                self._retire_idle = None
                if not idle.done():
                    idle.set_result(None)

    async def _presence_retired(self, conn: Connection) -> dict[str, Any]:
        try:
            return await self._presence.retired(conn.id, resumable=conn.session is not None)
        except Exception:  # the store is away: a sweep or a reaper cannot know; say so
            log.exception("presence of a closed connection not removed")
            return {}

    def gone_before_open(self, ctx: ConnectionContext) -> None:
        """The client left after a successful ``$connect`` but before the 101.

        The connection never opened (it was in neither hub nor registry), but its ``$connect``
        handler may have stored the id, so it gets its one ``$disconnect`` all the same.
        """
        code, reason = GONE_BEFORE_OPEN
        logs.event(
            logs.ACCESS, "disconnect", connectionId=ctx.connection_id, code=code, reason=reason
        )
        self._spawn_disconnect(ctx, code, reason)

    def _spawn_disconnect(self, ctx: ConnectionContext, code: int, reason: str) -> None:
        """Run ``$disconnect`` in the background; :meth:`drain` waits for it."""
        route = self._routes.get("$disconnect")
        if route is not None:
            task = asyncio.get_running_loop().create_task(
                self._disconnect(ctx, route, code, reason)
            )
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            self._disconnects.add(task)
            task.add_done_callback(self._disconnects.discard)

    async def reaped(self, record: ConnectionRecord) -> None:
        """A dead node's connection, removed by us: its one ``$disconnect`` runs here."""
        try:
            kept = await self._presence.reaped(record)
        except Exception:
            log.exception("presence of a reaped connection not removed")
            kept = {}
        await self._save_session(record, presence=kept)
        ctx = ConnectionContext(
            connection_id=record.connection_id,
            connected_at=record.connected_at,
            source_ip=record.source_ip,
            user_agent=record.user_agent,
            headers=(("Host", record.host),) if record.host else (),
            query=None,
            authorizer=record.authorizer,
            attributes=record.attributes,
        )
        logs.event(
            logs.ACCESS,
            "disconnect",
            connectionId=record.connection_id,
            code=NODE_LOST.code,
            reason=NODE_LOST.reason,
            node=record.node_id,
        )
        route = self._routes.get("$disconnect")
        if route is not None:
            await self._disconnect(ctx, route, *NODE_LOST)

    async def _disconnect(
        self, ctx: ConnectionContext, route: Route, code: int, reason: str
    ) -> None:
        request_id = new_request_id()
        event = disconnect_event(
            self.api_context,
            ctx,
            status_code=code,
            reason=reason,
            request_id=request_id,
            now_ms=now_ms(),
        )
        # The result is ignored, like AWS's; failures are logged by the invoker. Queued for a
        # slot rather than refused when the cap is reached: every connection gets its one.
        await self._invoker.invoke_awaited(
            route, event, connection_id=ctx.connection_id, request_id=request_id, queue=True
        )

    # -- shutdown -----------------------------------------------------------------------------
    async def drain(self, grace: float) -> int:
        """Close every connection with 1001 and wait up to ``grace`` seconds for their
        ``$disconnect`` and in-flight invocations; how many ``$disconnect`` were cut off."""
        conns = list(self._hub.connections.values())
        if conns:
            log.info("draining", extra={"fields": {"connections": len(conns)}})
        await asyncio.gather(*(self._close_going_away(c) for c in conns), return_exceptions=True)
        # Read loops that began retiring their connection first spawn its $disconnect once the
        # registry (a Redis round trip) answers: wait for those, or the snapshot below misses it.
        if self._retiring:
            idle = self._retire_idle
            if idle is None or idle.done():
                idle = self._retire_idle = asyncio.get_running_loop().create_future()
            await idle
        # In-flight invocations of the closed connections finish too (within the grace period).
        pending = {t for t in self.background if not t.done()}
        pending |= {t for c in conns for t in c.tasks if not t.done()}
        lost = 0
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            lost = sum(1 for task in self._disconnects if not task.done())
            if lost:
                log.error(
                    "shutdown grace over: $disconnect not delivered",
                    extra={"fields": {"undelivered": lost, "shutdown_grace_s": grace}},
                )
            for task in still:
                task.cancel()
        return lost

    async def _close_going_away(self, conn: Connection) -> None:
        """Close with 1001, then retire here rather than wait for the read loop to (it may not
        have run yet when the drain takes its snapshot of ``$disconnect`` tasks)."""
        try:
            await conn.close(*GOING_AWAY)
        finally:
            await self.retire(conn)

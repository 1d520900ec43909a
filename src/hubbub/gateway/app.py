"""The composition root: :class:`Gateway` builds every part from a :class:`~hubbub.config.Config`,
runs the connection lifecycle, and shuts down gracefully.

Lifecycle of a connection (AWS semantics, spec §3.1 and §7):

1. Handshake: a connection id is drawn and ``$connect`` runs *before* the 101. A non-2xx result is
   returned as that HTTP status, a handler error as 502. The connection does not exist for the
   management API yet (410).
2. Accepted: the 101 carries the handler's response headers; only now is the connection put in the
   hub and the registry. A client gone before its 101 never gets there, but its ``$connect``
   succeeded, so it still gets its ``$disconnect`` (1006).
3. Messages: each text message is routed and invoked concurrently (see ``_read_loop``).
4. Closed: it leaves the hub, the registry, its rooms and users; then ``$disconnect`` runs exactly
   once, with the close code and reason (queued for a slot when the invocation cap is reached).

Shutdown (``close``): stop accepting, close every connection with 1001 "Going away", deliver every
``$disconnect`` (they queue for the invocation cap's slots, never refused), wait up to
``server.shutdown_grace``, cancel what is left. ``$disconnect`` handlers still not done then are
logged with their count and kept in ``undelivered_disconnects`` (``hubbub serve`` exits 1).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from hubbub.aws.authorizer import method_arn
from hubbub.aws.events import (
    ApiContext,
    ConnectionContext,
    connect_event,
    disconnect_event,
    gateway_headers,
)
from hubbub.aws.ids import api_id_for, new_connection_id, new_request_id, new_trace_id
from hubbub.aws.results import is_success
from hubbub.aws.selection import compile_route_selection
from hubbub.config import (
    MANAGEMENT_LISTENER,
    MANAGEMENT_TLS_LISTENER,
    PUBLIC_LISTENER,
    Config,
)
from hubbub.errors import ConfigError
from hubbub.gateway import inprocess, logs
from hubbub.gateway.api import ManagementApi
from hubbub.gateway.auth import ConnectAuthorizer, ManagementAuth, execution_role
from hubbub.gateway.browser_guard import BrowserGuard
from hubbub.gateway.connection import (
    ABNORMAL,
    GOING_AWAY,
    Connection,
    Timeouts,
    now_ms,
)
from hubbub.gateway.hub import Hub
from hubbub.gateway.invoke import Invoker, Route
from hubbub.gateway.limits import (
    Admission,
    TokenBucket,
)
from hubbub.gateway.messages import MessageLoop
from hubbub.gateway.metrics import Metrics, measured_registry
from hubbub.gateway.observability import Observability
from hubbub.gateway.presence import RoomPresence, route_hook
from hubbub.gateway.proxies import TrustedProxies
from hubbub.gateway.recovery import (
    SUBPROTOCOL,
    Resumer,
    session_frame,
    wants_recovery,
)
from hubbub.gateway.routing import RouteFactory
from hubbub.gateway.services import GatewayApi, Services, SyncGatewayApi
from hubbub.gateway.tls import (
    LocalTls,
    default_state_dir,
    ensure_local_tls,
    event_domain,
    public_ssl_context,
    server_ssl_context,
)
from hubbub.gateway.transport import (
    Accept,
    Handshake,
    HttpResponse,
    Listener,
    Socket,
    SocketOptions,
    find_header,
    start_http,
    start_public,
)
from hubbub.integrations import environment
from hubbub.integrations.http import HttpClient
from hubbub.store import ConnectionRecord, Store, open_store
from hubbub.store.memory import MemoryStore
from hubbub.store.recovery import Position, Recovery, Session, open_recovery

log = logging.getLogger("hubbub.gateway")


class Gateway(GatewayApi):
    """A running hubbub gateway. Use ``async with Gateway(config) as gw:``.

    The management operations are methods of the gateway itself (``gw.connections.post``,
    ``gw.rooms.send``, ``gw.users.bind``, ``gw.broadcast``), the same service layer the HTTP
    management API uses.
    """

    def __init__(self, config: Config, *, reuse_port: bool = False) -> None:
        """``reuse_port``: share the listeners' ports with other processes (SO_REUSEPORT), as
        the workers of ``hubbub serve --workers`` do (:mod:`hubbub.workers`)."""
        self.config = config
        self._reuse_port = reuse_port
        node_id = config.cluster.node_id
        if node_id == "auto":
            node_id = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.node_id = node_id
        self.store: Store = open_store(
            config.store.url,
            node_id=node_id,
            key_prefix=config.store.key_prefix,
            heartbeat_interval=config.cluster.heartbeat_interval,
        )
        self.hub = Hub(config.limits.send_queue_bytes)
        self.metrics = Metrics()
        # Every registry call of the gateway is counted and timed (hubbub_store_* in /metrics).
        self.store.registry = measured_registry(self.store.registry, self.metrics)
        self.timeouts = Timeouts(config.limits.idle_timeout, config.limits.max_duration)
        self.services = Services(
            self.hub,
            self.store,
            max_post_bytes=config.limits.max_post_bytes,
            metrics=self.metrics,
        )
        super().__init__(self.services)
        self.services.close_local = self._close_local
        self.presence = RoomPresence(self.services, config.presence)
        self.services.presence = self.presence
        self._selector = compile_route_selection(config.api.route_selection_expression)
        self.proxies = TrustedProxies(config.server.trusted_proxies)
        self._public_ssl: ssl.SSLContext | None = None
        self.admission = Admission(
            allowed_origins=config.server.allowed_origins,
            max_connections=config.limits.max_connections,
            connect_rate=config.limits.connect_rate,
            connect_rate_per_ip=config.limits.connect_rate_per_ip,
        )
        self.route_factory: RouteFactory | None = None
        self.routes: dict[str, Route] = {}
        self.invoker: Invoker | None = None
        self.api_context: ApiContext | None = None
        self.public: Listener | None = None
        self.management: Listener | None = None
        self.management_tls: Listener | None = None
        self.tls: LocalTls | None = None
        self.in_process: inprocess.InProcessEndpoint | None = None
        self._http = HttpClient()
        self._background: set[asyncio.Task[Any]] = set()
        self._disconnects: set[asyncio.Task[None]] = set()  # a subset of _background
        # $disconnect handlers the shutdown grace cut off (see close); 0 after a clean drain.
        self.undelivered_disconnects = 0
        self._accepting = False
        self._closed = asyncio.Event()
        # Connections between the start and the end of _retire; the drain waits for none.
        self._retiring = 0
        self._retire_idle = asyncio.Event()
        self._retire_idle.set()
        self.execution_role = execution_role()
        self.recovery: Recovery | None = None
        self.resumer: Resumer | None = None
        self.messages: MessageLoop | None = None
        self.authorizer: ConnectAuthorizer | None = None
        self.started_at = 0.0
        self.observability = Observability(
            node=node_id,
            metrics=self.metrics,
            hub=self.hub,
            store=self.store,
            routes=lambda: self.routes,
            invoker=lambda: self.invoker,
            resumer=lambda: self.resumer,
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        server = config.server
        if server.tls_cert is not None and server.tls_key is not None:
            # First: a bad certificate or key fails the start before anything listens.
            self._public_ssl = public_ssl_context(server.tls_cert, server.tls_key, server.tls_ca)
        environment.install()
        if config.management.in_process:
            inprocess.install()  # before handlers load: their module-level boto3 clients too
        if config.management.tls:
            # Before the routes: the handlers' environment names the CA bundle.
            state_dir = config.management.state_dir or default_state_dir()
            try:
                self.tls = ensure_local_tls(
                    state_dir, [config.management.host, config.api.domain_name]
                )
            except OSError as exc:
                raise ConfigError("management.state_dir", f"{state_dir}: {exc}") from exc
        if config.imported is not None and config.imported.create_tables:
            # Before the handlers load: their module-level code may describe the tables.
            from hubbub.infra.tables import create_tables

            await asyncio.to_thread(create_tables, config)
        self.route_factory = RouteFactory(
            config, execution_role=self.execution_role, tls=self.tls, http=self._http
        )
        self.routes = self.route_factory.routes()
        self.authorizer = self.route_factory.authorizer()
        self.invoker = Invoker(
            max_concurrent=config.limits.max_concurrent_invocations,
            region=config.api.region,
            account_id=config.api.account_id,
            async_api=self,
            sync_api=SyncGatewayApi(self, loop),
        )
        await self.store.start(self.services.deliver_local, self._reaped)
        self.recovery = open_recovery(config)
        self.services.recovery = self.recovery
        if self.recovery is not None:
            # A session outlives its connection by the history window.
            self.resumer = Resumer(self.recovery, self, self.hub, session_ttl=config.history.ttl)
            self.resumer.presence = self.presence
        self.messages = MessageLoop(
            limits=config.limits,
            selector=self._selector,
            routes=self.routes,
            invoker=self.invoker,
            hub=self.hub,
            resumer=self.resumer,
            metrics=self.metrics,
            # One node answers GetConnection from memory; only a shared registry needs touches.
            touch=None if isinstance(self.store, MemoryStore) else self.store.registry.touch,
        )
        authenticate = None
        if config.management.auth == "sigv4":
            authenticate = ManagementAuth(config.management, self.execution_role)
        rate = config.management.rate_limit
        api = ManagementApi(
            self,
            stage=config.api.stage,
            health=self.health,
            authenticate=authenticate,
            pages=self.observability.pages,
            metrics=self.metrics,
            rate=TokenBucket(rate, config.management.burst or None) if rate else None,
        )
        guard = BrowserGuard(
            check_host=authenticate is None,
            allowed_hosts=config.management.allowed_hosts,
            allowed_origins=config.management.allowed_origins,
            domain_name=config.api.domain_name,
        )
        http_options: dict[str, Any] = {
            "handler": guard.wrap(api.handle),  # listeners only: in-process calls are ours
            "max_body": config.limits.max_post_bytes,
            "reuse_port": self._reuse_port,
            "max_header_bytes": config.limits.max_header_bytes,
            "header_timeout": config.management.header_timeout,
            "idle_timeout": config.management.idle_timeout,
        }
        try:
            self.management = await start_http(
                host=config.management.host, port=config.management.port, **http_options
            )
        except OSError as exc:
            host, port = config.management.host, config.management.port
            raise MANAGEMENT_LISTENER.error(host, port, exc) from exc
        guard.add_listener("http", self.management.host, self.management.port)
        if self.route_factory is not None:
            self.route_factory.runtimes.set_management(
                f"http://{event_domain(self.management.host, self.management.port)}",
                config.api.aliases,
            )
        if self.tls is not None:
            # https://{domainName}/{stage}, as handlers build it, reaches this listener with a
            # certificate their SDK trusts (AWS_CA_BUNDLE points at our CA plus the usual ones).
            try:
                self.management_tls = await start_http(
                    host=config.management.host,
                    port=config.management.tls_port,
                    ssl_context=server_ssl_context(self.tls),
                    **http_options,
                )
            except OSError as exc:
                host, port = config.management.host, config.management.tls_port
                raise MANAGEMENT_TLS_LISTENER.error(host, port, exc) from exc
            guard.add_listener("https", self.management_tls.host, self.management_tls.port)
            domain = config.api.domain_name or event_domain(
                self.management_tls.host, self.management_tls.port
            )
        else:
            domain = config.api.domain_name or f"{self.management.host}:{self.management.port}"
        self.api_context = ApiContext(
            api_id=api_id_for(config.api.name),
            stage=config.api.stage,
            domain_name=domain,
            stage_variables=dict(config.api.stage_variables) or None,
        )
        self._method_arn = method_arn(
            region=config.api.region,
            account_id=config.api.account_id,
            api_id=self.api_context.api_id,
            stage=config.api.stage,
        )
        if config.presence.route:
            self.presence.on_event = route_hook(
                self.invoker,
                self.routes[config.presence.route],
                self.api_context,
                config.presence.route,
                self._background,
            )
        self.presence.start()
        try:
            self.public = await self._start_public()
        except OSError as exc:
            raise PUBLIC_LISTENER.error(config.server.host, config.server.port, exc) from exc
        if config.management.in_process:
            self.in_process = inprocess.serve(
                api.handle,
                listeners=(
                    ("http", self.management),
                    ("https", self.management_tls),
                    # On AWS headers.Host is the domainName: https://{Host}/{stage}, built from
                    # the $connect event, names the WebSocket listener here; answer it too.
                    ("https", self.public),
                    ("http", self.public),
                ),
                domain_name=config.api.domain_name,
                aliases=config.api.aliases,
                signed=authenticate is not None,
                accept_post=api.accept_post,
            )
        self._accepting = True
        self.started_at = time.time()
        self.observability.start()
        log.info(
            "gateway started",
            extra={
                "fields": {
                    "websocket": self.websocket_url,
                    "management": self.management_url,
                    "store": config.store.url,
                    "node": self.node_id,
                }
            },
        )

    async def _start_public(self) -> Listener:
        config = self.config
        return await start_public(
            host=config.server.host,
            port=config.server.port,
            stage=config.api.stage,
            on_handshake=self._handshake,
            options=SocketOptions(
                max_frame_bytes=config.limits.max_frame_bytes,
                max_message_bytes=config.limits.max_message_bytes,
                compression=config.server.compression,
                ping_interval=config.server.ping_interval,
                ping_timeout=config.server.ping_timeout,
                handshake_timeout=config.limits.handshake_timeout,
                max_pending_handshakes=config.limits.max_pending_handshakes,
            ),
            static_dir=config.static.dir,
            extra_files=[("/hubbub.js", _BROWSER_CLIENT, "text/javascript; charset=utf-8")],
            max_header_bytes=config.limits.max_header_bytes,
            reuse_port=self._reuse_port,
            ssl_context=self._public_ssl,
            proxy_from=self.proxies.trusts if config.server.proxy_protocol else None,
            probes={"/healthz": self._healthz, "/readyz": self._readyz},
        )

    @property
    def websocket_url(self) -> str:
        assert self.public is not None
        scheme = "wss" if self.config.server.tls_cert is not None else "ws"
        return f"{scheme}://{_host(self.public.host)}:{self.public.port}/{self.config.api.stage}"

    @property
    def management_url(self) -> str:
        assert self.management is not None
        return (
            f"http://{_host(self.management.host)}:{self.management.port}/{self.config.api.stage}"
        )

    @property
    def management_https_url(self) -> str | None:
        if self.management_tls is None:
            return None
        host = _host(self.management_tls.host)
        return f"https://{host}:{self.management_tls.port}/{self.config.api.stage}"

    @property
    def http_url(self) -> str:
        assert self.public is not None
        scheme = "https" if self.config.server.tls_cert is not None else "http"
        return f"{scheme}://{_host(self.public.host)}:{self.public.port}"

    async def close(self) -> None:
        """Graceful drain (see the module docstring). Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._accepting = False
        if self.public is not None:
            await self.public.stop_accepting()
        conns = list(self.hub.connections.values())
        if conns:
            log.info("draining", extra={"fields": {"connections": len(conns)}})
        await asyncio.gather(*(self._drain(c) for c in conns), return_exceptions=True)
        # Read loops that began retiring their connection first spawn its $disconnect once the
        # registry (a Redis round trip) answers: wait for those, or the snapshot below misses it.
        await self._retire_idle.wait()
        grace = self.config.server.shutdown_grace
        # In-flight invocations of the closed connections finish too (within the grace period).
        pending = {t for t in self._background if not t.done()}
        pending |= {t for c in conns for t in c.tasks if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            lost = sum(1 for task in self._disconnects if not task.done())
            if lost:
                self.undelivered_disconnects = lost
                log.error(
                    "shutdown grace over: $disconnect not delivered",
                    extra={"fields": {"undelivered": lost, "shutdown_grace_s": grace}},
                )
            for task in still:
                task.cancel()
        self.timeouts.close()
        await self.observability.close()
        await self.presence.close()
        if self.public is not None:
            await self.public.close()
        if self.in_process is not None:
            self.in_process.close()
        if self.management is not None:
            await self.management.close()
        if self.management_tls is not None:
            await self.management_tls.close()
        await self.store.close()
        if self.recovery is not None:
            await self.recovery.close()
        for route in self.routes.values():
            await route.integration.close()
        await self._http.close()
        if self.route_factory is not None:
            await self.route_factory.runtimes.close()  # drain the functions' processes
            self.route_factory.close()
        if self.started_at:  # a gateway that never started has nothing to announce
            log.info("gateway stopped")

    async def _healthz(self) -> HttpResponse:
        """Liveness for load balancers and Kubernetes: the event loop answers."""
        return _probe(200, {"status": "ok"})

    async def _readyz(self) -> HttpResponse:
        """Readiness: accepting connections and the store reachable; 503 saying why not."""
        if not self._accepting:
            return _probe(503, {"status": "draining" if self.started_at else "starting"})
        if not self.store.status().get("ok"):
            return _probe(503, {"status": "store unreachable"})
        return _probe(200, {"status": "ready"})

    async def health(self) -> dict[str, Any]:
        store = self.store.status()
        return {
            "status": "ok" if store.get("ok") else "degraded",
            "node": self.node_id,
            "connections": len(self.hub.connections),
            "uptime_s": round(time.time() - self.started_at, 3),
            **store,
        }

    # -- handshake ----------------------------------------------------------------------------
    async def _handshake(self, hs: Handshake) -> Accept | HttpResponse:
        if self.proxies:  # the client's address and scheme as the trusted proxy saw them
            hs = self.proxies.apply(hs)
        if not self._accepting:
            return HttpResponse(503, {}, b"Service Unavailable: the gateway is shutting down\n")
        refusal = self.admission.check(
            origin=hs.header("Origin"), remote=hs.remote, open_connections=len(self.hub.connections)
        )
        if refusal is not None:
            logs.event(logs.ACCESS, "refused", sourceIp=hs.remote, status=refusal.status)
            self.metrics.handshakes[("refused", refusal.status)] += 1
            return refusal
        # Counted until the connection opens, so a burst of slow $connects cannot overshoot.
        self.admission.pending += 1
        try:
            answer = await self._admitted_handshake(hs)
        finally:
            self.admission.pending -= 1
        if isinstance(answer, HttpResponse):
            self.metrics.handshakes[("refused", answer.status)] += 1
        else:
            self.metrics.handshakes[("accepted", 101)] += 1
        return answer

    async def _admitted_handshake(self, hs: Handshake) -> Accept | HttpResponse:
        assert self.api_context is not None
        assert self.invoker is not None
        connected = now_ms()
        query = parse_qsl(hs.query_string, keep_blank_values=True) if hs.query_string else None
        ctx = ConnectionContext(
            connection_id=new_connection_id(),
            connected_at=connected,
            source_ip=hs.remote,
            user_agent=hs.header("User-Agent") or "",
            headers=gateway_headers(
                hs.headers,
                source_ip=hs.remote,
                port=hs.port,
                proto=hs.scheme,
                trace_id=new_trace_id(connected),
            ),
            query=query,
        )
        if self.authorizer is not None:
            request_id = new_request_id()
            verdict = await self.authorizer.authorize(
                self.invoker,
                connect_event(self.api_context, ctx, request_id=request_id, now_ms=connected),
                headers=hs.headers,
                query=query,
                method_arn=self._method_arn,
                connection_id=ctx.connection_id,
                request_id=request_id,
            )
            if isinstance(verdict, HttpResponse):
                decision = "deny" if verdict.status in (401, 403) else "error"
                self.metrics.authorizer[decision] += 1
                return verdict
            self.metrics.authorizer["allow"] += 1
            ctx.authorizer = verdict
        headers: dict[str, str] = {}
        subprotocol = None
        route = self.routes.get("$connect")
        if route is not None:
            request_id = new_request_id()
            event = connect_event(self.api_context, ctx, request_id=request_id, now_ms=connected)
            outcome = await self.invoker.invoke_awaited(
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
        opted_in = self.resumer is not None and wants_recovery(
            hs.header("Sec-WebSocket-Protocol"), query
        )
        requested = hs.header("Sec-WebSocket-Protocol") or ""
        if opted_in and subprotocol is None and SUBPROTOCOL in requested:
            subprotocol = SUBPROTOCOL  # hubbub's own protocol: we answer for it ourselves
        return Accept(
            # A partial, not a lambda: it lives as long as the connection (~250 bytes less).
            run=functools.partial(self._run, ctx, opted_in),
            gone=functools.partial(self._gone_before_open, ctx),
            headers=headers,
            subprotocol=subprotocol,
        )

    # -- connection lifecycle -----------------------------------------------------------------
    async def _run(self, ctx: ConnectionContext, opted_in: bool, sock: Socket) -> None:
        assert self.api_context is not None
        conn = Connection(sock, ctx, self.api_context)
        self.metrics.opened += 1
        if opted_in and self.resumer is not None:
            conn.session = self.resumer.new_session()
        self.hub.add(conn)
        await self.store.registry.add(
            ConnectionRecord(
                connection_id=conn.id,
                node_id=self.node_id,
                connected_at=ctx.connected_at,
                last_active_at=ctx.connected_at,
                source_ip=ctx.source_ip,
                user_agent=ctx.user_agent,
                host=find_header(ctx.headers, "host") or "",
                authorizer=dict(ctx.authorizer) if ctx.authorizer else None,
                session=conn.session,
            )
        )
        ctx.forget_handshake()
        if conn.session is not None:
            self.hub.send(conn, session_frame(conn.session, conn.id))
        principal = (ctx.authorizer or {}).get("principalId")
        if principal and 1 <= len(str(principal)) <= 128:
            # Authorised connections belong to their principal: @users/{principalId} reaches them.
            await self.users.bind(str(principal), conn.id)
        logs.event(logs.ACCESS, "connect", connectionId=conn.id, sourceIp=ctx.source_ip)
        self.timeouts.add(conn)
        try:
            assert self.messages is not None
            await self.messages.run(conn)
        except asyncio.CancelledError:
            conn.set_close(*GOING_AWAY)
            raise
        finally:
            await self._retire(conn)

    async def _save_session(
        self,
        record: ConnectionRecord,
        joined: Mapping[str, Position] | None = None,
        presence: dict[str, Any] | None = None,
    ) -> None:
        if record.session is not None and self.resumer is not None:
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
                await self.resumer.save(record.session, session)
            except Exception:  # best effort: the client will be told "session expired"
                log.exception("saving a recovery session failed")

    async def _close_local(self, conn: Connection, code: int, reason: str) -> None:
        """DeleteConnection on a local connection: gone for the API at once, then closed."""
        conn.set_close(code, reason)
        await self._retire(conn)
        await conn.close(code, reason)

    async def _retire(self, conn: Connection) -> None:
        """Remove a connection from hub and registry, then schedule its one ``$disconnect``."""
        if conn.retired:
            return
        conn.retired = True
        self._retiring += 1
        self._retire_idle.clear()
        try:
            self.timeouts.remove(conn)
            conn.stop_drainer()
            self.hub.remove(conn)
            record = await self.store.registry.remove(conn.id)
            code, reason = conn.close_status
            self.metrics.closed[code] += 1
            logs.event(logs.ACCESS, "disconnect", connectionId=conn.id, code=code, reason=reason)
            # Its presence leaves now, or is deferred for a resume (no store call when it was
            # present nowhere). Also when a reaper got the record: then nothing is left to do.
            kept = await self._presence_retired(conn) if self.presence.tracks(conn.id) else {}
            if conn.resumed is not None and self.resumer is not None:
                try:
                    await self.resumer.release(conn)
                except Exception:  # best effort: the claim expires with the session
                    log.exception("releasing a recovery session failed")
            if record is None:  # someone else (a reaping node) already delivered $disconnect
                return
            if record.session is not None:  # checked here: spares a coroutine per plain close
                await self._save_session(record, conn.joined, kept)
            self._spawn_disconnect(conn.context, code, reason)
        finally:
            self._retiring -= 1
            if not self._retiring:
                self._retire_idle.set()

    async def _presence_retired(self, conn: Connection) -> dict[str, Any]:
        try:
            return await self.presence.retired(conn.id, resumable=conn.session is not None)
        except Exception:  # the store is away: a sweep or a reaper cannot know; say so
            log.exception("presence of a closed connection not removed")
            return {}

    async def _drain(self, conn: Connection) -> None:
        """Shutdown: close with 1001, then retire here rather than wait for the read loop to
        (it may not have run yet when the drain takes its snapshot of ``$disconnect`` tasks)."""
        try:
            await conn.close(*GOING_AWAY)
        finally:
            await self._retire(conn)

    def _gone_before_open(self, ctx: ConnectionContext) -> None:
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
        """Run ``$disconnect`` in the background; ``close`` waits for it."""
        route = self.routes.get("$disconnect")
        if route is not None:
            task = asyncio.get_running_loop().create_task(
                self._disconnect(ctx, route, code, reason)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            self._disconnects.add(task)
            task.add_done_callback(self._disconnects.discard)

    async def _reaped(self, record: ConnectionRecord) -> None:
        """A dead node's connection, removed by us: its one ``$disconnect`` runs here."""
        try:
            kept = await self.presence.reaped(record)
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
            code=ABNORMAL,
            reason=NODE_LOST,
            node=record.node_id,
        )
        route = self.routes.get("$disconnect")
        if route is not None:
            await self._disconnect(ctx, route, ABNORMAL, NODE_LOST)

    async def _disconnect(
        self, ctx: ConnectionContext, route: Route, code: int, reason: str
    ) -> None:
        assert self.api_context is not None
        assert self.invoker is not None
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
        await self.invoker.invoke_awaited(
            route, event, connection_id=ctx.connection_id, request_id=request_id, queue=True
        )


def _probe(status: int, body: dict[str, str]) -> HttpResponse:
    return HttpResponse(
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store"},
        orjson.dumps(body),
    )


NODE_LOST = "Gateway node lost"
GONE_BEFORE_OPEN = (ABNORMAL, "Client went away during the handshake")
# The browser client (clients/js/hubbub.js, shipped as package data) is served at /hubbub.js.
_BROWSER_CLIENT = Path(__file__).resolve().parent.parent / "static" / "hubbub.js"


_HOP_BY_HOP = {
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

"""The composition root: :class:`Gateway` builds every part from a :class:`~hubbub.config.Config`,
starts them in dependency order, and stops them, the graceful drain first.

Each part's work is in its own module: the life of a connection in ``lifecycle.py``, the
listeners in ``listeners.py``, the management API in ``management/``, the probes and URLs in
``health.py``. Shutdown (:meth:`Gateway.close`): stop accepting, drain (every connection closed
with 1001 and given its ``$disconnect`` within ``server.shutdown_grace``, see
:meth:`Lifecycle.drain <hubbub.gateway.lifecycle.Lifecycle.drain>`), then close what started, in
reverse order. ``$disconnect`` handlers the grace cut off are counted in
``undelivered_disconnects`` (``hubbub serve`` exits 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

from hubbub.aws.authorizer import method_arn
from hubbub.aws.events import ApiContext
from hubbub.aws.ids import api_id_for
from hubbub.aws.selection import compile_route_selection
from hubbub.config import Config
from hubbub.errors import ConfigError
from hubbub.gateway.auth import ConnectAuthorizer, execution_role
from hubbub.gateway.connection import Connection, Timeouts
from hubbub.gateway.health import Health, Status, http_url, management_url, websocket_url
from hubbub.gateway.hub import Hub
from hubbub.gateway.invoke import Invoker, Route
from hubbub.gateway.lifecycle import Lifecycle
from hubbub.gateway.limits import Admission
from hubbub.gateway.listeners import ManagementListeners, start_management, start_public
from hubbub.gateway.management import inprocess
from hubbub.gateway.management.api import ManagementApi
from hubbub.gateway.management.services import (
    Connections,
    GatewayApi,
    Rooms,
    Services,
    SyncGatewayApi,
    Users,
)
from hubbub.gateway.management.targets import InProcessEndpoint
from hubbub.gateway.messages import MessageLoop
from hubbub.gateway.metrics import Metrics, measured_registry
from hubbub.gateway.observability import Observability
from hubbub.gateway.presence import RoomPresence, route_hook
from hubbub.gateway.proxies import TrustedProxies
from hubbub.gateway.recovery import Resumer
from hubbub.gateway.reload import Reloader, start_reloader
from hubbub.gateway.routing import RouteFactory
from hubbub.gateway.tls import (
    LocalTls,
    default_state_dir,
    ensure_local_tls,
    event_domain,
    public_ssl_context,
)
from hubbub.gateway.transport_aiohttp import Listener
from hubbub.infra.tables import create_tables
from hubbub.integrations import environment
from hubbub.integrations.http import HttpClient
from hubbub.store import open_store
from hubbub.store.recovery import Recovery, open_recovery

log = logging.getLogger("hubbub.gateway")


@dataclass(frozen=True, slots=True)
class Started:
    """The parts that exist once :meth:`Gateway.start` has run."""

    api: GatewayApi
    routes: dict[str, Route]
    invoker: Invoker
    recovery: Recovery | None  # [history] on
    resumer: Resumer | None  # [history] on
    api_context: ApiContext
    lifecycle: Lifecycle
    management: ManagementListeners
    public: Listener
    tls: LocalTls | None  # [management] tls on
    in_process: InProcessEndpoint | None  # [management] in_process on
    route_factory: RouteFactory  # the routes' builder; owns the functions' process pools
    reloader: Reloader | None  # [server] reload on


@dataclass(frozen=True, slots=True)
class _Core:
    """What :meth:`Gateway._build` makes: the parts the listeners and the lifecycle use."""

    routes: dict[str, Route]
    authorizer: ConnectAuthorizer | None
    recovery: Recovery | None
    services: Services
    api: GatewayApi
    invoker: Invoker
    resumer: Resumer | None
    observability: Observability
    management_api: ManagementApi
    factory: RouteFactory  # builds the routes; owns the functions' process pools


class _Reloadable:
    """What hot reload replaces (hubbub.gateway.reload.Target): routes in the routing table the
    invoker and the lifecycle read, and the lifecycle's authorizer."""

    def __init__(self, config: Config, routes: dict[str, Route], lifecycle: Lifecycle) -> None:
        self.config = config
        self.routes = routes
        self._lifecycle = lifecycle

    @property
    def authorizer(self) -> ConnectAuthorizer | None:
        return self._lifecycle.authorizer

    @authorizer.setter
    def authorizer(self, value: ConnectAuthorizer | None) -> None:
        self._lifecycle.authorizer = value


class Gateway:
    """A hubbub gateway. Use ``async with Gateway(config) as gw:``.

    The management operations (``gw.connections.post``, ``gw.rooms.send``, ``gw.users.bind``,
    ``gw.broadcast``) are those of :attr:`api`, the service layer the HTTP management API and
    handlers (``context.gateway``) use.
    """

    def __init__(self, config: Config, *, reuse_port: bool = False) -> None:
        """Build the parts that need no I/O. ``reuse_port``: share the listeners' ports with
        other processes (SO_REUSEPORT), as the workers of ``hubbub serve --workers`` do
        (:mod:`hubbub.workers`)."""
        self.config = config
        self._reuse_port = reuse_port
        self.node_id = _node_id(config)
        self.store = open_store(
            config.store.url,
            node_id=self.node_id,
            key_prefix=config.store.key_prefix,
            heartbeat_interval=config.cluster.heartbeat_interval,
        )
        self.metrics = Metrics()
        # Every registry call of the gateway is counted and timed (hubbub_store_* in /metrics).
        self.store.registry = measured_registry(self.store.registry, self.metrics)
        self.hub = Hub(config.limits.send_queue_bytes)
        self.timeouts = Timeouts(config.limits.idle_timeout, config.limits.max_duration)
        self.presence = RoomPresence(self.hub, self.store, config.presence)
        self.proxies = TrustedProxies(config.server.trusted_proxies)
        self.admission = Admission(
            allowed_origins=config.server.allowed_origins,
            max_connections=config.limits.max_connections,
            connect_rate=config.limits.connect_rate,
            connect_rate_per_ip=config.limits.connect_rate_per_ip,
        )
        self.status = Status()
        self._health = Health(
            node_id=self.node_id, status=self.status, hub=self.hub, store=self.store
        )
        self.execution_role = execution_role()
        # $disconnect handlers the shutdown grace cut off (see close); 0 after a clean drain.
        self.undelivered_disconnects = 0
        self._http = HttpClient()
        # What started, closed in reverse order by close(); these two exist from the start.
        self._resources = contextlib.AsyncExitStack()
        self._resources.push_async_callback(self._http.close)
        self._resources.push_async_callback(self.store.close)
        self._resources.callback(self.timeouts.close)
        # Built in start, after the services that need it to close a local connection.
        self._lifecycle: Lifecycle | None = None
        self._started: Started | None = None
        self._closed = False

    # -- start and stop -----------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every part in dependency order; on an error, :meth:`close` releases what
        did start."""
        public_ssl, tls = await self._prepare()
        core = self._build(tls)
        management = await start_management(
            self.config, core.management_api.handle, tls=tls, reuse_port=self._reuse_port
        )
        self._resources.push_async_callback(management.http.close)
        if management.https is not None:
            self._resources.push_async_callback(management.https.close)
        # Functions in their own processes post to this listener (plain HTTP on loopback).
        core.factory.runtimes.set_management(
            f"http://{event_domain(management.http.host, management.http.port)}",
            self.config.api.aliases,
            unsigned=self.config.management.auth == "none",
        )
        lifecycle = self._lifecycle = self._build_lifecycle(core, management)
        await self.store.start(core.services.deliver_local, lifecycle.reaped)
        self._start_presence(core, lifecycle)
        if core.resumer is not None:
            core.resumer.start()
            self._resources.push_async_callback(core.resumer.close)
        public = await start_public(
            self.config,
            lifecycle.handshake,
            probes={"/healthz": self._health.healthz, "/readyz": self._health.readyz},
            ssl_context=public_ssl,
            proxies=self.proxies,
            reuse_port=self._reuse_port,
        )
        self._resources.push_async_callback(public.close)
        in_process = None
        if self.config.management.in_process:
            in_process = inprocess.serve_gateway(
                self.config, core.management_api, management.http, management.https, public
            )
            self._resources.callback(in_process.close)
        core.observability.start()
        self._resources.push_async_callback(core.observability.close)
        self._resources.push_async_callback(self._drain, public, lifecycle)  # closes first
        reloader = None
        if self.config.server.reload:  # before accepting: a change from now on reloads
            reloader = await start_reloader(_Reloadable(self.config, core.routes, lifecycle))
            self._resources.push_async_callback(reloader.close)  # stops before the drain
        self._started = Started(
            api=core.api,
            routes=core.routes,
            invoker=core.invoker,
            recovery=core.recovery,
            resumer=core.resumer,
            api_context=lifecycle.api_context,
            lifecycle=lifecycle,
            management=management,
            public=public,
            tls=tls,
            in_process=in_process,
            route_factory=core.factory,
            reloader=reloader,
        )
        self.status.accepting = True
        self.status.started_at = time.time()
        log.info(
            "gateway started",
            extra={
                "fields": {
                    "websocket": self.websocket_url,
                    "management": self.management_url,
                    "store": self.config.store.url,
                    "node": self.node_id,
                }
            },
        )

    def _build(self, tls: LocalTls | None) -> _Core:
        """The parts between the handlers and the listeners; the handlers load here."""
        config = self.config
        factory = RouteFactory(config, execution_role=self.execution_role, tls=tls, http=self._http)
        self._resources.callback(factory.close)
        # The functions' processes drain after the routes stop taking invocations.
        self._resources.push_async_callback(factory.runtimes.close)
        routes = factory.routes()
        for route in routes.values():
            self._resources.push_async_callback(route.integration.close)
        authorizer = factory.authorizer()
        recovery = open_recovery(config)
        if recovery is not None:
            self._resources.push_async_callback(recovery.close)
        services = Services(
            self.hub,
            self.store,
            max_post_bytes=config.limits.max_post_bytes,
            metrics=self.metrics,
            closer=self,
            presence=self.presence,
            recovery=recovery,
        )
        api = GatewayApi(services)
        invoker = Invoker(
            max_concurrent=config.limits.max_concurrent_invocations,
            region=config.api.region,
            account_id=config.api.account_id,
            async_api=api,
            sync_api=SyncGatewayApi(api, asyncio.get_running_loop()),
        )
        resumer = None
        if recovery is not None:  # a session outlives its connection by the history window
            resumer = Resumer(
                recovery, api, self.hub, session_ttl=config.history.ttl, presence=self.presence
            )
        observability = Observability(
            node=self.node_id,
            metrics=self.metrics,
            hub=self.hub,
            store=self.store,
            routes=lambda: routes,
            invoker=lambda: invoker,
            resumer=lambda: resumer,
        )
        return _Core(
            factory=factory,
            routes=routes,
            authorizer=authorizer,
            recovery=recovery,
            services=services,
            api=api,
            invoker=invoker,
            resumer=resumer,
            observability=observability,
            management_api=ManagementApi.for_config(
                config,
                api,
                execution_role=self.execution_role,
                health=self._health.details,
                pages=observability.pages,
                metrics=self.metrics,
            ),
        )

    def _build_lifecycle(self, core: _Core, management: ManagementListeners) -> Lifecycle:
        config = self.config
        api_context = ApiContext(
            api_id=api_id_for(config.api.name),
            stage=config.api.stage,
            domain_name=management.domain(config),
            stage_variables=dict(config.api.stage_variables) or None,
        )
        return Lifecycle(
            node_id=self.node_id,
            status=self.status,
            hub=self.hub,
            store=self.store,
            metrics=self.metrics,
            timeouts=self.timeouts,
            admission=self.admission,
            proxies=self.proxies,
            presence=self.presence,
            api=core.api,
            invoker=core.invoker,
            routes=core.routes,
            api_context=api_context,
            method_arn=method_arn(
                region=config.api.region,
                account_id=config.api.account_id,
                api_id=api_context.api_id,
                stage=config.api.stage,
            ),
            authorizer=core.authorizer,
            resumer=core.resumer,
            messages=self._message_loop(core),
        )

    def _start_presence(self, core: _Core, lifecycle: Lifecycle) -> None:
        route = self.config.presence.route
        if route:
            self.presence.on_event = route_hook(
                core.invoker, core.routes, lifecycle.api_context, route, lifecycle.background
            )
        self.presence.start()
        self._resources.push_async_callback(self.presence.close)

    async def _prepare(self) -> tuple[ssl.SSLContext | None, LocalTls | None]:
        """What must be in place before the handlers load: the public certificate (a bad one
        fails the start before anything listens), the handlers' environment and boto3 hooks,
        the local CA the environment names, the imported tables their module code may use."""
        config, server = self.config, self.config.server
        public_ssl = None
        if server.tls_cert is not None and server.tls_key is not None:
            public_ssl = public_ssl_context(server.tls_cert, server.tls_key, server.tls_ca)
        environment.install()
        if config.management.in_process:
            inprocess.install()  # before handlers load: their module-level boto3 clients too
        tls = None
        if config.management.tls:
            state_dir = config.management.state_dir or default_state_dir()
            try:
                tls = ensure_local_tls(state_dir, [config.management.host, config.api.domain_name])
            except OSError as exc:
                raise ConfigError("management.state_dir", f"{state_dir}: {exc}") from exc
        if config.imported is not None and config.imported.create_tables:
            await asyncio.to_thread(create_tables, config)
        return public_ssl, tls

    def _message_loop(self, core: _Core) -> MessageLoop:
        config = self.config
        return MessageLoop(
            limits=config.limits,
            selector=compile_route_selection(config.api.route_selection_expression),
            routes=core.routes,
            invoker=core.invoker,
            hub=self.hub,
            resumer=core.resumer,
            metrics=self.metrics,
            # One node answers GetConnection from memory; only a shared registry needs touches.
            touch=self.store.registry.touch if self.store.shared else None,
        )

    async def close(self) -> None:
        """Graceful drain, then every part closed (see the module docstring). Safe to call
        twice, and after a failed start."""
        if self._closed:
            return
        self._closed = True
        self.status.accepting = False
        await self._resources.aclose()
        if self._started is not None:  # a gateway that never started has nothing to announce
            log.info("gateway stopped")

    async def _drain(self, public: Listener, lifecycle: Lifecycle) -> None:
        await public.stop_accepting()
        self.undelivered_disconnects = await lifecycle.drain(self.config.server.shutdown_grace)
        self.timeouts.close()

    async def close_local(self, conn: Connection, code: int, reason: str) -> None:
        """DeleteConnection on a connection of this node (the services' LocalCloser): through
        the lifecycle, which is built after the services in :meth:`start`."""
        assert self._lifecycle is not None, "no local connection before the lifecycle exists"
        await self._lifecycle.close_local(conn, code, reason)

    # -- the started parts --------------------------------------------------------------------
    @property
    def started(self) -> Started:
        if self._started is None:
            raise RuntimeError("the gateway has not started")
        return self._started

    @property
    def api(self) -> GatewayApi:
        return self.started.api

    @property
    def route_factory(self) -> RouteFactory:
        return self.started.route_factory

    @property
    def reloader(self) -> Reloader | None:
        return self.started.reloader

    @property
    def connections(self) -> Connections:
        return self.started.api.connections

    @property
    def rooms(self) -> Rooms:
        return self.started.api.rooms

    @property
    def users(self) -> Users:
        return self.started.api.users

    async def broadcast(self, data: bytes | str) -> int:
        """Send to every connection on every node."""
        return await self.started.api.broadcast(data)

    @property
    def routes(self) -> dict[str, Route]:
        return self.started.routes

    @property
    def invoker(self) -> Invoker:
        return self.started.invoker

    @property
    def recovery(self) -> Recovery | None:
        return self.started.recovery

    @property
    def resumer(self) -> Resumer | None:
        return self.started.resumer

    @property
    def api_context(self) -> ApiContext:
        return self.started.api_context

    @property
    def lifecycle(self) -> Lifecycle:
        return self.started.lifecycle

    @property
    def tls(self) -> LocalTls | None:
        return self.started.tls

    @property
    def in_process(self) -> InProcessEndpoint | None:
        return self.started.in_process

    @property
    def public(self) -> Listener:
        return self.started.public

    @property
    def management(self) -> Listener:
        return self.started.management.http

    @property
    def management_tls(self) -> Listener | None:
        return self.started.management.https

    async def health(self) -> dict[str, Any]:
        """``GET /health``'s details: status, node, connections, uptime, the store's report."""
        return await self._health.details()

    # -- URLs ---------------------------------------------------------------------------------
    @property
    def websocket_url(self) -> str:
        return websocket_url(self.config, self.public)

    @property
    def http_url(self) -> str:
        return http_url(self.config, self.public)

    @property
    def management_url(self) -> str:
        return management_url(self.config, self.management)

    @property
    def management_https_url(self) -> str | None:
        https = self.management_tls
        return None if https is None else management_url(self.config, https, "https")


def _node_id(config: Config) -> str:
    node_id = config.cluster.node_id
    if node_id == "auto":
        node_id = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return node_id

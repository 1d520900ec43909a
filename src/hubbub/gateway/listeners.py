"""The gateway's listeners, started from its :class:`~hubbub.config.Config`: the management API
over HTTP and HTTPS behind the browser guard, and the public WebSocket listener with its pages.

A port that cannot be bound is a :class:`~hubbub.errors.ListenError` naming the listener's keys.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubbub.config import MANAGEMENT_LISTENER, MANAGEMENT_TLS_LISTENER, PUBLIC_LISTENER, Config
from hubbub.gateway.browser_guard import BrowserGuard
from hubbub.gateway.proxies import TrustedProxies
from hubbub.gateway.tls import LocalTls, event_domain, server_ssl_context
from hubbub.gateway.transport_aiohttp import Accept, Listener, SocketOptions, start_http
from hubbub.gateway.upgrade_aiohttp import start_public as start_public_listener
from hubbub.wire.http import Handshake, HttpRequest, HttpResponse

# The browser client (clients/js/hubbub.js, shipped as package data) is served at /hubbub.js.
_BROWSER_CLIENT = Path(__file__).resolve().parent.parent / "static" / "hubbub.js"


@dataclass(frozen=True, slots=True)
class ManagementListeners:
    http: Listener
    https: Listener | None  # with [management] tls: the local CA's certificate

    def domain(self, config: Config) -> str:
        """The events' ``domainName``: ``api.domain_name``, else the listener handlers reach
        with ``https://{domainName}/{stage}`` (the HTTPS one when there is one)."""
        if config.api.domain_name:
            return config.api.domain_name
        if self.https is not None:
            return event_domain(self.https.host, self.https.port)
        return f"{self.http.host}:{self.http.port}"


async def start_management(
    config: Config,
    handle: Callable[[HttpRequest], Awaitable[HttpResponse]],
    *,
    tls: LocalTls | None,
    reuse_port: bool,
) -> ManagementListeners:
    """Listen for the management API; the browser guard checks Host only without SigV4."""
    management = config.management
    guard = BrowserGuard(
        check_host=management.auth != "sigv4",
        allowed_hosts=management.allowed_hosts,
        allowed_origins=management.allowed_origins,
        domain_name=config.api.domain_name,
    )
    options: dict[str, Any] = {
        "handler": guard.wrap(handle),  # listeners only: in-process calls are ours
        "max_body": config.limits.max_post_bytes,
        "reuse_port": reuse_port,
        "max_header_bytes": config.limits.max_header_bytes,
        "header_timeout": management.header_timeout,
        "idle_timeout": management.idle_timeout,
    }
    try:
        http = await start_http(host=management.host, port=management.port, **options)
    except OSError as exc:
        raise MANAGEMENT_LISTENER.error(management.host, management.port, exc) from exc
    guard.add_listener("http", http.host, http.port)
    if tls is None:
        return ManagementListeners(http, None)
    # https://{domainName}/{stage}, as handlers build it, reaches this listener with a
    # certificate their SDK trusts (AWS_CA_BUNDLE points at our CA plus the usual ones).
    try:
        https = await start_http(
            host=management.host,
            port=management.tls_port,
            ssl_context=server_ssl_context(tls),
            **options,
        )
    except OSError as exc:
        await http.close()
        raise MANAGEMENT_TLS_LISTENER.error(management.host, management.tls_port, exc) from exc
    guard.add_listener("https", https.host, https.port)
    return ManagementListeners(http, https)


async def start_public(
    config: Config,
    on_handshake: Callable[[Handshake], Awaitable[Accept | HttpResponse]],
    *,
    probes: dict[str, Callable[[], Awaitable[HttpResponse]]],
    ssl_context: ssl.SSLContext | None,
    proxies: TrustedProxies,
    reuse_port: bool,
) -> Listener:
    """Listen for WebSocket clients, the static pages, /hubbub.js and the probes."""
    server, limits = config.server, config.limits
    try:
        return await start_public_listener(
            host=server.host,
            port=server.port,
            stage=config.api.stage,
            on_handshake=on_handshake,
            options=SocketOptions(
                max_frame_bytes=limits.max_frame_bytes,
                max_message_bytes=limits.max_message_bytes,
                compression=server.compression,
                ping_interval=server.ping_interval,
                ping_timeout=server.ping_timeout,
                handshake_timeout=limits.handshake_timeout,
                max_pending_handshakes=limits.max_pending_handshakes,
            ),
            static_dir=config.static.dir,
            extra_files=[("/hubbub.js", _BROWSER_CLIENT, "text/javascript; charset=utf-8")],
            max_header_bytes=limits.max_header_bytes,
            reuse_port=reuse_port,
            ssl_context=ssl_context,
            proxy_from=proxies.trusts if server.proxy_protocol else None,
            probes=probes,
        )
    except OSError as exc:
        raise PUBLIC_LISTENER.error(server.host, server.port, exc) from exc

"""Rules across keys, checked once the whole :class:`~hubbub.config.model.Config` is built."""

from __future__ import annotations

import ipaddress
import socket
import sys
from urllib.parse import urlsplit

from hubbub.aws.selection import compile_route_selection
from hubbub.config.model import Config, is_loopback
from hubbub.errors import ConfigError
from hubbub.store.schemes import SCHEMES, STORE_SCHEMES, is_shared


def validate(config: Config) -> None:
    for key, value in (
        ("server.port", config.server.port),
        ("management.port", config.management.port),
        ("management.tls_port", config.management.tls_port),
    ):
        if value > 65535:
            raise ConfigError(key, f"must be a TCP port (0-65535), got {value}")
    limits = config.limits
    if limits.max_frame_bytes < 125:
        raise ConfigError("limits.max_frame_bytes", "must be at least 125")
    if limits.max_message_bytes < limits.max_frame_bytes:
        raise ConfigError("limits.max_message_bytes", "must be at least limits.max_frame_bytes")
    if limits.handler_timeout == 0:
        raise ConfigError("limits.handler_timeout", "must be greater than 0")
    if limits.max_concurrent_invocations < 1:
        raise ConfigError("limits.max_concurrent_invocations", "must be at least 1")
    if limits.max_invocations_per_connection < 1:
        raise ConfigError("limits.max_invocations_per_connection", "must be at least 1")
    if limits.handler_threads < 1:
        raise ConfigError("limits.handler_threads", "must be at least 1")
    for key, seconds in (
        ("management.header_timeout", config.management.header_timeout),
        ("management.idle_timeout", config.management.idle_timeout),
    ):
        if seconds == 0:
            raise ConfigError(key, "must be greater than 0")
    if not config.api.stage or "/" in config.api.stage or "@" in config.api.stage:
        raise ConfigError(
            "api.stage", f"must be a non-empty name without / or @, got {config.api.stage!r}"
        )
    if config.api.stage in ("healthz", "readyz", "hubbub.js"):
        raise ConfigError("api.stage", f"{config.api.stage!r} is a path the listener serves itself")
    _validate_store(config)
    _validate_server_tls(config)
    _validate_workers(config)
    if config.presence.route and config.presence.route not in config.routes:
        raise ConfigError(
            "presence.route",
            f"names no route: add [routes] {config.presence.route!r} = {{ handler = ... }}",
        )
    if config.history.size < 1:
        raise ConfigError("history.size", "must be at least 1")
    if config.history.max_bytes < 1:
        raise ConfigError("history.max_bytes", "must be at least 1")
    if config.history.max_rooms < 1:
        raise ConfigError("history.max_rooms", "must be at least 1")
    if config.history.url and urlsplit(config.history.url).scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(
            "history.url",
            f"must be empty (follow [store]) or a URL of {known}, got {config.history.url!r}",
        )
    if config.static.dir is not None and not config.static.dir.is_dir():
        raise ConfigError("static.dir", f"{config.static.dir} is not a directory")
    if config.management.auth == "none" and not is_loopback(config.management.host):
        raise ConfigError(
            "management.auth",
            f'"none" is only allowed while management.host is a loopback address '
            f'(got {config.management.host!r}); set auth = "sigv4" with credentials to expose it',
        )
    # Compile the selection expression now so a bad one is reported at load time.
    try:
        compile_route_selection(config.api.route_selection_expression)
    except ValueError as exc:
        raise ConfigError("api.route_selection_expression", str(exc)) from exc


def _validate_server_tls(config: Config) -> None:
    server = config.server
    if (server.tls_cert is None) != (server.tls_key is None):
        raise ConfigError(
            "server.tls_cert" if server.tls_cert is None else "server.tls_key",
            "tls_cert and tls_key go together (the certificate chain and its private key, PEM)",
        )
    if server.tls_ca is not None and server.tls_cert is None:
        raise ConfigError("server.tls_ca", "client certificates need tls_cert and tls_key too")
    for key in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(server, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"server.{key}", f"{path} is not a file")
    for i, network in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"server.trusted_proxies[{i}]",
                f"{network!r} is not an address or CIDR block ({exc})",
            ) from exc
    if server.proxy_protocol and not server.trusted_proxies:
        raise ConfigError(
            "server.proxy_protocol", "needs server.trusted_proxies: the peers that send it"
        )
    if server.proxy_protocol and server.tls_cert is not None:
        raise ConfigError(
            "server.proxy_protocol",
            "the PROXY header comes before TLS: terminate TLS in the proxy, or drop one of them",
        )


def _validate_store(config: Config) -> None:
    scheme = urlsplit(config.store.url).scheme
    if scheme not in STORE_SCHEMES:
        known = ", ".join(f"{s}://" for s in STORE_SCHEMES)
        raise ConfigError("store.url", f"unknown scheme in {config.store.url!r} (known: {known})")


def _validate_workers(config: Config) -> None:
    if config.server.workers == 1:
        return
    # Workers meet only through a store that several processes can share.
    if not is_shared(config.store.url):
        raise ConfigError(
            "server.workers",
            f"workers = {config.server.workers} needs a shared store: workers share connections, "
            f'rooms and users only through Redis (set [store] url = "redis://..."; '
            f"got {config.store.url!r})",
        )
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(
            "server.workers",
            "workers other than 1 need Linux (the kernel spreads connections over the workers "
            "with SO_REUSEPORT)",
        )

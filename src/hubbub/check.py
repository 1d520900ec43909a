"""``hubbub check``: all that ``hubbub serve`` validates before it listens, and what it would serve.

It loads the config (keys, values, store and history schemes, static folder), imports every
handler inside its function's environment (a failing import names the route, file and line), builds
the authorizer, opens (without connecting) the store so a missing extra is reported, checks the
history backend's location and the HTTPS listener's certificate folder. It binds no port and
connects to nothing: a port in use or a Redis server that is down is found by ``serve``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hubbub.config import Config, FunctionSpec, is_loopback
from hubbub.errors import ConfigError
from hubbub.gateway.auth import execution_role
from hubbub.gateway.routing import RouteFactory
from hubbub.gateway.tls import default_state_dir, public_ssl_context
from hubbub.integrations import environment
from hubbub.integrations.http import HttpClient
from hubbub.runtimes import launch
from hubbub.store import open_store
from hubbub.store.recovery import sqlite_history_path
from hubbub.store.schemes import is_shared


def check(config: Config) -> list[str]:
    """Validate ``config`` as ``serve`` would; the summary lines to print. Raises ConfigError."""
    # Handlers import inside their function's environment, as serve imports them.
    environment.install()
    factory = RouteFactory(config, execution_role=execution_role(), tls=None, http=HttpClient())
    try:
        factory.routes()  # imports every handler: HandlerError names the route, file and line
        factory.authorizer()
    finally:
        factory.close()
    server = config.server
    if server.tls_cert is not None and server.tls_key is not None:
        public_ssl_context(server.tls_cert, server.tls_key, server.tls_ca)
    open_store(config.store.url, node_id="check", key_prefix=config.store.key_prefix)
    _check_history(config)
    state_dir = _check_tls(config)
    return summary(config, state_dir)


def _check_history(config: Config) -> None:
    url = config.history.url or config.store.url
    if config.history.enabled and is_shared(url):
        key = "history.url" if config.history.url else "store.url"
        try:
            import hubbub.store.recovery_redis  # noqa: F401, PLC0415 - optional dependency
            from hubbub.store import redis_connect  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise ConfigError(
                key, f"Redis history needs an extra package: pip install 'hubbub[redis]' ({exc})"
            ) from exc
        if url.startswith(("redis+sentinel://", "redis+cluster://")):
            try:
                redis_connect.parse(url)
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from exc
    path = sqlite_history_path(config)
    if path is None:
        return
    folder = _nearest_existing(path.parent)
    if not os.access(folder, os.W_OK):
        raise ConfigError("history.url", f"cannot create {path}: {folder} is not writable")


def _check_tls(config: Config) -> Path | None:
    if not config.management.tls:
        return None
    state_dir = config.management.state_dir or default_state_dir()
    folder = _nearest_existing(state_dir)
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(
            "management.state_dir",
            f"{state_dir}: {folder} is not a writable folder (the local CA for the HTTPS "
            "management listener lives there; set management.tls = false to do without it)",
        )
    return state_dir


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _url(scheme: str, host: str, port: int, stage: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port or '<any free port>'}/{stage}"


def summary(config: Config, state_dir: Path | None) -> list[str]:
    """What ``serve`` would run: listeners, store, authorizer and routes, one line each."""
    api, server, management = config.api, config.server, config.management
    pages = f"  (pages from {config.static.dir})" if config.static.dir is not None else ""
    scheme = "wss" if server.tls_cert is not None else "ws"
    if server.tls_ca is not None:
        pages += f"  (client certificates from {server.tls_ca})"
    if server.trusted_proxies:
        pages += f"  (trusted proxies: {', '.join(server.trusted_proxies)})"
    auth = management.auth if is_loopback(management.host) else f"{management.auth}, exposed"
    lines = [
        f"config: {config.source}",
        f"api: {api.name}  stage={api.stage}  route selection: {api.route_selection_expression}",
        "listeners:",
        f"  websocket         {_url(scheme, server.host, server.port, api.stage)}{pages}",
        f"  management        {_url('http', management.host, management.port, api.stage)}"
        f"  (auth: {auth})",
    ]
    if management.tls:
        lines.append(
            f"  https-management  {_url('https', management.host, management.tls_port, api.stage)}"
            f"  (domainName of the events; local CA in {state_dir})"
        )
    workers = f"  workers={server.workers or 'one per core'}" if server.workers != 1 else ""
    lines.append(f"store: {config.store.url}{workers}")
    history = config.history
    if history.enabled:
        backend = history.url or f"follows the store ({config.store.url})"
        lines.append(f"history: {backend}  size={history.size}  ttl={history.ttl:g}s")
    else:
        lines.append("history: off")
    lines.append(f"authorizer: {_authorizer(config)}")
    lines.append("routes:")
    for key, route in config.routes.items():
        kind = _kind(route.handler, route.function)
        two_way = " (two-way)" if route.route_response else ""
        timeout = route.timeout or config.limits.handler_timeout
        lines.append(
            f"  {key:<16} {kind:<6} {route.target}  timeout={timeout:g}s{two_way}"
            + _processes(route.function)
        )
    if not config.routes:
        lines.append("  (none: every connection is accepted and every message is refused)")
    elif "$default" not in config.routes:
        lines.append("  (no $default: unmatched messages get the Forbidden frame)")
    return lines


def _kind(handler: str | None, function: FunctionSpec | None) -> str:
    """What runs the handler: "python" in-process, "http", or the kind of process
    ("node", "provided", "python") a function in its own processes runs in."""
    if not handler:
        return "http"
    if function is not None and function.process_kind is not None:
        return function.process_kind
    return "python"


def _processes(function: FunctionSpec | None) -> str:
    """How a function in its own processes runs (hubbub.runtimes), or ""."""
    if function is None or function.process_kind is None:
        return ""
    reserved = function.reserved_concurrency or launch.DEFAULT_RESERVED_CONCURRENCY
    runtime = function.runtime or "python"
    return f"  ({runtime} in its own processes, up to {reserved})"


def _authorizer(config: Config) -> str:
    authorizer = config.authorizer
    if authorizer is None:
        return "none"
    sources = ", ".join(authorizer.identity_source) or "no identity source"
    if authorizer.jwt is not None:
        return f"jwt issuer={authorizer.jwt.issuer or '(any)'}  ({sources})"
    return (
        f"{_kind(authorizer.handler, authorizer.function)} {authorizer.handler or authorizer.url}"
        + (f"  ({sources})")
    )

"""Command line: a thin mapping onto the library (build a Config, hand it to Gateway).

hubbub serve [--config PATH] [--host H] [--port P] [--management-host H]
             [--management-port P] [--store URL] [--workers N] [--log-format text|json]
             [--log-level L]
hubbub check [--config PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubbub import __version__
from hubbub.config import Config, load_config
from hubbub.errors import ConfigError

if TYPE_CHECKING:
    from hubbub.gateway.app import Gateway


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbub", description="AWS-compatible WebSocket gateway")
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    _config_arg(serve)
    serve.add_argument("--host", help="public WebSocket listener address (server.host)")
    serve.add_argument("--port", type=int, help="public WebSocket listener port (server.port)")
    serve.add_argument("--management-host", help="management API address (management.host)")
    serve.add_argument("--management-port", type=int, help="management API port (management.port)")
    serve.add_argument(
        "--store", help="store URL, e.g. memory:// or redis://host:6379/0 (store.url)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="gateway processes sharing the ports, 0 = one per CPU core; needs a Redis store "
        "(server.workers)",
    )
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="log line format (log.format)"
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="log level (log.level)"
    )

    check = sub.add_parser("check", help="validate a config file and print the resolved routes")
    _config_arg(check)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="path to hubbub.toml (default: ./hubbub.toml if present)"
    )


_FLAG_KEYS = {
    "host": "server.host",
    "port": "server.port",
    "management_host": "management.host",
    "management_port": "management.port",
    "store": "store.url",
    "workers": "server.workers",
    "log_format": "log.format",
    "log_level": "log.level",
}


def build_config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path("hubbub.toml").is_file():
        path = "hubbub.toml"
    overrides: dict[str, Any] = {}
    for attr, key in _FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    return load_config(path, overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = build_config(args)
        if args.command == "check":
            return _check(config)
        return serve(config)
    except ConfigError as exc:
        print(f"hubbub: config error: {exc}", file=sys.stderr)
        return 2


def _check(config: Config) -> int:
    from hubbub.gateway.auth import execution_role
    from hubbub.gateway.routing import RouteFactory
    from hubbub.integrations.http import HttpClient

    # Building the routes imports every handler, so a missing module or function is caught too.
    factory = RouteFactory(config, execution_role=execution_role(), tls=None, http=HttpClient())
    factory.routes()
    factory.authorizer()
    factory.close()
    print(f"config: {config.source}")
    print(f"api: {config.api.name} stage={config.api.stage}")
    print(f"route selection: {config.api.route_selection_expression}")
    print("routes:")
    for key, route in config.routes.items():
        kind = "python" if route.handler else "http"
        two_way = " (two-way)" if route.route_response else ""
        timeout = route.timeout or config.limits.handler_timeout
        print(f"  {key:<16} {kind:<6} {route.target}  timeout={timeout:g}s{two_way}")
    if "$default" not in config.routes:
        print("  (no $default: unmatched messages get the Forbidden frame)")
    return 0


def serve(config: Config) -> int:
    """Run until SIGINT/SIGTERM, then drain; a second signal exits at once.

    With ``server.workers`` other than 1, a supervisor runs that many gateway processes instead
    (:mod:`hubbub.workers`).
    """
    if config.server.workers != 1:
        from hubbub.workers import supervise

        return supervise(config)
    return run_gateway(config)


# Called once the gateway listens, with the event that stops it.
Started = Callable[["Gateway", asyncio.Event], None]


def run_gateway(
    config: Config, *, on_started: Started | None = None, reuse_port: bool = False
) -> int:
    """Run one gateway in this process until it is told to stop; ``on_started`` defaults to
    printing the listener lines. ``reuse_port``: see :class:`~hubbub.gateway.app.Gateway`."""
    from hubbub.gateway import logs

    logs.configure(config.log.format, config.log.level)
    raise_open_files_limit()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # optional: hubbub[fast]
        runner = asyncio.run
    return int(runner(_serve(config, on_started or _print_listeners, reuse_port)))


def raise_open_files_limit() -> None:
    """Every connection is a file descriptor: allow as many as the hard limit does (the soft
    limit is often 1,024, which would cap a gateway near a thousand connections)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows has no such limit
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def listener_lines(gateway: Gateway) -> list[str]:
    """One line per listener; the public one also serves the pages, when there are any."""
    config = gateway.config
    pages = f"  (pages: {gateway.http_url}/)" if config.static.dir is not None else ""
    lines = [
        f"hubbub: websocket  {gateway.websocket_url}{pages}",
        f"hubbub: management {gateway.management_url}",
    ]
    if gateway.management_https_url and gateway.tls is not None:
        lines.append(
            f"hubbub: https-management {gateway.management_https_url}"
            f"  (local CA: {gateway.tls.ca_cert})"
        )
    return lines


def _print_listeners(gateway: Gateway, stop: asyncio.Event) -> None:
    del stop
    for line in listener_lines(gateway):
        print(line, flush=True)


async def _serve(config: Config, on_started: Started, reuse_port: bool) -> int:
    from hubbub.gateway.app import Gateway

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            print("hubbub: second signal, exiting now", file=sys.stderr, flush=True)
            os._exit(1)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    gateway = Gateway(config, reuse_port=reuse_port)
    try:
        await gateway.start()
    except OSError as exc:
        print(f"hubbub: cannot listen: {exc}", file=sys.stderr)
        await gateway.close()
        return 1
    on_started(gateway, stop)
    await stop.wait()
    await gateway.close()
    # Non-zero when the shutdown grace cut $disconnect handlers off (the gateway logged how many).
    return 1 if gateway.undelivered_disconnects else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: a thin mapping onto the library (build a Config, hand it to Gateway).

hubbub serve [--config PATH] [--host H] [--port P] [--management-host H]
             [--management-port P] [--management-tls-port P] [--store URL] [--workers N]
             [--reload] [--log-format text|json] [--log-level L]
hubbub check [--config PATH]     validate as serve would, print what it would serve
hubbub import PATH [--stage NAME] [--parameter KEY=VALUE]... [--var KEY=VALUE]...
              [--var-file FILE]... [--format sam|cloudformation|serverless|terraform]

--config also takes a SAM/CloudFormation template, serverless.yml or Terraform files (with the
same import flags), see docs/importing.md.
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
from hubbub.errors import ConfigError, HandlerError, ListenError
from hubbub.infra.model import InfraError

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
        "--management-tls-port",
        type=int,
        help="HTTPS management API port, 0 = any free port (management.tls_port)",
    )
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
        "--reload",
        action="store_true",
        default=None,
        help="reload a function when its files change, keeping clients connected (server.reload)",
    )
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="log line format (log.format)"
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="log level (log.level)"
    )

    check = sub.add_parser("check", help="validate a config file and print the resolved routes")
    _config_arg(check)
    from hubbub.infra.cli import add_import_flags

    add_import_flags(serve)
    add_import_flags(check)
    imp = sub.add_parser(
        "import", help="print the hubbub.toml equivalent to a template, serverless.yml or .tf"
    )
    imp.add_argument("path", help="template.yaml, cdk.out/X.template.json, serverless.yml, .tf")
    imp.add_argument(
        "--output-dir",
        default=".",
        help="folder the printed hubbub.toml will be saved in (its paths are relative to it)",
    )
    add_import_flags(imp)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="path to hubbub.toml, or to a template, serverless.yml or .tf to serve directly "
        "(default: ./hubbub.toml if present)",
    )


_FLAG_KEYS = {
    "host": "server.host",
    "port": "server.port",
    "management_host": "management.host",
    "management_port": "management.port",
    "management_tls_port": "management.tls_port",
    "store": "store.url",
    "workers": "server.workers",
    "reload": "server.reload",
    "log_format": "log.format",
    "log_level": "log.level",
}


def _config_path(args: argparse.Namespace) -> str | None:
    path: str | None = args.config
    if path is None and Path("hubbub.toml").is_file():
        path = "hubbub.toml"
    return path


def build_config(args: argparse.Namespace) -> Config:
    path = _config_path(args)
    overrides: dict[str, Any] = {}
    for attr, key in _FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    from hubbub.infra.cli import import_options

    return load_config(path, overrides=overrides, import_options=import_options(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = _config_path(args) if args.command != "import" else None
    source = f"{path}: " if path else ""
    try:
        if args.command == "import":
            from hubbub.infra.cli import run_import

            return run_import(args)
        config = build_config(args)
        if config.imported is not None:
            print(
                f"hubbub: imported {config.imported.source} ({config.imported.format}); "
                f"{config.imported.summary}",
                file=sys.stderr,
                flush=True,
            )
        if args.command == "check":
            return _check(config)
        return serve(config)
    except HandlerError as exc:
        print(f"hubbub: handler error: {source}{exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        # An infrastructure file's error names its own file and line already.
        where = "" if isinstance(exc, InfraError) else source
        print(f"hubbub: config error: {where}{exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return 1


def _check(config: Config) -> int:
    from hubbub.check import check

    for line in check(config):
        print(line)
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
    except ListenError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        await gateway.close()
        return 1
    except BaseException:
        await gateway.close()  # release what did start (listeners, store, handler threads)
        raise
    on_started(gateway, stop)
    await stop.wait()
    await gateway.close()
    # Non-zero when the shutdown grace cut $disconnect handlers off (the gateway logged how many).
    return 1 if gateway.undelivered_disconnects else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: a thin mapping onto the library (build a Config, run it with hubbub.runner).

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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hubbub import __version__
from hubbub.config import Config, load_config
from hubbub.errors import ConfigError, HandlerError, ListenError
from hubbub.infra.cli import add_import_flags, import_options, run_import
from hubbub.infra.model import InfraError


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
    return load_config(path, overrides=overrides, import_options=import_options(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = _config_path(args) if args.command != "import" else None
    source = f"{path}: " if path else ""
    try:
        if args.command == "import":
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
    from hubbub.check import check  # noqa: PLC0415 - start-up time: only check needs it

    for line in check(config):
        print(line)
    return 0


def serve(config: Config) -> int:
    """Run until SIGINT/SIGTERM, then drain; a second signal exits at once.

    With ``server.workers`` other than 1, a supervisor runs that many gateway processes instead
    (:mod:`hubbub.workers`).
    """
    # Here, not at the top: only serve loads the gateway (start-up time of the other commands).
    if config.server.workers != 1:
        from hubbub.workers import supervise  # noqa: PLC0415 - start-up time

        return supervise(config)
    from hubbub.runner import run_gateway  # noqa: PLC0415 - start-up time

    return run_gateway(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Bounded, seeded fuzzing of a gateway through real sockets.

The command line (``python -m bench.fuzz --help``); the package docstring describes the targets,
the oracles and the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.fuzz.env import TARGETS, FuzzOptions, write_app
from bench.fuzz.run import replay, run_fuzz
from bench.procstat import raise_nofile


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="total cases, dealt over the targets")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--target", default=",".join(TARGETS), help=f"comma list of {TARGETS}")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--check-every", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=3.0, help="per read, seconds")
    p.add_argument(
        "--handshake-timeout",
        type=float,
        default=1.0,
        help="limits.handshake_timeout of the in-process gateway",
    )
    p.add_argument("--url", help="fuzz a running gateway: ws://host:port/stage")
    p.add_argument("--management-url", help="with --url: http://host:port/stage")
    p.add_argument("--replay", type=int, metavar="INDEX", help="run one case of --target")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument(
        "--write-app",
        type=Path,
        metavar="DIR",
        help="write the fuzz app (app.py + hubbub.toml) for `hubbub serve` and exit; --url "
        "needs its routes (echo, whoami, two-way $default)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown or not targets:
        print(f"fuzz: unknown target(s) {sorted(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    options = FuzzOptions(
        cases=args.cases,
        seed=args.seed,
        targets=targets,
        concurrency=args.concurrency,
        check_every=args.check_every,
        timeout=args.timeout,
        handshake_timeout=args.handshake_timeout,
        url=args.url,
        management_url=args.management_url,
        progress=True,
    )
    with contextlib.suppress(ValueError, OSError):
        raise_nofile()
    if args.write_app is not None:
        write_app(args.write_app, toml=True)
        print(f"fuzz: wrote {args.write_app}/app.py and hubbub.toml")
        return 0
    if args.replay is not None:
        result = asyncio.run(replay(options, targets[0], args.replay))
        print(result)
        return 0 if result.finding is None else 1
    report = asyncio.run(run_fuzz(options))
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 0 if not report.unknown_failures() and not report.unknown_findings() else 1


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main())

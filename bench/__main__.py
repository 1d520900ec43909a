"""``python -m bench``: run the benchmark scenarios against hubbub and its peers, in one run.

    python -m bench                      full run, all peers, into bench/results/local/ (ignored)
    python -m bench --publish --runs 3   the same into bench/results/ and docs/benchmarks.md
    python -m bench --quick              under 2 minutes (shorter windows, fewer scenarios)
    python -m bench --runs 3             three runs; ratios are medians of per-run ratios
    python -m bench --scenarios routed,fanout --peers hubbub,aiohttp
    python -m bench --duration 0.5 --connections 5 --out /tmp/x   (what the smoke test runs)
    python -m bench --scenarios node-echo,node-post,python-isolation   (the Lambda runtime rows)

Results: ``OUT/latest.json`` (and a timestamped copy), ``OUT/latest.md``, ``OUT/*.png``. OUT is
``bench/results/local/`` (git-ignored, so a run leaves the work tree clean), or ``--out``; only
``--publish`` writes the tracked ``bench/results/`` and rewrites ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import goals, report, runner, runtime_rows
from bench.procstat import raise_nofile
from bench.servers import ROOT

PUBLISHED = ROOT / "bench" / "results"  # tracked: what docs/benchmarks.md shows
DEFAULT_OUT = PUBLISHED / "local"  # git-ignored: every run that does not --publish
# Every scenario, in the order a run takes them (the Lambda runtime rows last).
SCENARIOS = {**runner.SCENARIOS, **runtime_rows.SCENARIOS}
FULL = runner.FULL + list(runtime_rows.SCENARIOS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short windows, fewer scenarios (<2 min)")
    p.add_argument("--runs", type=int, default=1, help="repeat the whole run N times (median)")
    p.add_argument("--scenarios", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    p.add_argument(
        "--peers",
        help="comma-separated servers: hubbub, picows, aiohttp, node, socketio, sls, sls-node",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default bench/results/local, quick: bench/results/local/quick)",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="write the results to the tracked bench/results/ and rewrite docs/benchmarks.md",
    )
    p.add_argument("--duration", type=float, help="measured seconds per row (default 5, quick 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per row (default 1, quick 0.5)")
    p.add_argument("--connections", type=int, help="connections for routed/latency (default 100)")
    p.add_argument("--members", type=int, help="room size for the fan-out scenario (default 1000)")
    p.add_argument("--idle", type=int, help="idle connections (default 10000, quick 2000)")
    p.add_argument("--redis", help="Redis URL for cross-node (default: 6379 if up, else private)")
    p.add_argument("--no-install", action="store_true", help="never run npm install")
    p.add_argument(
        "--no-interleave",
        action="store_true",
        help="measure routed and fan-out one server after the other instead of in "
        "alternating slices",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        help="before each row, wait up to this many seconds for other processes to leave "
        "cores 0-1 mostly idle (default 30; quick 0)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy hubbub during each measured window (OUT/profiles/*.txt)",
    )
    p.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite docs/benchmarks.md (default: with --publish)",
    )
    return p.parse_args(argv)


def build_settings(args: argparse.Namespace, work: Path) -> tuple[runner.Settings, list[str]]:
    s = runner.Settings(work=work, redis_url=args.redis)
    if args.quick:
        s.quick = True
        s.warmup, s.duration = 0.5, 1.5
        s.idle_connections = 2000
        s.idle_settle = s.idle_cpu_window = 1.0
        # serverless-offline only when already installed, and only in "routed" (10 connections).
        s.allow_install = False
        s.only = runner.QUICK_ROWS
    s.allow_install = s.allow_install and not args.no_install
    s.interleave = not args.no_interleave
    s.quiet_wait = 0.0 if s.quick else 30.0
    if args.quiet_wait is not None:
        s.quiet_wait = args.quiet_wait
    s.warmup = args.warmup if args.warmup is not None else s.warmup
    s.duration = args.duration if args.duration is not None else s.duration
    s.connections = args.connections or s.connections
    s.fanout_members = args.members or s.fanout_members
    s.idle_connections = args.idle or s.idle_connections
    s.peers = args.peers.split(",") if args.peers else None
    names = args.scenarios.split(",") if args.scenarios else None
    if names is None:
        names = runner.QUICK if args.quick else FULL
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    # Keep the order that makes "latency" reuse routed's maxima.
    names = [n for n in SCENARIOS if n in names]
    return s, names


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("hubbub", "picows", "aiohttp", "uvloop", "python-socketio", "orjson", "boto3"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if commit:
            out["hubbub commit"] = commit
    except OSError:
        pass
    return out


class Progress:
    """``[ 3/27  0:41] fanout · Node ws ... 274.1 k deliveries/s`` lines on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.began = time.monotonic()

    def start(self, message: str) -> None:
        self.done += 1
        elapsed = int(time.monotonic() - self.began)
        print(
            f"[{self.done:>2}/{self.total} {elapsed // 60}:{elapsed % 60:02d}] {message} ...",
            end="",
            file=sys.stderr,
            flush=True,
        )

    @staticmethod
    def finish(row: dict[str, Any]) -> None:
        if row["status"] not in ("ok", "partial"):
            print(f" {row['status']}: {row['reason'][:160]}", file=sys.stderr, flush=True)
            return
        lat = row.get("latency") or {}
        extra = f", p99 {lat['p99_ms']:.2f} ms" if lat.get("p99_ms") is not None else ""
        if row.get("server_us_per_msg"):
            extra += f", server {row['server_us_per_msg']:.1f} µs/msg"
        if row.get("gen_cpu_pct") is not None:
            extra += f", generator {row['gen_cpu_pct']:.0f} % CPU"
        if row.get("other_cpu_pct") is not None:
            extra += f", other load {row['other_cpu_pct']:.0f} %"
        if row.get("errors"):
            extra += f", {row['errors']} errors"
        if row.get("reason"):
            extra += f" [{row['reason'][:120]}]"
        if row.get("quiet_wait_s", 0) > 1.5:  # one 1 s sample is always taken
            extra += f" (waited {row['quiet_wait_s']:.0f} s for a quieter machine)"
        print(f" {report._num(row['rate'], 1)} {row['unit']}{extra}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (and SIGINT in a background job, where it starts out ignored) unwinds like Ctrl-C,
    # so every server this run started is stopped by its ``finally``.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    args = parse_args(argv)
    if args.publish and args.out is not None:
        print("bench: --publish writes bench/results/; drop --out", file=sys.stderr)
        return 2
    # Quick runs keep to their own folder: the full run's plots are the ones docs/ shows.
    default = PUBLISHED if args.publish else DEFAULT_OUT
    out = (args.out or (default / "quick" if args.quick else default)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = ROOT / "bench" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    (work / ".gitignore").write_text("*\n")
    shutil.rmtree(work / "logs", ignore_errors=True)
    settings, names = build_settings(args, work)
    if args.profile:
        settings.profile_dir = out / "profiles"
    raise_nofile()
    write_docs = args.publish if args.docs is None else args.docs
    command = "python -m bench" + ("" if argv is None and len(sys.argv) < 2 else " ")
    command += shlex.join(sys.argv[1:] if argv is None else argv)
    started = datetime.now(UTC)
    steps = runner.planned_steps(names, settings) + runtime_rows.planned_steps(names, settings)
    progress = Progress(steps * args.runs)
    # Scenario by scenario, all runs of one scenario back to back: on a shared machine the
    # background load drifts over minutes, so the rows a ratio compares stay close in time.
    runs: list[list[dict[str, Any]]] = [[] for _ in range(args.runs)]
    settings.progress = progress.start
    settings.finished = Progress.finish
    for name in names:
        for run in range(args.runs):
            settings.run_index = run
            if args.runs > 1:
                print(f"-- {name}, run {run + 1} of {args.runs}", file=sys.stderr, flush=True)
            runs[run].extend(SCENARIOS[name](settings))
    elapsed = time.monotonic() - progress.began
    data: dict[str, Any] = {
        "meta": {
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "command": command.strip(),
            "quick": args.quick,
            "runs": args.runs,
            "scenarios": names,
            "elapsed_s": round(elapsed, 1),
            # Minutes of one run (what a plain `python -m bench` takes), for the docs.
            "estimate_min": max(1, round(elapsed / 60 / args.runs)) if not args.quick else 10,
            "machine": machine(),
            "versions": versions(),
            "settings": {
                "warmup": settings.warmup,
                "duration": settings.duration,
                "connections": settings.connections,
                "fanout_members": settings.fanout_members,
                "idle_connections": settings.idle_connections,
            },
        },
        "runs": runs,
        "summary": goals.summarize(runs),
        "goals": goals.evaluate(runs),
    }
    stamp = started.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(data, indent=1, default=str)
    (out / f"results-{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)
    docs_path = ROOT / "docs" / "benchmarks.md" if write_docs else None
    report.render(data, out, docs_path)
    print(f"\nbench: {elapsed:.0f} s; results in {out}/latest.md", file=sys.stderr)
    print(report.goals_table(data["goals"]), file=sys.stderr)
    failed = [r for rows in runs for r in rows if r["status"] == "failed"]
    return 1 if failed and all(r["status"] != "ok" for rows in runs for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

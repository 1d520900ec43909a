"""CPU per invocation of a Node.js function through the Lambda Runtime API, without WebSockets.

    python -m bench.runtime_invoke                       # this checkout, 2 environments
    python -m bench.runtime_invoke --src ../other/src    # another checkout's hubbub, same handler
    python -m bench.runtime_invoke --environments 1 --seconds 5

A closed loop of ``--callers`` invocations (100) goes straight into one function's pool
(``hubbub.runtimes.pool.Pool``) running bench/functions/node/handler.js ``echo``; this process is
the gateway side. After a warm-up it prints invocations per second and CPU per invocation: this
process (the pool, the Runtime API endpoint, the callers' loop) and the environments' Node.js
processes (user + system time from /proc); and how much the environments' RSS grew per 100,000
invocations (``--seconds 60`` to watch for a leak). Only the runtime path is measured: what the
``node-echo`` row (bench/runtime_rows.py) adds to it is the gateway's WebSocket and routing
work. Pin it (``taskset -c 0``) to put every process on one core, as ``python -m bench`` pins
its servers.
``--src`` imports hubbub from another checkout's ``src`` (with that checkout's bootstrap), so two
versions compare in one sitting; the handler stays this checkout's (its SDK is installed here:
``npm ci`` in bench/functions/node).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
CODE = HERE / "functions" / "node"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:bench"
EVENT = {
    "requestContext": {
        "routeKey": "echo",
        "eventType": "MESSAGE",
        "connectionId": "Zm9vYmFyPQ=",
        "stage": "dev",
        "domainName": "127.0.0.1",
        "apiId": "bench",
    },
    "body": '{"action": "echo", "data": "hello world 1234567890"}',
    "isBase64Encoded": False,
}


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(environments: int, callers: int, warmup: float, seconds: float) -> dict[str, Any]:
    pool_module = importlib.import_module("hubbub.runtimes.pool")
    launch = importlib.import_module("hubbub.runtimes.launch")
    env = {
        **os.environ,
        "_HANDLER": "handler.echo",
        "LAMBDA_TASK_ROOT": str(CODE),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
    }
    function = pool_module.FunctionProcess(
        "bench", tuple(launch.command("node", CODE)), CODE, env, environments
    )
    pool = pool_module.Pool(function)
    done = 0
    stop = False

    async def caller() -> None:
        nonlocal done
        while not stop:
            await pool.invoke(
                orjson.dumps(EVENT),
                request_id=str(uuid.uuid4()),
                deadline_ms=int(time.time() * 1000) + 29_000,
                arn=ARN,
            )
            done += 1

    tasks = [asyncio.ensure_future(caller()) for _ in range(callers)]
    try:
        await asyncio.sleep(warmup)
        pids = pool.pids
        count, wall, own = done, time.perf_counter(), time.process_time()
        theirs = sum(_cpu_seconds(pid) for pid in pids)
        rss = sum(_rss_kb(pid) for pid in pids)
        await asyncio.sleep(seconds)
        count = done - count
        wall = time.perf_counter() - wall
        own = time.process_time() - own
        theirs = sum(_cpu_seconds(pid) for pid in pids) - theirs
        rss = sum(_rss_kb(pid) for pid in pids) - rss
    finally:
        stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
    return {
        "environments": environments,
        "invocations_per_s": round(count / wall),
        "gateway_us": round(own / count * 1e6, 1),
        "environments_us": round(theirs / count * 1e6, 1),
        "total_us": round((own + theirs) / count * 1e6, 1),
        # The environments' RSS change over the measured invocations, per 100,000: flat once
        # V8's heap has settled (a few MB either way); a leak per invocation shows with
        # --seconds 60 (the trace id's setenv grew them by ~14,000 KB per 100,000).
        "environments_rss_kb_per_100k": round(rss / count * 100_000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, help="import hubbub from this src directory")
    parser.add_argument("--environments", type=int, default=2, help="reserved_concurrency")
    parser.add_argument("--callers", type=int, default=100, help="invocations in flight")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))
    if not (CODE / "node_modules").is_dir():
        sys.exit(f"run `npm ci` in {CODE} first (the handler requires the AWS SDK)")
    try:
        import uvloop  # optional, as in hubbub serve (src/hubbub/runner.py)

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    result = run(measure(args.environments, args.callers, args.warmup, args.seconds))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()

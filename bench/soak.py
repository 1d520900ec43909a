"""Soak test: hold N connections for T minutes with churn and steady traffic, watch for leaks.

    python -m bench.soak --connections 10000 --minutes 30
    python -m bench.soak --connections 200 --minutes 1          # a quick check

The gateway runs as a ``hubbub serve`` subprocess (so its memory is measured alone, from
``/proc/PID/status`` VmRSS) with a small app written to a work directory:

- ``$connect`` / ``$disconnect``: accept, do nothing;
- ``echo``: two-way route answering the body (the round trip whose latency is measured);
- ``join``: puts the caller in a room through the in-process management API.

The load generator (this process, asyncio + ``websockets``, uvloop when installed):

- opens N connections (``--ramp-concurrency`` at a time), spread over the source addresses
  127.0.0.2, 127.0.0.3, ... (``--source-addresses``) so churn never runs out of ephemeral ports;
  each joins one of N / ``--room-size`` rooms;
- every connection sends an echo every ``--interval`` seconds (first send at a random phase),
  closed loop: a send is skipped while the previous echo is still in flight;
- every ``--churn-every`` seconds a ``--churn`` fraction of the connections closes (1000) and
  reconnects;
- every ``--broadcast-every`` seconds one room gets a ``POST /{stage}/@rooms/{room}``.

Every ``--report-every`` seconds (10) a sample is printed and kept: RSS, open connections
(``/health``), registry size (``GET /{stage}/@connections`` pages), round-trip p50/p99, messages,
broadcast deliveries, reconnects and errors by kind. At the end every client closes, the gateway
must report 0 connections and an empty registry, then it is stopped with SIGTERM; its stderr is
scanned for ERROR lines and tracebacks. The time series and summary go to the git-ignored
``bench/results/local/soak-<timestamp>.json``; the summary's RSS slope (least squares, MB per
hour, over the steady part: after the ramp, before the final close) is the number to watch —
flat is good.

Everything is bounded: the run ends after T minutes, every wait has a timeout, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "local"  # git-ignored

APP = '''\
"""Handlers for bench/soak.py: $connect and $disconnect log the connection id (one line each)."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _log(name, event):
    line = (event["requestContext"]["connectionId"] + "\\n").encode()
    fd = os.open(os.path.join(_HERE, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def connect(event, context):
    _log("connects.log", event)
    return {"statusCode": 200}


async def disconnect(event, context):
    _log("disconnects.log", event)
    return {"statusCode": 200}


async def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}


async def join(event, context):
    import json

    room = json.loads(event["body"])["room"]
    await context.gateway.rooms.join(room, event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": '{"joined":"' + room + '"}'}
'''

CONFIG = """\
[api]
name = "soak"
stage = "dev"

[server]
host = "127.0.0.1"
port = 0

[management]
host = "127.0.0.1"
port = 0

[log]
level = "warning"

[routes]
"$connect" = { handler = "app.connect" }
"$disconnect" = { handler = "app.disconnect" }
"echo" = { handler = "app.echo", route_response = true }
"join" = { handler = "app.join", route_response = true }
"""


# -- the gateway subprocess ------------------------------------------------------------------
@dataclass
class Server:
    process: subprocess.Popen[bytes]
    websocket_url: str
    management_url: str
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """VmRSS of the gateway process alone (0 once it is gone)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) * 1024 if match else 0

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the gateway subprocess)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_server(workdir: Path, *, app: str = APP, config: str = CONFIG) -> Server:
    """Start ``hubbub serve`` on free ports and read its two URL lines (blocking); ``app`` and
    ``config`` are the handler module and config written to ``workdir`` (the soak's own by
    default)."""
    (workdir / "app.py").write_text(app)
    (workdir / "hubbub.toml").write_text(config)
    stderr_path = workdir / "server.stderr"
    hubbub = Path(sys.executable).parent / "hubbub"
    command = [str(hubbub)] if hubbub.exists() else [sys.executable, "-m", "hubbub.cli"]
    process = subprocess.Popen(
        [*command, "serve", "--config", str(workdir / "hubbub.toml")],
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("wb"),
        cwd=workdir,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    assert process.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < 2:
        line = process.stdout.readline()
        if not line:  # EOF: the server exited
            process.kill()
            raise RuntimeError(f"hubbub serve did not start; see {stderr_path}")
        match = re.match(rb"hubbub: (websocket|management)\s+(\S+)", line)
        if match:
            urls[match.group(1).decode()] = match.group(2).decode()
    return Server(process, urls["websocket"], urls["management"], stderr_path)


def stop_server(server: Server, timeout: float = 30.0) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def scan_stderr(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    errors = [line for line in text.splitlines() if " ERROR " in line or "CRITICAL" in line]
    return {
        "error_lines": len(errors),
        "tracebacks": text.count("Traceback (most recent call last)"),
        "first_errors": errors[:10],
    }


# -- the load generator ----------------------------------------------------------------------
@dataclass
class Stats:
    """Counters of one reporting window (reset after each sample) and of the whole run."""

    latencies_ms: list[float] = field(default_factory=list)
    broadcast_ms: list[float] = field(default_factory=list)
    sent: int = 0
    skipped: int = 0  # sends skipped because the previous echo was still in flight
    echoed: int = 0
    broadcast_received: int = 0
    reconnects: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Options:
    connections: int
    minutes: float
    interval: float
    churn: float
    churn_every: float
    broadcast_every: float
    room_size: int
    report_every: float
    ramp_concurrency: int
    source_addresses: int
    echo_timeout: float
    seed: int


class Slot:
    """One logical client: reconnects when churned or dropped, until the run stops."""

    def __init__(self, index: int, gen: LoadGen) -> None:
        self.index = index
        self.gen = gen
        self.ws: ClientConnection | None = None
        self.churning = False
        self.room = f"room-{index // gen.options.room_size}"
        self.source = f"127.0.0.{2 + index % gen.options.source_addresses}"
        self.pending: dict[int, float] = {}
        self.expired: set[int] = set()
        self.seq = 0

    async def connect(self) -> bool:
        gen = self.gen
        ws: ClientConnection | None = None
        try:
            async with gen.ramp:
                ws = await connect(
                    gen.websocket_url,
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    open_timeout=30,
                    close_timeout=10,
                    max_queue=64,
                    local_addr=(self.source, 0),
                )
                await ws.send(json.dumps({"action": "join", "room": self.room}))
                reply = await asyncio.wait_for(ws.recv(), 30)
                if "joined" not in str(reply):
                    gen.error(f"join-reply:{str(reply)[:40]}")
        except InvalidStatus as exc:
            gen.error(f"handshake-{exc.response.status_code}")
            return False
        except (OSError, TimeoutError, WebSocketException) as exc:
            # InvalidMessage (no valid HTTP response) and friends too: a slot must never die.
            gen.error(f"connect-{type(exc).__name__}")
            if ws is not None:  # opened, but the join failed: do not leak the socket
                ws.transport.abort()
            return False
        self.ws = ws
        self.pending.clear()
        self.expired.clear()
        return True

    async def run(self) -> None:
        gen = self.gen
        first = True
        while not gen.stopping:
            if not await self.connect():
                await asyncio.sleep(1.0 + random.random())
                continue
            if gen.stopping:  # connected after the final close-all: close this one too
                assert self.ws is not None
                with contextlib.suppress(Exception):
                    await self.ws.close(1000, "stopping")
                self.ws = None
                return
            if not first:
                gen.window.reconnects += 1
            first = False
            gen.connected += 1
            if gen.connected == gen.options.connections:
                gen.all_connected.set()
            try:
                await self._traffic()
            except Exception as exc:  # a bug here must show up as an error, not a dead slot
                gen.error(f"slot-{type(exc).__name__}")
            finally:
                gen.connected -= 1
                self.ws = None
            self.churning = False

    async def _traffic(self) -> None:
        gen = self.gen
        ws = self.ws
        assert ws is not None
        interval = gen.options.interval
        next_send = time.perf_counter() + random.random() * interval
        while True:
            wait = next_send - time.perf_counter()
            try:
                if wait <= 0:
                    self._expire_pending()
                    next_send += interval
                    if self.pending:
                        # Closed loop: one echo in flight per connection, so a gateway that
                        # falls behind shows up as latency and skipped sends, not as an ever
                        # growing backlog the load generator itself created.
                        gen.window.skipped += 1
                        continue
                    self.seq += 1
                    self.pending[self.seq] = time.perf_counter()
                    await ws.send('{"action":"echo","s":%d}' % self.seq)  # noqa: UP031
                    gen.window.sent += 1
                    continue
                async with asyncio.timeout(wait):
                    message = await ws.recv()
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                if not (self.churning or gen.stopping):
                    code = exc.rcvd.code if exc.rcvd else "none"
                    gen.error(f"closed-{code}")
                return
            self._received(message)

    def _received(self, message: str | bytes) -> None:
        gen = self.gen
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        now = time.perf_counter()
        if text.startswith('{"action":"echo"'):
            seq = int(text[text.index('"s":') + 4 : -1])
            sent = self.pending.pop(seq, None)
            if sent is None:
                # A reply after its echo timeout was already counted as "echo-timeout".
                gen.error("echo-late" if seq in self.expired else "echo-unexpected")
                self.expired.discard(seq)
                return
            gen.window.echoed += 1
            gen.window.latencies_ms.append((now - sent) * 1000)
        elif text.startswith('{"bc":'):
            gen.window.broadcast_received += 1
            with contextlib.suppress(ValueError, KeyError):
                gen.window.broadcast_ms.append((now - json.loads(text)["t"]) * 1000)
        else:
            gen.error(f"unexpected:{text[:40]}")

    def _expire_pending(self) -> None:
        limit = time.perf_counter() - self.gen.options.echo_timeout
        for seq, sent in list(self.pending.items()):
            if sent < limit:
                del self.pending[seq]
                self.expired.add(seq)
                self.gen.error("echo-timeout")

    async def churn(self) -> None:
        ws = self.ws
        if ws is None or self.churning:
            return
        self.churning = True
        with contextlib.suppress(Exception):
            await ws.close(1000, "churn")


class LoadGen:
    def __init__(self, options: Options, server: Server) -> None:
        self.options = options
        self.server = server
        self.websocket_url = server.websocket_url
        self.management_url = server.management_url
        self.ramp = asyncio.Semaphore(options.ramp_concurrency)
        self.stopping = False
        self.connected = 0
        self.all_connected = asyncio.Event()
        self.window = Stats()
        self.total = Stats()
        self.slots = [Slot(i, self) for i in range(options.connections)]
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.broadcasts_sent = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def error(self, kind: str) -> None:
        self.window.errors[kind] += 1

    async def churner(self) -> None:
        rng = random.Random(self.options.seed)
        count = round(self.options.connections * self.options.churn)
        while not self.stopping and count:
            await asyncio.sleep(self.options.churn_every)
            for slot in rng.sample(self.slots, count):
                task = asyncio.create_task(slot.churn())
                self._keep(task)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def broadcaster(self, http: aiohttp.ClientSession) -> None:
        rooms = max(
            1, (self.options.connections + self.options.room_size - 1) // self.options.room_size
        )
        rng = random.Random(self.options.seed + 1)
        while not self.stopping:
            await asyncio.sleep(self.options.broadcast_every)
            room = f"room-{rng.randrange(rooms)}"
            self.broadcasts_sent += 1
            body = '{"bc":%d,"t":%.6f}' % (self.broadcasts_sent, time.perf_counter())  # noqa: UP031
            try:
                async with http.post(f"{self.management_url}/@rooms/{room}", data=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        self.error(f"broadcast-http-{resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.error(f"broadcast-{type(exc).__name__}")

    async def server_view(self, http: aiohttp.ClientSession) -> tuple[int, int]:
        """(connections from /health, registry size from listing every page)."""
        base = self.management_url.rsplit("/", 1)[0]
        async with http.get(f"{base}/health") as resp:
            health = await resp.json()
        registry = 0
        cursor: str | None = None
        for _ in range(10_000):
            url = f"{self.management_url}/@connections?limit=1000"
            params = {"cursor": cursor} if cursor else None
            async with http.get(url, params=params) as resp:
                page = await resp.json()
            registry += len(page["connections"])
            cursor = page.get("next")
            if not cursor:
                break
        return int(health["connections"]), registry

    async def sample(self, http: aiohttp.ClientSession, phase: str) -> dict[str, Any]:
        window, self.window = self.window, Stats()
        self._accumulate(window)
        try:
            open_conns, registry = await asyncio.wait_for(self.server_view(http), 30)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            window.errors[f"health-{type(exc).__name__}"] += 1
            self.total.errors[f"health-{type(exc).__name__}"] += 1
            open_conns = registry = -1
        lat = sorted(window.latencies_ms)
        sample = {
            "t": round(time.monotonic() - self.started, 1),
            "phase": phase,
            "rss_mb": round(self.server.rss_bytes() / 2**20, 1),
            "fds": self.server.fds(),
            "client_connected": self.connected,
            "server_connections": open_conns,
            "registry": registry,
            "sent": window.sent,
            "skipped": window.skipped,
            "echoed": window.echoed,
            "p50_ms": round(_pct(lat, 50), 2),
            "p99_ms": round(_pct(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "broadcast_received": window.broadcast_received,
            "broadcast_p99_ms": round(_pct(sorted(window.broadcast_ms), 99), 2),
            "reconnects": window.reconnects,
            "errors": dict(window.errors),
        }
        self.samples.append(sample)
        print(
            f"[{sample['t']:7.1f}s {phase:6}] rss={sample['rss_mb']:7.1f}MB fds={sample['fds']:6} "
            f"conns={open_conns:6}/{self.connected:6} reg={registry:6} "
            f"rt p50={sample['p50_ms']:6.2f} p99={sample['p99_ms']:7.2f}ms "
            f"msgs={window.echoed:6} skip={window.skipped:5} bc={window.broadcast_received:6} "
            f"re={window.reconnects:4} err={sum(window.errors.values())} {dict(window.errors)}",
            flush=True,
        )
        return sample

    def _accumulate(self, window: Stats) -> None:
        total = self.total
        total.latencies_ms.extend(window.latencies_ms)
        total.sent += window.sent
        total.skipped += window.skipped
        total.echoed += window.echoed
        total.broadcast_received += window.broadcast_received
        total.reconnects += window.reconnects
        total.errors.update(window.errors)


def _pct(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))
    return sorted_values[index]


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 3600


async def soak(options: Options) -> dict[str, Any]:
    random.seed(options.seed)
    limit = raise_fd_limit()
    if limit < options.connections + 256:
        print(f"soak: warning: fd limit {limit} is below {options.connections} connections")
    workdir = Path(tempfile.mkdtemp(prefix="hubbub-soak-"))
    server = await asyncio.wait_for(asyncio.to_thread(start_server, workdir), 60)
    print(f"soak: gateway pid {server.pid} {server.websocket_url} {server.management_url}")
    gen = LoadGen(options, server)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await gen.sample(http, "start")
        runners = [asyncio.create_task(slot.run()) for slot in gen.slots]
        ramp_started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gen.all_connected.wait(), 300)
        ramp_seconds = time.monotonic() - ramp_started
        print(f"soak: {gen.connected} connections open after {ramp_seconds:.1f}s")
        await gen.sample(http, "ramp")
        steady_from = len(gen.samples)
        background = [
            asyncio.create_task(gen.churner()),
            asyncio.create_task(gen.broadcaster(http)),
        ]
        end = time.monotonic() + options.minutes * 60
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(options.report_every, left))
            await gen.sample(http, "steady")
        steady = gen.samples[steady_from:]
        # Shut down: every client closes; the gateway must come back to empty.
        gen.stopping = True
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.gather(*(slot.churn() for slot in gen.slots), return_exceptions=True)
        await asyncio.wait(runners, timeout=60)
        for task in runners:
            task.cancel()
        drained = False
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline:
            sample = await gen.sample(http, "drain")
            if sample["server_connections"] == 0 and sample["registry"] == 0:
                drained = True
                break
            await asyncio.sleep(2)
        end_sample = gen.samples[-1]
    returncode = stop_server(server)
    log_scan = scan_stderr(server.stderr_path)
    connects = _ids(workdir / "connects.log")
    disconnects = Counter(_ids(workdir / "disconnects.log"))
    fds = [int(s["fds"]) for s in steady]
    total = gen.total
    lat = sorted(total.latencies_ms)
    points = [(float(s["t"]), float(s["rss_mb"])) for s in steady]
    half = points[len(points) // 2 :]
    summary = {
        "connections": options.connections,
        "minutes": options.minutes,
        "ramp_seconds": round(ramp_seconds, 1),
        "rss_start_mb": gen.samples[0]["rss_mb"],
        "rss_after_ramp_mb": steady[0]["rss_mb"] if steady else None,
        "rss_end_mb": steady[-1]["rss_mb"] if steady else None,
        "rss_after_drain_mb": end_sample["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in gen.samples),
        "rss_slope_mb_per_hour": round(slope_mb_per_hour(points), 2),
        "rss_slope_second_half_mb_per_hour": round(slope_mb_per_hour(half), 2),
        "messages_sent": total.sent,
        "sends_skipped": total.skipped,
        "messages_echoed": total.echoed,
        "round_trip_p50_ms": round(_pct(lat, 50), 2),
        "round_trip_p99_ms": round(_pct(lat, 99), 2),
        "round_trip_max_ms": round(lat[-1], 2) if lat else 0.0,
        "broadcasts_sent": gen.broadcasts_sent,
        "broadcast_deliveries": total.broadcast_received,
        "reconnects": total.reconnects,
        "errors": dict(total.errors),
        "error_count": sum(total.errors.values()),
        "drained_to_zero": drained,
        "fds_start": gen.samples[0]["fds"],
        "fds_after_ramp": fds[0] if fds else None,
        "fds_end": fds[-1] if fds else None,
        "fds_min_steady": min(fds, default=None),
        "fds_max_steady": max(fds, default=None),
        "fds_after_drain": end_sample["fds"],
        # Every accepted connection's $disconnect, exactly once (churn included).
        "connect_events": len(connects),
        "disconnect_events": sum(disconnects.values()),
        "disconnect_missing": len(set(connects) - set(disconnects)),
        "disconnect_duplicates": sum(n - 1 for n in disconnects.values() if n > 1),
        "server_exit_code": returncode,
        "server_log": log_scan,
    }
    return {"options": asdict(options), "summary": summary, "samples": gen.samples}


def _ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--connections", "-n", type=int, default=200)
    p.add_argument("--minutes", "-t", type=float, default=1.0)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between echoes")
    p.add_argument("--churn", type=float, default=0.02, help="fraction reconnecting per round")
    p.add_argument("--churn-every", type=float, default=5.0, help="seconds between churn rounds")
    p.add_argument("--broadcast-every", type=float, default=1.0, help="seconds between publishes")
    p.add_argument("--room-size", type=int, default=100)
    p.add_argument("--report-every", type=float, default=10.0)
    p.add_argument("--ramp-concurrency", type=int, default=100)
    p.add_argument("--source-addresses", type=int, default=8, help="127.0.0.2 onwards")
    p.add_argument("--echo-timeout", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--output", type=Path, default=None, help="JSON file (default bench/results/local)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = Options(
        connections=args.connections,
        minutes=args.minutes,
        interval=args.interval,
        churn=args.churn,
        churn_every=args.churn_every,
        broadcast_every=args.broadcast_every,
        room_size=args.room_size,
        report_every=args.report_every,
        ramp_concurrency=args.ramp_concurrency,
        source_addresses=max(1, min(args.source_addresses, 250)),
        echo_timeout=args.echo_timeout,
        seed=args.seed,
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(soak(options))
    output = args.output or RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    print(f"soak: wrote {output}")
    summary = result["summary"]
    ok = (
        summary["drained_to_zero"]
        and summary["server_log"]["tracebacks"] == 0
        and summary["disconnect_missing"] == 0
        and summary["disconnect_duplicates"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

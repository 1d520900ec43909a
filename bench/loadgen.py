"""The load generator: picows + uvloop, one process pinned to its own core.

Run by the harness as ``python -m bench.loadgen '<json spec>'``; it prints ``@event {json}`` lines
on stdout (``@result`` last) and, for the idle scenario, reads ``go`` / ``close`` lines on stdin
so the harness can read the server's RSS between phases.

Scenarios (``spec["scenario"]``):
- ``echo``: closed loop, one message in flight per connection; round-trip latency;
- ``rate``: open loop at a fixed total rate (latency under load);
- ``fanout``: N members in one room, one publisher keeping ``window`` publishes in flight that have
  not reached every member yet; latency = publisher send → each receive;
- ``connect``: handshakes per second, ``concurrency`` at a time, each closed right after the 101;
- ``idle``: open N idle connections and hold them.

Every measured scenario warms up, then opens a window in which it counts messages and reads the
server's CPU (``/proc/PID/stat`` of the whole process tree) and its own CPU at both ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSTransport

from bench.procstat import busy_seconds, pin, raise_nofile, tree_cpu_seconds, tree_rss_bytes
from bench.wsclient import (
    PUBLISH_PAD,
    TEXT,
    Client,
    Counters,
    Window,
    connect,
    connect_many,
    echo_template,
    marker_template,
    now_ns,
    socketio_template,
)

ROOM = "bench"
SEQ_MOD = 100_000_000


def emit(name: str, data: dict[str, Any]) -> None:
    print(f"@{name} {json.dumps(data)}", flush=True)


async def read_command() -> str:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


class Meter:
    """Wall time, server CPU (process trees) and generator CPU over one window.

    ``other_cpu_pct`` is what everything else on the two benchmark cores used meanwhile (busy
    time of cores 0 and 1 minus server and generator): on a shared machine, a high value means
    the row ran with less than its cores.
    """

    def __init__(self, server_pids: list[int]) -> None:
        self.pids = server_pids
        self.t0 = self.c0 = self.g0 = self.b0 = 0.0

    def start(self) -> None:
        self.c0 = tree_cpu_seconds(self.pids)
        self.b0 = busy_seconds()
        self.g0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        gen = time.process_time() - self.g0
        busy = busy_seconds() - self.b0
        server = tree_cpu_seconds(self.pids) - self.c0
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            "gen_cpu_s": gen,
            "server_cpu_pct": 100 * server / wall,
            "gen_cpu_pct": 100 * gen / wall,
            "other_cpu_pct": max(0.0, 100 * (busy - server - gen) / wall),
        }


def latency_summary(samples_ns: list[int]) -> dict[str, float | int]:
    if not samples_ns:
        return {"n": 0}
    data = sorted(samples_ns)
    n = len(data)

    def pct(p: float) -> float:
        return data[min(n - 1, int(p * n))] / 1e6

    return {
        "n": n,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": data[-1] / 1e6,
    }


async def measure(
    spec: dict[str, Any], window: Window, meter: Meter, counters: Counters
) -> dict[str, Any]:
    """Warm up, then count for ``duration`` seconds; errors are those of the window."""
    await asyncio.sleep(spec["warmup"])
    emit("window", {"duration": spec["duration"]})
    before = counters.as_dict()
    meter.start()
    window.on = True
    await asyncio.sleep(spec["duration"])
    window.on = False
    usage: dict[str, Any] = meter.stop()
    usage["window_errors"] = {k: v - before[k] for k, v in counters.as_dict().items()}
    return usage


def result(
    count: int, usage: dict[str, Any], window: Window, counters: Counters, **extra: Any
) -> dict[str, Any]:
    """``errors`` are those of the measured window; ``setup_errors`` the rest of the run."""
    wall = usage["wall_s"]
    in_window = usage.pop("window_errors")
    errors = sum(in_window.values())
    return {
        "count": count,
        "rate": count / wall if wall else 0.0,
        "server_us_per_msg": 1e6 * usage["server_cpu_s"] / count if count else None,
        "gen_us_per_msg": 1e6 * usage["gen_cpu_s"] / count if count else None,
        **usage,
        "latency": latency_summary(window.latencies),
        "errors": errors,
        "error_detail": in_window,
        "setup_errors": counters.total - errors,
        "setup_error_detail": counters.as_dict(),
        **extra,
    }


# -- echo (closed loop) --------------------------------------------------------------------------
class Switch:
    """On/off for a group of closed-loop clients (interleaved scenarios run one at a time)."""

    __slots__ = ("active",)

    def __init__(self, active: bool = True) -> None:
        self.active = active


ALWAYS = Switch()


class EchoClient(Client):
    def __init__(
        self,
        dialect: str,
        counters: Counters,
        window: Window,
        template: bytes,
        switch: Switch = ALWAYS,
    ) -> None:
        super().__init__(dialect, counters)
        self.window = window
        self.template = template
        self.switch = switch
        self.seq = 0
        self.sent = 0
        self.replies = 0
        self.waiting = False  # a message is in flight

    def send_next(self) -> None:
        self.seq = (self.seq + 1) % SEQ_MOD
        self.sent = t = now_ns()
        self.waiting = True
        assert self.transport is not None
        self.transport.send(TEXT, self.template % (self.seq, t))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != TEXT or self.waiter is not None:
            self.control(transport, frame)
            return
        data = frame.get_payload_as_bytes()
        i = data.find(b"|")
        if i < 0:  # an error frame ("Internal server error", "Forbidden"): the message failed
            self.counters.error_frames += 1
            self.replies += 1
        elif int(data[i + 1 : i + 9]) != self.seq:
            return  # a late reply to a message already given up on
        else:
            self.replies += 1
            window = self.window
            if window.on:
                window.count += 1
                window.latencies.append(now_ns() - self.sent)
        self.waiting = False
        if self.switch.active and not self.closing:
            self.send_next()


async def watchdog(clients: list[EchoClient], counters: Counters, timeout: float) -> None:
    """Give up on a message after ``timeout`` s and send the next (a lost reply must not stop
    a closed-loop connection for good)."""
    limit = int(timeout * 1e9)
    while True:
        await asyncio.sleep(0.25)
        now = now_ns()
        for client in clients:
            if client.waiting and not client.closing and now - client.sent > limit:
                counters.timeouts += 1
                client.waiting = False
                if client.switch.active:
                    client.send_next()


async def run_echo(spec: dict[str, Any]) -> dict[str, Any]:
    counters, window = Counters(), Window()
    template = echo_template(spec)

    def factory() -> EchoClient:
        return EchoClient(spec["dialect"], counters, window, template)

    clients = await connect_many(
        spec["connections"], factory, spec["url"], counters, concurrency=50
    )
    if not clients:
        raise RuntimeError(f"no connection could be opened ({counters.as_dict()})")
    echo_clients = [c for c in clients if isinstance(c, EchoClient)]
    dog = asyncio.get_running_loop().create_task(
        watchdog(echo_clients, counters, spec.get("msg_timeout", 10.0))
    )
    batch = spec.get("ramp") or len(echo_clients) or 1
    primed = await ramp_up(echo_clients, batch, spec.get("prime_timeout", 60.0))
    usage = await measure(spec, window, Meter(spec["server_pids"]), counters)
    dog.cancel()
    rss = tree_rss_bytes(spec["server_pids"])
    for client in clients:
        client.close()
    await asyncio.sleep(0.2)
    return result(
        window.count,
        usage,
        window,
        counters,
        connections=len(clients),
        server_rss=rss,
        primed_s=primed,
    )


async def ramp_up(clients: list[EchoClient], batch: int, timeout: float) -> float:
    """Start the closed loop ``batch`` connections at a time, each batch once the previous one
    has had its replies: serverless-offline then grows its pool of Python processes a few at a
    time instead of starting 100 at once (which, on a busy core, ends in Lambda timeouts and a
    crash of serverless-offline). Returns the seconds it took."""
    started = time.perf_counter()
    for i in range(0, len(clients), batch):
        group = clients[i : i + batch]
        for client in group:
            if not client.waiting:
                client.send_next()
        await prime(group, timeout)
    return time.perf_counter() - started


async def prime(clients: list[Any], timeout: float, stuck: float = 45.0) -> float:
    """Wait until every connection has had one reply (serverless-offline starts a process per
    concurrent invocation; that start-up is not what the window measures). Gives up after
    ``timeout`` s, or when no reply at all came for ``stuck`` s. Returns the wait."""
    started = last_change = time.perf_counter()
    answered = 0
    while True:
        now = time.perf_counter()
        count = sum(1 for c in clients if c.replies)
        if count != answered:
            answered, last_change = count, now
        if count == len(clients) or now > started + timeout or now > last_change + stuck:
            return now - started
        await asyncio.sleep(0.05)


# -- rate (open loop) ----------------------------------------------------------------------------
class RateClient(Client):
    def __init__(self, dialect: str, counters: Counters, window: Window) -> None:
        super().__init__(dialect, counters)
        self.window = window
        self.replies = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != TEXT:
            self.control(transport, frame)
            return
        data = frame.get_payload_as_bytes()
        i = data.find(b"|")
        if i < 0:
            self.counters.error_frames += 1
            return
        self.replies += 1
        window = self.window
        if window.on:
            window.count += 1
            window.latencies.append(now_ns() - int(data[i + 10 : i + 29]))


async def run_rate(spec: dict[str, Any]) -> dict[str, Any]:
    counters, window = Counters(), Window()
    template = echo_template(spec)

    def factory() -> RateClient:
        return RateClient(spec["dialect"], counters, window)

    clients = await connect_many(
        spec["connections"], factory, spec["url"], counters, concurrency=50
    )
    if not clients:
        raise RuntimeError(f"no connection could be opened ({counters.as_dict()})")
    transports = [c.transport for c in clients if c.transport is not None]
    for seq, transport in enumerate(transports):
        transport.send(TEXT, template % (seq, now_ns()))
    primed = await prime(clients, spec.get("prime_timeout", 60.0))
    rate = float(spec["rate"])
    stop = False

    async def ticker() -> None:
        start = now_ns()
        sent = seq = 0
        n = len(transports)
        while not stop:
            # 1 ms ticks: uvloop's timers have millisecond resolution (shorter sleeps spin).
            await asyncio.sleep(0.001)
            due = int((now_ns() - start) * rate / 1e9) - sent
            for _ in range(due):
                seq += 1
                transports[seq % n].send(TEXT, template % (seq % SEQ_MOD, now_ns()))
            sent += due

    task = asyncio.get_running_loop().create_task(ticker())
    usage = await measure(spec, window, Meter(spec["server_pids"]), counters)
    stop = True
    await task
    await asyncio.sleep(0.2)
    for client in clients:
        client.close()
    return result(window.count, usage, window, counters, target_rate=rate, primed_s=primed)


# -- fan-out -------------------------------------------------------------------------------------
class Fanout:
    """Publishes in flight and who still has to receive each."""

    def __init__(self, members: int, size: int, publish: Callable[[int], None]) -> None:
        self.members = members
        self.size = size
        self.publish = publish
        self.pending: dict[int, int] = {}
        self.sent_at: dict[int, int] = {}
        self.seq = 0
        self.running = False
        self.completed = 0
        self.window = Window()

    def publish_next(self) -> None:
        self.seq = seq = (self.seq + 1) % SEQ_MOD
        self.pending[seq] = self.members
        self.sent_at[seq] = now_ns()
        self.publish(seq)

    def delivered(self, seq: int) -> None:
        left = self.pending.get(seq)
        if left is None:
            return
        if left > 1:
            self.pending[seq] = left - 1
            return
        del self.pending[seq]
        del self.sent_at[seq]
        self.completed += 1
        if self.running:
            self.publish_next()

    def start(self) -> None:
        self.running = True
        for _ in range(self.size - len(self.pending)):
            self.publish_next()

    def drop_stalled(self, older_than_ns: int) -> int:
        now = now_ns()
        stalled = [s for s, t in self.sent_at.items() if now - t > older_than_ns]
        for seq in stalled:
            del self.pending[seq]
            del self.sent_at[seq]
            if self.running:
                self.publish_next()
        return len(stalled)


class Member(Client):
    def __init__(self, dialect: str, counters: Counters, fanout: Fanout) -> None:
        super().__init__(dialect, counters)
        self.fanout = fanout

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == TEXT:
            data = frame.get_payload_as_bytes()
            i = data.find(b"|")
            if i >= 0:
                fanout = self.fanout
                window = fanout.window
                if window.on:
                    window.count += 1
                    window.latencies.append(now_ns() - int(data[i + 10 : i + 29]))
                fanout.delivered(int(data[i + 1 : i + 9]))
                return
        self.control(transport, frame)


async def join_all(spec: dict[str, Any], members: list[Client], counters: Counters) -> None:
    """Put every member in the room, the way each server does it."""
    dialect = spec["dialect"]
    sem = asyncio.Semaphore(100)
    session = None
    if dialect == "hubbub":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50))

    async def join(member: Client) -> None:
        async with sem:
            try:
                if dialect == "raw":
                    await member.request(b'{"action":"join"}')
                elif dialect == "socketio":
                    await member.request(b'42["join","bench"]')
                else:
                    assert session is not None
                    cid = (await member.request(b'{"action":"whoami"}')).decode()
                    url = f"{spec['mgmt_url']}/@rooms/{ROOM}/connections/{cid}"
                    async with session.put(url) as response:
                        if response.status != 204:
                            raise RuntimeError(f"join answered {response.status}")
            except Exception:
                counters.unexpected += 1

    try:
        await asyncio.gather(*(join(m) for m in members))
    finally:
        if session is not None:
            await session.close()


class Publisher:
    """Sends publish number ``seq`` (stamped with its send time) the way the server expects:
    a WebSocket message (hubbub's ``publish`` route, a bare peer's ``publish``, Socket.IO's
    ``publish`` event) or, with ``publisher = "http"``, ``POST /{stage}/@rooms/{room}``."""

    def __init__(self, spec: dict[str, Any], counters: Counters) -> None:
        self.spec = spec
        self.counters = counters
        self.http = spec.get("publisher") == "http"
        self.client: Client | None = None
        self.session: Any = None
        self.posts: set[asyncio.Task[None]] = set()
        if self.http:
            self.template = PUBLISH_PAD.join(['{"m":"|%08d|%019d|","p":"', '"}']).encode()
        elif spec["dialect"] == "socketio":
            self.template = socketio_template("publish", PUBLISH_PAD)
        else:
            self.template = marker_template("publish", PUBLISH_PAD)

    async def open(self) -> None:
        if self.http:
            import aiohttp

            self.session = aiohttp.ClientSession()
        else:
            url = self.spec.get("publish_url") or self.spec["url"]
            self.client = await connect(lambda: Client(self.spec["dialect"], self.counters), url)

    def __call__(self, seq: int) -> None:
        body = self.template % (seq, now_ns())
        if self.client is not None:
            assert self.client.transport is not None
            self.client.transport.send(TEXT, body)
            return
        task = asyncio.get_running_loop().create_task(self._post(body))
        self.posts.add(task)
        task.add_done_callback(self.posts.discard)

    async def _post(self, body: bytes) -> None:
        url = f"{self.spec['publish_mgmt_url']}/@rooms/{ROOM}"
        try:
            async with self.session.post(url, data=body) as response:
                await response.read()
                if response.status != 200:
                    self.counters.error_frames += 1
        except Exception:
            self.counters.error_frames += 1

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.session is not None:
            await self.session.close()


async def run_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    counters = Counters()
    dialect = spec["dialect"]
    loop = asyncio.get_running_loop()
    publish = Publisher(spec, counters)
    n = spec["members"]
    fanout = Fanout(n, spec.get("window", 4), publish)
    started = time.perf_counter()
    members = await connect_many(
        n,
        lambda: Member(dialect, counters, fanout),
        spec["url"],
        counters,
        concurrency=100,
        source_ips=spec.get("source_ips"),
        read_buffer=4096,
    )
    await join_all(spec, members, counters)
    await publish.open()
    fanout.members = len(members)
    setup_s = time.perf_counter() - started
    emit("progress", {"phase": "joined", "members": len(members), "setup_s": setup_s})
    # One probe publish must reach every member before the clock starts.
    probe_ok = await probe(fanout)

    async def stall_dog() -> None:
        # A publish that has not reached everyone in 2 s is given up on (a member was dropped,
        # or a frame lost): counted as a timeout, and the next one goes out.
        while True:
            await asyncio.sleep(0.25)
            counters.timeouts += fanout.drop_stalled(int(spec.get("stall_timeout", 2.0) * 1e9))

    dog = loop.create_task(stall_dog())
    fanout.start()
    usage = await measure(spec, fanout.window, Meter(spec["server_pids"]), counters)
    fanout.running = False
    dog.cancel()
    rss = tree_rss_bytes(spec["server_pids"])
    await asyncio.sleep(0.3)
    for member in members:
        member.close()
    await publish.close()
    await asyncio.sleep(0.3)
    window = fanout.window
    return result(
        window.count,
        usage,
        window,
        counters,
        members=len(members),
        publishes=fanout.completed,
        probe_ok=probe_ok,
        setup_s=setup_s,
        server_rss=rss,
    )


async def probe(fanout: Fanout, timeout: float = 15.0) -> bool:
    fanout.publish_next()
    deadline = time.perf_counter() + timeout
    while fanout.pending and time.perf_counter() < deadline:  # noqa: ASYNC110 - polls a dict
        await asyncio.sleep(0.02)
    ok = not fanout.pending
    fanout.pending.clear()
    fanout.sent_at.clear()
    return ok


# -- connect rate --------------------------------------------------------------------------------
async def run_connect(spec: dict[str, Any]) -> dict[str, Any]:
    counters, window = Counters(), Window()
    ips: list[str] = spec.get("source_ips") or ["127.0.0.1"]
    concurrency = spec.get("concurrency", 50)
    stop = False

    def factory() -> Client:
        return Client(spec["dialect"], counters)

    async def worker(k: int) -> None:
        i = k
        while not stop:
            ip = ips[i % len(ips)]
            i += concurrency
            started = now_ns()
            try:
                client = await connect(factory, spec["url"], source_ip=ip, read_buffer=2048)
            except Exception:
                counters.failed_connects += 1
                await asyncio.sleep(0.01)
                continue
            if window.on:
                window.count += 1
                window.latencies.append(now_ns() - started)
            client.close()

    tasks = [asyncio.get_running_loop().create_task(worker(k)) for k in range(concurrency)]
    usage = await measure(spec, window, Meter(spec["server_pids"]), counters)
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.3)
    return result(window.count, usage, window, counters, concurrency=concurrency)


# -- idle ----------------------------------------------------------------------------------------
async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    counters = Counters()
    dialect = spec["dialect"]

    def factory() -> Client:
        return Client(dialect, counters)

    ips = spec.get("source_ips")
    warm = await connect_many(spec.get("warm", 200), factory, spec["url"], counters)
    for client in warm:
        client.close()
    await asyncio.sleep(1.0)
    counters.failed_connects = 0
    emit("warm", {"connections": len(warm)})
    await read_command()
    started = time.perf_counter()
    clients = await connect_many(
        spec["connections"],
        factory,
        spec["url"],
        counters,
        concurrency=200,
        source_ips=ips,
        read_buffer=1024,
    )
    emit(
        "held",
        {
            "connections": len(clients),
            "failed": counters.failed_connects,
            "open_s": time.perf_counter() - started,
        },
    )
    await read_command()
    for client in clients:
        client.close()
    await asyncio.sleep(1.0)
    return {"connections": len(clients), "errors": counters.total, **counters.as_dict()}


SCENARIOS = {
    "echo": run_echo,
    "rate": run_rate,
    "fanout": run_fanout,
    "connect": run_connect,
    "idle": run_idle,
}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["scenario"].endswith("-interleaved"):
        from bench import interleave

        return await interleave.SCENARIOS[spec["scenario"]](spec)
    return await SCENARIOS[spec["scenario"]](spec)


def main() -> None:
    spec = json.loads(sys.argv[1])
    pinned = pin(spec.get("core", 1))
    raise_nofile()
    logging.basicConfig(level=logging.CRITICAL)
    import uvloop

    out = uvloop.run(run(spec))
    out["gen_pinned"] = pinned
    emit("result", out)


if __name__ == "__main__":
    main()

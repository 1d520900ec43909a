"""Interleaved scenarios: several servers measured in alternating short slices.

On a shared machine the background load drifts from one second to the next, so two servers
measured one after the other may see very different machines. Here every server of a scenario is
running (all pinned to core 0, all idle but one), the generator holds its connections to each, and
the clock is cut into slices: server A for ``slice`` seconds, then B, then C, ... and again, in
reverse order every other round, until each has had ``duration`` seconds. A server's result sums
its slices, so whatever the background did, every server saw about the same share of it.

Each slice: switch the target on (closed-loop echo clients send again / the publisher starts its
window of publishes), wait ``settle`` s, measure ``slice`` s (messages, server CPU from /proc,
generator CPU, other load), switch it off, and let its in-flight messages drain before the next.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.loadgen import (
    EchoClient,
    Fanout,
    Member,
    Meter,
    Publisher,
    Switch,
    emit,
    join_all,
    probe,
    ramp_up,
    result,
    watchdog,
)
from bench.procstat import tree_rss_bytes
from bench.wsclient import (
    Client,
    Counters,
    Window,
    connect,
    connect_many,
    echo_template,
    now_ns,
)


class Slot:
    """One server of an interleaved scenario and its accumulated measurements."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.pids: list[int] = target["server_pids"]
        self.counters = Counters()
        self.window = Window()
        self.switch = Switch(active=False)
        self.usage = {"wall_s": 0.0, "server_cpu_s": 0.0, "gen_cpu_s": 0.0, "other_cpu_s": 0.0}
        self.errors = dict.fromkeys(self.counters.as_dict(), 0)
        self.slice_rates: list[float] = []
        self.error: str | None = None  # setup failed: the slot is skipped

    def add(self, usage: dict[str, Any], count: int, errors: dict[str, int]) -> None:
        wall = usage["wall_s"]
        for key in ("wall_s", "server_cpu_s", "gen_cpu_s"):
            self.usage[key] += usage[key]
        self.usage["other_cpu_s"] += usage["other_cpu_pct"] * wall / 100
        for key, value in errors.items():
            self.errors[key] += value
        self.slice_rates.append(count / wall if wall else 0.0)

    def summary(self, **extra: Any) -> dict[str, Any]:
        if self.error is not None:
            return {"failed": self.error}
        wall = self.usage["wall_s"] or 1e-9
        usage = {
            **self.usage,
            "server_cpu_pct": 100 * self.usage["server_cpu_s"] / wall,
            "gen_cpu_pct": 100 * self.usage["gen_cpu_s"] / wall,
            "other_cpu_pct": 100 * self.usage["other_cpu_s"] / wall,
            "window_errors": self.errors,
        }
        return result(
            self.window.count,
            usage,
            self.window,
            self.counters,
            slice_rates=self.slice_rates,
            server_rss=tree_rss_bytes(self.pids),
            **extra,
        )


async def alternate(
    slots: list[Slot],
    spec: dict[str, Any],
    on: Callable[[Slot], None],
    off: Callable[[Slot], None],
    drained: Callable[[Slot], Awaitable[None]],
) -> None:
    """Warm each slot up once, then run the measured rounds of slices."""
    live = [s for s in slots if s.error is None]
    slice_s = float(spec.get("slice", 1.0))
    settle = float(spec.get("settle", 0.1))
    rounds = max(1, round(spec["duration"] / slice_s))
    for slot in live:
        on(slot)
        await asyncio.sleep(spec["warmup"])
        off(slot)
        await drained(slot)
    emit("window", {"duration": rounds * len(live) * (slice_s + settle + 0.2)})
    for n in range(rounds):
        for slot in live if n % 2 == 0 else live[::-1]:
            on(slot)
            await asyncio.sleep(settle)
            before = slot.counters.as_dict()
            count0 = slot.window.count
            meter = Meter(slot.pids)
            meter.start()
            slot.window.on = True
            await asyncio.sleep(slice_s)
            slot.window.on = False
            usage = meter.stop()
            off(slot)
            errors = {k: v - before[k] for k, v in slot.counters.as_dict().items()}
            slot.add(usage, slot.window.count - count0, errors)
            await drained(slot)


def all_answered(clients: list[EchoClient]) -> bool:
    return not any(c.waiting for c in clients)


async def wait_until(condition: Callable[[], bool], limit: float) -> None:
    deadline = time.perf_counter() + limit
    while not condition() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


# -- echo ----------------------------------------------------------------------------------------
async def run_echo(spec: dict[str, Any]) -> dict[str, Any]:
    slots = [Slot(t) for t in spec["targets"]]
    groups: dict[Slot, list[EchoClient]] = {}
    for slot in slots:
        target = slot.target
        template = echo_template(target)
        # No parameters, not even defaulted ones: picows passes (request, response) to a
        # factory that accepts two arguments.
        factory = functools.partial(
            EchoClient, target["dialect"], slot.counters, slot.window, template, slot.switch
        )
        clients = await connect_many(
            target["connections"], factory, target["url"], slot.counters, concurrency=50
        )
        groups[slot] = [c for c in clients if isinstance(c, EchoClient)]
        if not clients:
            slot.error = f"no connection could be opened ({slot.counters.as_dict()})"
    loop = asyncio.get_running_loop()
    dogs = [
        loop.create_task(watchdog(c, s.counters, s.target.get("msg_timeout", 10.0)))
        for s, c in groups.items()
    ]
    # One server at a time until each of its connections has had one reply (serverless-offline
    # starts a Python process per concurrent invocation: best done with the core to itself).
    everyone = [c for group in groups.values() for c in group]
    primed: dict[Slot, float] = {}
    for slot, group in groups.items():
        slot.switch.active = True
        target = slot.target
        batch = target.get("ramp") or len(group) or 1
        primed[slot] = await ramp_up(group, batch, target.get("prime_timeout", 60.0))
        slot.switch.active = False
        await wait_until(functools.partial(all_answered, group), 10.0)

    def on(slot: Slot) -> None:
        slot.switch.active = True
        for client in groups[slot]:
            if not client.waiting and not client.closing:
                client.send_next()

    def off(slot: Slot) -> None:
        slot.switch.active = False

    async def drained(slot: Slot) -> None:
        await wait_until(functools.partial(all_answered, groups[slot]), 2.0)

    await alternate(slots, spec, on, off, drained)
    for dog in dogs:
        dog.cancel()
    out = [s.summary(connections=len(groups[s]), primed_s=primed.get(s)) for s in slots]
    for client in everyone:
        client.close()
    await asyncio.sleep(0.2)
    return {"targets": out}


# -- fan-out -------------------------------------------------------------------------------------
async def setup_fanout(slot: Slot) -> tuple[Fanout, list[Client], Publisher]:
    """Members joined, a publisher ready, one probe delivered to everyone."""
    target = slot.target
    dialect = target["dialect"]
    counters = slot.counters
    publish = Publisher(target, counters)
    fanout = Fanout(target["members"], target.get("window", 4), publish)
    fanout.window = slot.window
    members = await connect_many(
        target["members"],
        lambda: Member(dialect, counters, fanout),
        target["url"],
        counters,
        concurrency=100,
        source_ips=target.get("source_ips"),
        read_buffer=4096,
    )
    await join_all(target, members, counters)
    await publish.open()
    fanout.members = len(members)
    if not await probe(fanout):
        slot.error = f"a probe publish did not reach all {len(members)} members"
    return fanout, list(members), publish


async def run_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    slots = [Slot(t) for t in spec["targets"]]
    fanouts: dict[Slot, Fanout] = {}
    to_close: list[Client] = []
    publishers: list[Publisher] = []
    for slot in slots:
        started = time.perf_counter()
        try:
            fanouts[slot], clients, publisher = await setup_fanout(slot)
            to_close += clients
            publishers.append(publisher)
        except Exception as exc:  # one server failing its setup must not sink the others
            slot.error = f"setup failed: {type(exc).__name__}: {exc}"
        emit("progress", {"phase": "joined", "target": slot.target["url"]})
        slot.target["setup_s"] = time.perf_counter() - started
    loop = asyncio.get_running_loop()

    async def stall_dog(slot: Slot) -> None:
        limit = int(slot.target.get("stall_timeout", 4.0) * 1e9)
        while True:
            await asyncio.sleep(0.25)
            slot.counters.timeouts += fanouts[slot].drop_stalled(limit)

    dogs = [loop.create_task(stall_dog(s)) for s in fanouts]

    def on(slot: Slot) -> None:
        fanouts[slot].start()

    def off(slot: Slot) -> None:
        fanouts[slot].running = False

    async def drained(slot: Slot) -> None:
        fanout = fanouts[slot]
        await wait_until(lambda: not fanout.pending, slot.target.get("stall_timeout", 4.0))

    await alternate(slots, spec, on, off, drained)
    for dog in dogs:
        dog.cancel()
    out = []
    for slot in slots:
        fanout = fanouts.get(slot)
        out.append(
            slot.summary(
                members=fanout.members if fanout else 0,
                publishes=fanout.completed if fanout else 0,
                setup_s=slot.target.get("setup_s"),
            )
        )
    for client in to_close:
        client.close()
    for publisher in publishers:
        await publisher.close()
    await asyncio.sleep(0.3)
    return {"targets": out}


# -- handshakes ----------------------------------------------------------------------------------
async def run_connect(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``connect`` scenario's workers (bench.loadgen.run_connect), one group per server,
    handshaking only while their server's slice is on."""
    slots = [Slot(t) for t in spec["targets"]]
    running = {slot: asyncio.Event() for slot in slots}
    in_flight = dict.fromkeys(slots, 0)
    stop = False

    async def worker(slot: Slot, k: int) -> None:
        target = slot.target
        ips: list[str] = target.get("source_ips") or ["127.0.0.1"]
        concurrency = target.get("concurrency", 50)
        dialect = target["dialect"]
        counters, window = slot.counters, slot.window
        i = k
        while not stop:
            if not slot.switch.active:
                await running[slot].wait()
                continue
            ip = ips[i % len(ips)]
            i += concurrency
            started = now_ns()
            in_flight[slot] += 1
            try:
                client = await connect(
                    lambda: Client(dialect, counters), target["url"], source_ip=ip, read_buffer=2048
                )
            except Exception:
                counters.failed_connects += 1
                await asyncio.sleep(0.01)
                continue
            finally:
                in_flight[slot] -= 1
            if window.on:
                window.count += 1
                window.latencies.append(now_ns() - started)
            client.close()

    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(worker(slot, k))
        for slot in slots
        for k in range(slot.target.get("concurrency", 50))
    ]

    def on(slot: Slot) -> None:
        slot.switch.active = True
        running[slot].set()

    def off(slot: Slot) -> None:
        slot.switch.active = False
        running[slot].clear()

    async def drained(slot: Slot) -> None:
        await wait_until(lambda: not in_flight[slot], 5.0)
        await asyncio.sleep(0.05)  # the server's side of the last closes, before the next slice

    await alternate(slots, spec, on, off, drained)
    stop = True
    for slot in slots:
        running[slot].set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.3)
    return {"targets": [s.summary(concurrency=s.target.get("concurrency", 50)) for s in slots]}


SCENARIOS = {
    "echo-interleaved": run_echo,
    "fanout-interleaved": run_fanout,
    "connect-interleaved": run_connect,
}

"""``python -m bench.presence``: the cost of presence in a big room under churn (issue 19).

    python -m bench.presence                         10,000 members, 100 joins+leaves/s, memory://
    python -m bench.presence --redis redis://127.0.0.1:6379/0
    python -m bench.presence --members 500 --duration 2   (what the smoke test runs)

One ``hubbub serve`` process (bench/hubbub_app/hubbub-presence.toml) and, in this process, picows
clients:

1. ``members`` connections are opened (RSS *a*), join a room without presence (RSS *b*), then
   join the room ``big`` with presence and a small data object each (RSS *c*). Memory per member:
   (*b* - *a*) / members for plain room membership, (*c* - *b*) / members for presence on top.
2. ``churn`` other connections join ``big`` with presence and leave it again, at ``rate``
   joins+leaves per second in total, for ``duration`` seconds; ``watchers`` of the members speak
   hubbub.v1 and receive every presence event (the others are plain clients and receive none).
   The server's CPU seconds over that window divided by the joins+leaves done is the CPU per
   event. The same churn is then run on a room *without* presence (its own members joined
   likewise): the difference is what presence itself costs per event.

Results: one JSON object on stdout (and ``--out FILE``); nothing under bench/results is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from picows import WSFrame, WSTransport

from bench import procstat, servers
from bench.wsclient import TEXT, Client, Counters, connect_many


class Member(Client):
    """A client that counts hubbub.v1 frames (its session, presence events) apart from the
    answers of the routes it waits for."""

    def __init__(self, counters: Counters) -> None:
        super().__init__("hubbub", counters)
        self.frames = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == TEXT and frame.get_payload_as_bytes().startswith(b'{"hubbub"'):
            self.frames += 1
            return
        super().on_ws_frame(transport, frame)


def message(action: str, room: str, **extra: Any) -> bytes:
    return json.dumps({"action": action, "room": room, **extra}).encode()


async def join_all(clients: list[Member], room: str, presence: bool, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, client: Member) -> None:
        async with sem:
            extra: dict[str, Any] = {"presence": True, "data": {"n": i}} if presence else {}
            reply = await client.request(message("join", room, **extra))
            if reply != b"ok":
                raise RuntimeError(f"join answered {reply[:200]!r}")

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))


async def churn(
    clients: list[Member], room: str, presence: bool, rate: float, duration: float
) -> int:
    """Joins and leaves, alternating per client, paced at ``rate`` per second; returns how many
    were answered."""
    inside = [False] * len(clients)
    done = 0
    start = time.perf_counter()
    n = 0
    pending: set[asyncio.Task[None]] = set()

    async def step(i: int) -> None:
        nonlocal done
        client = clients[i]
        if inside[i]:
            payload = message("leave", room)
        elif presence:
            payload = message("join", room, presence=True, data={"churn": i})
        else:
            payload = message("join", room)
        inside[i] = not inside[i]
        if await client.request(payload) == b"ok":
            done += 1

    while time.perf_counter() - start < duration:
        target = start + n / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        i = n % len(clients)
        if any(t.get_name() == f"c{i}" for t in pending):
            n += 1  # this client still waits for its previous answer: skip its turn
            continue
        task = asyncio.get_running_loop().create_task(step(i), name=f"c{i}")
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.wait(pending, timeout=30)
    for i, client in enumerate(clients):  # leave the room as found: nobody of the churn inside
        if inside[i]:
            await client.request(message("leave", room))
    return done


def summary(mgmt_url: str, room: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{mgmt_url}/@rooms/{room}/presence?summary=1", timeout=30) as r:
        result: dict[str, Any] = json.loads(r.read())
        return result


async def measure(args: argparse.Namespace, running: servers.Running) -> dict[str, Any]:
    pid = running.pids[0]
    counters = Counters()
    url = running.ws_url
    concurrency = 200

    def rss() -> int:
        return procstat.tree_rss_bytes(running.pids)

    base = rss()
    members: list[Member] = await connect_many(
        args.members - args.watchers, lambda: Member(counters), url, counters
    )  # type: ignore[assignment]
    watchers: list[Member] = await connect_many(
        args.watchers, lambda: Member(counters), url + "?hubbub=1", counters
    )  # type: ignore[assignment]
    everyone = members + watchers
    if len(everyone) != args.members:
        raise RuntimeError(f"only {len(everyone)} of {args.members} members connected: {counters}")
    await asyncio.sleep(1)
    rss_a = rss()
    await join_all(everyone, "plain", presence=False, concurrency=concurrency)
    await asyncio.sleep(1)
    rss_b = rss()
    await join_all(everyone, "big", presence=True, concurrency=concurrency)
    await asyncio.sleep(1)
    rss_c = rss()
    listed = summary(running.mgmt_url or "", "big")
    if listed["connections"] != args.members:
        raise RuntimeError(f"presence lists {listed}, expected {args.members} members")

    churners: list[Member] = await connect_many(args.churn, lambda: Member(counters), url, counters)  # type: ignore[assignment]
    results: dict[str, Any] = {}
    for label, room, presence in (("presence", "big", True), ("plain", "plain", False)):
        before_frames = sum(w.frames for w in watchers)
        cpu0 = procstat.tree_cpu_seconds(running.pids)
        t0 = time.perf_counter()
        done = await churn(churners, room, presence, args.rate, args.duration)
        elapsed = time.perf_counter() - t0
        cpu = procstat.tree_cpu_seconds(running.pids) - cpu0
        await asyncio.sleep(0.5)
        events = sum(w.frames for w in watchers) - before_frames
        results[label] = {
            "joins_leaves": done,
            "per_second": round(done / elapsed, 1),
            "server_cpu_s": round(cpu, 3),
            "cpu_us_per_event": round(cpu / done * 1e6, 1) if done else None,
            "cpu_percent": round(cpu / elapsed * 100, 1),
            "events_per_watcher": round(events / len(watchers), 1) if watchers else 0,
        }
    presence_us = results["presence"]["cpu_us_per_event"]
    plain_us = results["plain"]["cpu_us_per_event"]
    for client in everyone + churners:
        client.close()
    return {
        "scenario": "presence",
        "store": args.redis or "memory://",
        "members": args.members,
        "watchers": args.watchers,
        "churn_connections": args.churn,
        "rate": args.rate,
        "duration_s": args.duration,
        "server_pid": pid,
        "rss_mb": {
            "start": round(base / 2**20, 1),
            "connected": round(rss_a / 2**20, 1),
            "plain_room": round(rss_b / 2**20, 1),
            "presence_room": round(rss_c / 2**20, 1),
        },
        "bytes_per_member": {
            "room_membership": round((rss_b - rss_a) / args.members),
            "presence": round((rss_c - rss_b) / args.members),
        },
        "churn": results,
        "presence_cpu_us_per_event": (
            round(presence_us - plain_us, 1) if presence_us and plain_us else None
        ),
        "client_errors": counters.as_dict(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.presence", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--members", type=int, default=10_000, help="room size (default 10000)")
    p.add_argument("--watchers", type=int, default=100, help="members on hubbub.v1 (default 100)")
    p.add_argument("--churn", type=int, default=50, help="connections that join and leave")
    p.add_argument("--rate", type=float, default=100.0, help="joins+leaves per second (100)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of churn per row (10)")
    p.add_argument("--redis", help="run the gateway on this Redis (default: memory://)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.watchers > args.members:
        raise SystemExit("--watchers cannot exceed --members")
    procstat.raise_nofile()
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-presence-") as tmp:
        work = Path(tmp)
        config = "hubbub-presence.toml"
        if args.redis:
            text = (servers.HUBBUB_APP / config).read_text()
            prefix = f"bench-presence-{int(time.time())}:"
            text += f'\n[store]\nurl = "{args.redis}"\nkey_prefix = "{prefix}"\n'
            (servers.HUBBUB_APP / "hubbub-presence-redis.toml").write_text(text)
            config = "hubbub-presence-redis.toml"
        try:
            running = servers.start_hubbub(work, config=config, name="hubbub-presence")
        finally:
            if args.redis:
                (servers.HUBBUB_APP / config).unlink(missing_ok=True)
        try:
            result = asyncio.run(measure(args, running))
        finally:
            running.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

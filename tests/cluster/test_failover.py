"""A failover under traffic: two real nodes on ``redis+sentinel://`` (a master, a replica, three
Sentinels) or ``redis+cluster://`` (three masters with a replica each), clients in a room receiving
a steady stream of room messages, the master (on Cluster: the one serving the gateway's control
slot) SIGKILLed mid-stream.

What docs/scaling.md promises, checked here: no client is disconnected, every connection is
registered on the promoted replica, messages that reach a client arrive in order and once (room
messages sent during the failover window may be lost or refused with 503), the gateway serves
again (messages reach every member on both nodes), and each connection gets ``$disconnect``
exactly once when it finally closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import websockets

from hubbub.store.redis_lua import hash_tagged
from scripts.ensure_redis import RedisUnavailable
from scripts.redis_ha import ClusterSet, SentinelSet, start_cluster, start_sentinel
from tests.cluster.conftest import HEARTBEAT, NodeProcess, cluster_on
from tests.cluster.test_multinode import eventually_json, management, put, recv
from tests.helpers import TIME_SCALE, eventually

ROOM = "failover"
MEMBERS_PER_NODE = 3


class Topology:
    """A Redis deployment whose master can be killed: Sentinel's, or the Cluster shard that
    serves the gateway's control slot (heartbeats, the nodes set)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.servers: SentinelSet | ClusterSet = (
            start_sentinel(down_after_ms=1000) if kind == "sentinel" else start_cluster(replicas=1)
        )

    @property
    def url(self) -> str:
        return self.servers.url

    def fail_over(self, key_prefix: str) -> None:
        """SIGKILL the master, then wait until a replica took its place."""
        if isinstance(self.servers, SentinelSet):
            old = self.servers.master_port()
            self.servers.kill_master()
            self.servers.wait_failover(old, 30 * TIME_SCALE)
        else:
            key = hash_tagged(key_prefix) + "nodes"
            old = self.servers.kill_owner(key)
            self.servers.wait_failover(key, old, 30 * TIME_SCALE)


@pytest.fixture(params=["sentinel", "cluster"])
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    try:
        started = Topology(request.param)
    except RedisUnavailable as exc:
        pytest.fail(f"needs redis-server ({request.param}): {exc}")
    try:
        yield started
    finally:
        started.servers.close()


class Reader:
    """One client: everything it receives, until it is closed."""

    def __init__(self, ws: websockets.ClientConnection, cid: str) -> None:
        self.ws, self.cid = ws, cid
        self.received: list[str] = []
        self.closed_early: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.received.append(str(message))
        except websockets.ConnectionClosed as exc:
            self.closed_early = exc

    def numbers(self) -> list[int]:
        return [int(m[1:]) for m in self.received if m.startswith("m")]


async def open_reader(target: NodeProcess) -> Reader:
    ws = await websockets.connect(target.ws_url)
    await ws.send("whoami")
    cid = str(await recv(ws))
    return Reader(ws, cid)


class Publisher:
    """Room messages m0, m1, ... through one node's management API, paced, until stopped."""

    def __init__(self, http: aiohttp.ClientSession, target: NodeProcess) -> None:
        self.http, self.target = http, target
        self.statuses: dict[int, int] = {}
        self.stopped = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self.stopped:
            try:
                async with self.http.post(
                    f"{self.target.api_url}/@rooms/{ROOM}", data=f"m{n}".encode()
                ) as resp:
                    self.statuses[n] = resp.status
            except (aiohttp.ClientError, TimeoutError):
                self.statuses[n] = 0
            n += 1
            await asyncio.sleep(0.02)

    def accepted(self) -> list[int]:
        return [n for n, status in self.statuses.items() if status == 200]

    async def stop(self) -> None:
        self.stopped = True
        await self.task


async def test_master_killed_mid_traffic_fails_over_without_losing_connections(
    tmp_path: Path, topology: Topology
) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    with cluster_on(tmp_path, topology.url) as cluster:
        a, b = cluster.start("a", "b")
        async with aiohttp.ClientSession(timeout=timeout) as http:
            readers = [await open_reader(n) for n in (a, b) for _ in range(MEMBERS_PER_NODE)]
            try:
                for reader in readers:
                    await put(http, f"{a.api_url}/@rooms/{ROOM}/connections/{reader.cid}")
                publisher = Publisher(http, a)
                await eventually(lambda: len(publisher.accepted()) >= 20, 10, "traffic")
                before = set(publisher.accepted())

                await asyncio.to_thread(topology.fail_over, cluster.key_prefix)
                for target in (a, b):
                    await eventually_json(http, target, lambda s: s["status"] == "ok", 20)
                back = len(publisher.statuses)  # from here on both nodes serve again
                await eventually(
                    lambda: len([n for n in publisher.accepted() if n >= back]) >= 20,
                    20,
                    "traffic after the failover",
                )
                await publisher.stop()
                last = max(publisher.accepted())

                # Every member, on both nodes, gets everything sent once both nodes were back.
                await eventually(
                    lambda: all(last in r.numbers() for r in readers), 10, "the last message"
                )
                for reader in readers:
                    numbers = reader.numbers()
                    assert reader.closed_early is None, reader.cid
                    assert numbers == sorted(set(numbers)), "duplicated or out of order"
                    assert before <= set(numbers), "lost a message sent before the failover"
                    wanted = {n for n in publisher.accepted() if n >= back}
                    assert wanted <= set(numbers), "lost a message sent after the failover"
                # Nobody was taken for dead, and the promoted replica knows every connection.
                assert cluster.events("$disconnect") == []
                api = management(b)
                for reader in readers:
                    info = await asyncio.to_thread(api.get_connection, ConnectionId=reader.cid)
                    assert info["Identity"]["SourceIp"] == "127.0.0.1"
                async with http.get(f"{b.api_url}/@rooms/{ROOM}") as resp:
                    members = sorted((await resp.json())["connections"])
                assert members == sorted(r.cid for r in readers)
            finally:
                for reader in readers:
                    await reader.ws.close()
                    with contextlib.suppress(Exception):
                        await reader.task

            # Each connection gets its $disconnect exactly once, and nothing more follows.
            def disconnects() -> list[str]:
                return sorted(e["cid"] for e in cluster.events("$disconnect"))

            deadline = time.monotonic() + 10 * TIME_SCALE
            while len(disconnects()) < len(readers):
                assert time.monotonic() < deadline, disconnects()
                await asyncio.sleep(0.05)
            await asyncio.sleep(4 * HEARTBEAT * TIME_SCALE)  # a reaper would act by now
            assert disconnects() == sorted(r.cid for r in readers)

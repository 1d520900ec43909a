"""Several real ``hubbub serve`` nodes on one Redis: everything works from any node.

Clients are real ``websockets`` clients, management calls go through real boto3
(``apigatewaymanagementapi``) or plain HTTP for hubbub's own endpoints, and nodes die by real
signals. boto3 blocks, so it runs in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import websockets
from botocore.config import Config

from scripts.ensure_redis import RedisProcess, RedisUnavailable, start_redis
from tests.cluster.conftest import HEARTBEAT, Cluster, NodeProcess, cluster_on
from tests.helpers import TIME_SCALE, eventually

Client = websockets.ClientConnection


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Cluster]:
    """Three nodes (a, b, c) shared by the tests that leave every node running."""
    with cluster_on(tmp_path_factory.mktemp("trio"), redis_url) as cluster:
        cluster.start("a", "b", "c")
        yield cluster


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def node(cluster: Cluster, name: str) -> NodeProcess:
    return next(n for n in cluster.nodes if n.name == name)


def management(target: NodeProcess) -> Any:
    # No retries: a 503 must surface as such (botocore would retry it), and quickly.
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=target.api_url,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@contextlib.asynccontextmanager
async def clients(*targets: NodeProcess) -> AsyncIterator[list[tuple[Client, str]]]:
    """One client per target node, each with its connection id (asked of the $default route)."""
    opened: list[tuple[Client, str]] = []
    try:
        for target in targets:
            ws = await websockets.connect(target.ws_url)
            await ws.send("whoami")
            opened.append((ws, str(await recv(ws))))
        yield opened
    finally:
        for ws, _ in opened:
            await ws.close()


async def recv(ws: Client, timeout: float = 5.0) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE)


async def health(http: aiohttp.ClientSession, target: NodeProcess) -> dict[str, Any]:
    async with http.get(target.health_url) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def put(http: aiohttp.ClientSession, url: str) -> None:
    async with http.put(url) as resp:
        assert resp.status == 204, await resp.text()


async def post_json(http: aiohttp.ClientSession, url: str, data: bytes) -> Any:
    async with http.post(url, data=data) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


# -- every operation from any node ------------------------------------------------------------


async def test_post_get_delete_reach_a_connection_on_another_node(trio: Cluster) -> None:
    a, b, c = node(trio, "a"), node(trio, "b"), node(trio, "c")
    async with clients(a) as [(ws, cid)]:
        api = management(b)
        await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=b"from b")
        assert await recv(ws) == "from b"
        info = await asyncio.to_thread(api.get_connection, ConnectionId=cid)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert "ConnectedAt" in info
        await asyncio.to_thread(api.delete_connection, ConnectionId=cid)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
        for target in (b, c):
            other = management(target)
            with pytest.raises(other.exceptions.GoneException):
                await asyncio.to_thread(other.get_connection, ConnectionId=cid)


async def test_rooms_span_nodes(trio: Cluster, http: aiohttp.ClientSession) -> None:
    a, b, c = node(trio, "a"), node(trio, "b"), node(trio, "c")
    async with clients(a, b) as [(wa, ca), (wb, cb)]:
        for cid in (ca, cb):  # joined through the third node, which holds neither
            await put(http, f"{c.api_url}/@rooms/span/connections/{cid}")
        async with http.get(f"{a.api_url}/@rooms/span") as resp:
            assert sorted((await resp.json())["connections"]) == sorted([ca, cb])
        assert await post_json(http, f"{c.api_url}/@rooms/span", b"hello room") == {"delivered": 2}
        assert await recv(wa) == "hello room"
        assert await recv(wb) == "hello room"
        # exclude works across nodes too
        body = await post_json(http, f"{b.api_url}/@rooms/span?exclude={ca}", b"not a")
        assert body == {"delivered": 1}
        assert await recv(wb) == "not a"
        async with http.delete(f"{c.api_url}/@rooms/span/connections/{cb}") as resp:
            assert resp.status == 204
        assert await post_json(http, f"{a.api_url}/@rooms/span", b"only a") == {"delivered": 1}
        assert await recv(wa) == "only a"  # the excluded "not a" never reached wa ...
        await asyncio.to_thread(management(a).post_to_connection, ConnectionId=cb, Data=b"probe")
        assert await recv(wb) == "probe"  # ... and wb, no longer a member, got nothing since


async def test_room_message_goes_only_to_nodes_with_members(
    trio: Cluster, http: aiohttp.ClientSession
) -> None:
    a, b, c = node(trio, "a"), node(trio, "b"), node(trio, "c")
    async with clients(a, a, c) as [(wa1, ca1), (wa2, ca2), (wc, cc)]:
        before_a = (await health(http, a))["deliveries_received"]
        before_c = (await health(http, c))["deliveries_received"]
        for cid in (ca1, ca2):  # joined through b: a is told (one notice each), c is not
            await put(http, f"{b.api_url}/@rooms/only-a/connections/{cid}")
        body = await post_json(http, f"{b.api_url}/@rooms/only-a", b"for a")
        assert body == {"delivered": 2}
        assert await recv(wa1) == "for a"
        assert await recv(wa2) == "for a"
        # A later post to c's client arrives after anything published before it: once c has
        # it, c has seen everything b sent, and it must be this probe alone.
        await asyncio.to_thread(management(b).post_to_connection, ConnectionId=cc, Data=b"probe")
        assert await recv(wc) == "probe"
        assert (await health(http, c))["deliveries_received"] - before_c == 1
        # a got the two join notices and one room delivery for its two members (not one each);
        # its members received the message, so a has handled all three.
        assert (await health(http, a))["deliveries_received"] - before_a == 3


async def test_users_span_nodes(trio: Cluster, http: aiohttp.ClientSession) -> None:
    a, b, c = node(trio, "a"), node(trio, "b"), node(trio, "c")
    async with clients(a, c) as [(wa, ca), (wc, cc)]:
        for cid in (ca, cc):
            await put(http, f"{b.api_url}/@users/ada/connections/{cid}")
        async with http.get(f"{a.api_url}/@users/ada") as resp:
            assert sorted((await resp.json())["connections"]) == sorted([ca, cc])
        assert await post_json(http, f"{b.api_url}/@users/ada", b"hi ada") == {"delivered": 2}
        assert await recv(wa) == "hi ada"
        assert await recv(wc) == "hi ada"


async def test_broadcast_reaches_every_node(trio: Cluster, http: aiohttp.ClientSession) -> None:
    a, b, c = node(trio, "a"), node(trio, "b"), node(trio, "c")
    async with clients(a, b, c) as opened:
        body = await post_json(http, f"{b.api_url}/@broadcast", b"everyone")
        assert body["delivered"] >= 3
        for ws, _ in opened:
            assert await recv(ws) == "everyone"


async def test_listing_and_attributes_from_any_node(
    trio: Cluster, http: aiohttp.ClientSession
) -> None:
    a, b, c = node(trio, "a"), node(trio, "b"), node(trio, "c")
    async with clients(a, b) as [(_, ca), (_, cb)]:
        async with http.get(f"{c.api_url}/@connections?limit=1000") as resp:
            listed = (await resp.json())["connections"]
        assert {ca, cb} <= set(listed)
        async with http.put(f"{c.api_url}/@connections/{ca}/attributes", data=b'{"n":1}') as r:
            assert r.status == 204
        # The node holding the connection learned it too (it answers GetConnection itself).
        async with http.get(f"{a.api_url}/@connections/{ca}/attributes") as resp:
            assert await resp.json() == {"n": 1}


# -- failures ---------------------------------------------------------------------------------


async def test_killed_node_is_reaped_with_one_disconnect_each(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        a, b, c = cluster.start("a", "b", "c")
        async with clients(a, a, a, b) as opened:
            doomed = [cid for _, cid in opened[:3]]
            survivor = opened[3][1]
            for cid in (*doomed, survivor):
                await put(http, f"{b.api_url}/@rooms/r/connections/{cid}")
            killed = time.monotonic()
            await asyncio.to_thread(a.kill)
            api = management(b)

            def gone(cid: str) -> bool:
                try:
                    api.get_connection(ConnectionId=cid)
                except api.exceptions.GoneException:
                    return True
                return False

            async def all_gone() -> bool:
                return all([await asyncio.to_thread(gone, cid) for cid in doomed])

            while not await all_gone():
                assert time.monotonic() - killed < (3 * HEARTBEAT + 1.0) * TIME_SCALE, "too slow"
                await asyncio.sleep(0.05)
            disconnects = await eventually(
                lambda: (
                    [e for e in cluster.events("$disconnect") if e["cid"] in doomed]
                    if len(cluster.events("$disconnect")) >= 3
                    else None
                ),
                message="three $disconnect events",
            )
            assert sorted(e["cid"] for e in disconnects) == sorted(doomed)  # exactly once each
            assert {(e["code"], e["reason"]) for e in disconnects} == {(1006, "Gateway node lost")}
            assert {e["pid"] for e in disconnects} <= {b.pid, c.pid}
            async with http.get(f"{c.api_url}/@rooms/r") as resp:
                assert (await resp.json())["connections"] == [survivor]
            # The survivors' own clients did not notice anything.
            ws_b, _ = opened[3]
            await ws_b.send("whoami")
            assert await recv(ws_b) == survivor


async def test_graceful_shutdown_leaves_other_nodes_alone(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        a, b = cluster.start("a", "b")
        async with clients(a, b) as [(wa, ca), (wb, cb)]:
            stopping = asyncio.create_task(asyncio.to_thread(a.terminate))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(wa, timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            assert await stopping == 0
            api = management(b)
            # Gone at once (deregistered), not after a reaping delay.
            with pytest.raises(api.exceptions.GoneException):
                await asyncio.to_thread(api.get_connection, ConnectionId=ca)
            await asyncio.to_thread(api.post_to_connection, ConnectionId=cb, Data=b"still here")
            assert await recv(wb) == "still here"
            disconnects = cluster.events("$disconnect")
            assert [(e["cid"], e["code"], e["pid"]) for e in disconnects] == [(ca, 1001, a.pid)]
            assert (await health(http, b))["status"] == "ok"


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    try:
        server = start_redis()
    except RedisUnavailable as exc:
        pytest.fail(f"needs redis-server: {exc}")
    try:
        yield server
    finally:
        server.close()


async def test_redis_restart_degrades_then_recovers(
    tmp_path: Path, private_redis: RedisProcess, http: aiohttp.ClientSession
) -> None:
    with cluster_on(tmp_path, private_redis.url) as cluster:
        a, b = cluster.start("a", "b")
        async with clients(a, b) as [(wa, ca), (_, cb)]:
            await asyncio.to_thread(private_redis.kill)
            # Local traffic keeps flowing.
            await wa.send("whoami")
            assert await recv(wa) == ca
            # What needs the shared registry answers 503, quickly.
            started = time.monotonic()
            async with http.get(f"{a.api_url}/@connections/{cb}") as resp:
                assert resp.status == 503
                assert resp.headers["x-amzn-ErrorType"].startswith("ServiceUnavailable")
            assert time.monotonic() - started < 3.0
            status = await eventually_json(http, a, lambda s: s["redis"] == "down")
            assert status["status"] == "degraded"
            # Redis comes back empty (no persistence): the nodes re-register their clients.
            await asyncio.to_thread(private_redis.start)
            api = management(b)

            def registered() -> bool:
                try:
                    return bool(api.get_connection(ConnectionId=ca))
                except api.exceptions.GoneException:
                    return False
                except Exception:  # 503 while b itself is still reconnecting
                    return False

            deadline = time.monotonic() + 10 * TIME_SCALE
            while not await asyncio.to_thread(registered):
                assert time.monotonic() < deadline, "a's connection was not re-registered"
                await asyncio.sleep(0.1)
            await eventually_json(http, a, lambda s: s["status"] == "ok")
            await eventually_json(http, b, lambda s: s["status"] == "ok")
            await asyncio.to_thread(api.post_to_connection, ConnectionId=ca, Data=b"back")
            assert await recv(wa) == "back"
            assert cluster.events("$disconnect") == []  # nobody was taken for dead


async def eventually_json(
    http: aiohttp.ClientSession, target: NodeProcess, check: Any, timeout: float = 10.0
) -> dict[str, Any]:
    """Poll a node's /health until ``check(body)`` holds."""
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        body = await health(http, target)
        if check(body):
            return body
        assert time.monotonic() < deadline, f"/health never matched: {body}"
        await asyncio.sleep(0.05)

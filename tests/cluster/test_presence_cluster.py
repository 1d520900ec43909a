"""Presence across real ``hubbub serve`` nodes on one Redis: events cross nodes, a remote leave
is seen, and a killed node's members leave exactly once, within three heartbeats (issue 19)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from tests.cluster.conftest import HEARTBEAT, NodeProcess, cluster_on
from tests.helpers import TIME_SCALE

Client = websockets.ClientConnection


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def observer(target: NodeProcess) -> tuple[Client, str]:
    ws = await websockets.connect(target.ws_url, subprotocols=["hubbub.v1"])
    session = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, session["connectionId"]


async def plain(target: NodeProcess) -> tuple[Client, str]:
    ws = await websockets.connect(target.ws_url)
    await ws.send("whoami")
    return ws, str(await asyncio.wait_for(ws.recv(), 5))


async def presence_frame(ws: Client, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE)
        if isinstance(raw, str) and raw.startswith('{"hubbub":"presence"'):
            frame: dict[str, Any] = json.loads(raw)
            return frame


async def join(http: aiohttp.ClientSession, via: NodeProcess, room: str, cid: str) -> None:
    url = f"{via.api_url}/@rooms/{room}/connections/{cid}?presence=1"
    async with http.put(url) as resp:
        assert resp.status == 204, await resp.text()


async def summary(http: aiohttp.ClientSession, via: NodeProcess, room: str) -> dict[str, Any]:
    async with http.get(f"{via.api_url}/@rooms/{room}/presence?summary=1") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_presence_events_cross_nodes_and_a_dead_node_leaves_once(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        a, b, c = cluster.start("a", "b", "c")
        watcher, watcher_id = await observer(b)
        await join(http, c, "lobby", watcher_id)  # asked of c, held by b
        assert (await presence_frame(watcher))["member"]["connectionId"] == watcher_id
        doomed = [await plain(a), await plain(a)]
        for _, cid in doomed:
            await join(http, c, "lobby", cid)
            frame = await presence_frame(watcher)
            assert (frame["action"], frame["member"]["connectionId"]) == ("join", cid)
        leaver, leaver_id = await plain(a)
        await join(http, b, "lobby", leaver_id)
        await presence_frame(watcher)
        async with http.delete(f"{c.api_url}/@rooms/lobby/connections/{leaver_id}") as resp:
            assert resp.status == 204
        frame = await presence_frame(watcher)  # emitted by a, the node holding the leaver
        assert (frame["action"], frame["member"]["connectionId"]) == ("leave", leaver_id)
        assert await summary(http, c, "lobby") == {"room": "lobby", "connections": 3, "users": 0}

        killed = time.monotonic()
        await asyncio.to_thread(a.kill)
        left = set()
        for _ in doomed:
            frame = await presence_frame(watcher, timeout=3 * HEARTBEAT + 2.0)
            assert frame["action"] == "leave"
            left.add(frame["member"]["connectionId"])
        assert time.monotonic() - killed < (3 * HEARTBEAT + 1.5) * TIME_SCALE, "too slow"
        assert left == {cid for _, cid in doomed}
        with pytest.raises(TimeoutError):  # exactly once: no second leave from another survivor
            await presence_frame(watcher, timeout=2 * HEARTBEAT)
        assert await summary(http, c, "lobby") == {"room": "lobby", "connections": 1, "users": 0}
        await watcher.close()
        for ws, _ in (*doomed, (leaver, leaver_id)):
            await ws.close()


async def test_a_resume_on_another_node_is_no_leave_and_join(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        a, b = cluster.start("a", "b")
        watcher, watcher_id = await observer(b)
        await join(http, b, "lobby", watcher_id)
        await presence_frame(watcher)
        ws = await websockets.connect(a.ws_url, subprotocols=["hubbub.v1"])
        session = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await join(http, a, "lobby", session["connectionId"])
        assert (await presence_frame(watcher))["action"] == "join"
        await ws.close()  # on node a; its presence waits out the grace (15 s by default)
        back = await websockets.connect(b.ws_url, subprotocols=["hubbub.v1"])
        new_id = json.loads(await asyncio.wait_for(back.recv(), 5))["connectionId"]
        resume = {"hubbub": "resume", "token": session["token"], "rooms": {}}
        for _ in range(50):  # a's retirement saves the session: resume once it is there
            await back.send(json.dumps(resume))
            answer = json.loads(await asyncio.wait_for(back.recv(), 5))
            while answer.get("hubbub") != "recovered":  # its own update comes first
                answer = json.loads(await asyncio.wait_for(back.recv(), 5))
            if answer.get("reason") is None:
                break
            await asyncio.sleep(0.05)
        assert answer["recovered"] is True
        update = await presence_frame(watcher)  # the only event: no leave, no join
        assert update["action"] == "update"
        assert update["previousConnectionId"] == session["connectionId"]
        assert update["member"]["connectionId"] == new_id
        with pytest.raises(TimeoutError):
            await presence_frame(watcher, timeout=1.0)
        assert await summary(http, a, "lobby") == {"room": "lobby", "connections": 2, "users": 0}
        for client in (watcher, back):
            await client.close()

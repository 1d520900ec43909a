"""Recovery across nodes: a client whose node was killed resumes on another, missing nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from hubbub.store.redis_connect import connect
from tests.cluster.conftest import cluster_on


async def _json(ws: websockets.ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


async def test_client_of_a_killed_node_resumes_on_another(tmp_path: Path, redis_url: str) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        a, b = cluster.start("a", "b")
        async with aiohttp.ClientSession() as http:
            ws = await websockets.connect(a.ws_url, subprotocols=["hubbub.v1"])
            session = await _json(ws)
            cid = session["connectionId"]
            async with http.put(f"{b.api_url}/@rooms/news/connections/{cid}") as resp:
                assert resp.status == 204
            async with http.post(f"{b.api_url}/@rooms/news", data=b"first") as resp:
                assert resp.status == 200
            seen = await _json(ws)
            assert (seen["data"], seen["offset"]) == ("first", 1)

            await asyncio.to_thread(a.kill)  # SIGKILL: no goodbye, no $disconnect from a
            ws.transport.abort()

            async def reaped() -> bool:
                async with http.get(f"{b.api_url}/@rooms/news") as resp:
                    return (await resp.json())["count"] == 0

            for _ in range(200):  # b reaps a's connection (3 heartbeats) and saves its session
                if await reaped():
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("node a's connection was not reaped")
            for text in ("second", "third"):
                async with http.post(f"{b.api_url}/@rooms/news", data=text.encode()) as resp:
                    assert resp.status == 200

            ws2 = await websockets.connect(b.ws_url, subprotocols=["hubbub.v1"])
            session2 = await _json(ws2)
            position = {"epoch": seen["epoch"], "offset": seen["offset"]}
            await ws2.send(
                json.dumps(
                    {"hubbub": "resume", "token": session["token"], "rooms": {"news": position}}
                )
            )
            replayed = [await _json(ws2), await _json(ws2)]
            assert [m["data"] for m in replayed] == ["second", "third"]
            report = await _json(ws2)
            assert report["recovered"] is True
            async with http.get(f"{b.api_url}/@rooms/news") as resp:
                assert (await resp.json())["connections"] == [session2["connectionId"]]
            await ws2.close()


async def test_a_room_nobody_can_recover_leaves_no_history_in_redis(
    tmp_path: Path, redis_url: str
) -> None:
    # As on one node: plain members only, so node b's sends are not recorded anywhere.
    with cluster_on(tmp_path, redis_url) as cluster:
        a, b = cluster.start("a", "b")
        async with aiohttp.ClientSession() as http, websockets.connect(a.ws_url) as ws:
            await ws.send("whoami")
            cid = await asyncio.wait_for(ws.recv(), 10)
            async with http.put(f"{a.api_url}/@rooms/plain/connections/{cid}") as resp:
                assert resp.status == 204
            async with http.post(f"{b.api_url}/@rooms/plain", data=b"hello") as resp:
                assert resp.status == 200
            assert await asyncio.wait_for(ws.recv(), 10) == "hello"
        raw = connect(redis_url)
        try:
            assert [k async for k in raw.scan_iter(match=f"{cluster.key_prefix}{{room:*")] == []
        finally:
            await raw.aclose()


async def test_a_quiet_room_keeps_its_history_while_a_recovery_member_is_in_it(
    tmp_path: Path, redis_url: str
) -> None:
    # History kept 2 s after a room's last message: node a, whose recovery-enabled client is in
    # the room, keeps it (every 2/3 s) through a silence twice as long, so node b's next send
    # is still recorded in the same epoch and reaches the client as an envelope.
    with cluster_on(tmp_path, redis_url, "[history]\nttl = 2\n") as cluster:
        a, b = cluster.start("a", "b")
        raw = connect(redis_url)
        async with aiohttp.ClientSession() as http:
            ws = await websockets.connect(a.ws_url, subprotocols=["hubbub.v1"])
            try:
                cid = (await _json(ws))["connectionId"]
                async with http.put(f"{a.api_url}/@rooms/quiet/connections/{cid}") as resp:
                    assert resp.status == 204
                epoch_key = f"{cluster.key_prefix}{{room:quiet}}:epoch"
                epoch = await raw.get(epoch_key)
                assert epoch is not None  # the join marked the room
                await asyncio.sleep(4.5)
                assert await raw.get(epoch_key) == epoch
                async with http.post(f"{b.api_url}/@rooms/quiet", data=b"late") as resp:
                    assert resp.status == 200
                seen = await _json(ws)
                assert (seen["data"], seen["epoch"], seen["offset"]) == (
                    "late",
                    epoch.decode(),
                    1,
                )
            finally:
                await ws.close()
                await raw.aclose()

"""Recovery across nodes: a client whose node was killed resumes on another, missing nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import websockets

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

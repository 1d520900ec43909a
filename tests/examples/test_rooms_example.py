"""The hubbub-native rooms example: join, send, leave through the in-process API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets

from hubbub.config import load_config
from hubbub.testing import run_gateway

ROOMS = Path(__file__).resolve().parents[2] / "examples" / "rooms"


async def _recv(ws: websockets.ClientConnection) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


async def test_rooms_example() -> None:
    config = load_config(
        ROOMS / "hubbub.toml",
        env={},
        overrides={"server.port": 0, "management.port": 0, "management.tls": False},
    )
    async with run_gateway(config) as gw:
        async with (
            websockets.connect(gw.websocket_url) as ann,
            websockets.connect(gw.websocket_url) as bob,
            websockets.connect(gw.websocket_url) as eve,
        ):
            await ann.send(json.dumps({"action": "join", "room": "lobby", "nick": "ann"}))
            assert (await _recv(ann))["type"] == "joined"
            await bob.send(json.dumps({"action": "join", "room": "lobby", "nick": "bob"}))
            joined = await _recv(ann)
            assert joined == {"type": "joined", "room": "lobby", "nick": "bob", "members": 2}
            assert (await _recv(bob))["nick"] == "bob"
            await eve.send(json.dumps({"action": "join", "room": "other", "nick": "eve"}))
            assert (await _recv(eve))["room"] == "other"
            await ann.send(json.dumps({"action": "send", "room": "lobby", "text": "hi"}))
            for ws in (ann, bob):
                message = await _recv(ws)
                assert (message["nick"], message["text"]) == ("ann", "hi")
            await bob.send(json.dumps({"action": "leave", "room": "lobby"}))
            assert (await _recv(ann))["type"] == "left"
            assert (await _recv(bob))["members"] == 1
            await eve.send(json.dumps({"action": "dance"}))
            assert (await _recv(eve))["type"] == "error"  # and eve never saw the lobby

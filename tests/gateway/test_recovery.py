"""The opt-in recovery protocol through real sockets: sessions, envelopes, resume (issue 7)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import websockets

from hubbub.testing import run_gateway
from tests.gateway.conftest import HANDLERS, GatewayFactory, routes


async def _json(ws: websockets.ClientConnection) -> dict[str, Any]:
    import asyncio

    return json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[no-any-return]


async def _opt_in(url: str) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(url, subprotocols=["hubbub.v1"])
    assert ws.subprotocol == "hubbub.v1"
    session = await _json(ws)
    assert session["hubbub"] == "session"
    return ws, session


async def test_plain_clients_see_plain_room_messages(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            await gw.rooms.join("r", cid)
            await gw.rooms.send("r", "plain")
            assert await ws.recv() == "plain"
            assert ws.subprotocol is None


async def test_opted_in_clients_get_a_session_and_envelopes(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws, session = await _opt_in(gw.websocket_url)
        plain = await websockets.connect(gw.websocket_url)
        await gw.rooms.join("r", session["connectionId"])
        for cid in gw.hub.connections:
            if cid != session["connectionId"]:
                await gw.rooms.join("r", cid)
        await gw.rooms.send("r", '{"text": "hi"}')
        message = await _json(ws)
        assert message["hubbub"] == "room"
        assert message["room"] == "r"
        assert message["offset"] == 1
        assert json.loads(message["data"]) == {"text": "hi"}
        assert await plain.recv() == '{"text": "hi"}'  # same send, plain form for plain clients
        await gw.connections.post(session["connectionId"], "direct")
        assert await ws.recv() == "direct"  # direct posts are never wrapped
        await ws.close()
        await plain.close()


async def test_query_flag_opts_in_too(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        async with websockets.connect(gw.websocket_url + "?hubbub=1") as ws:
            assert (await _json(ws))["hubbub"] == "session"


async def test_resume_replays_missed_messages_in_order_and_rejoins(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws, session = await _opt_in(gw.websocket_url)
        await gw.rooms.join("r", session["connectionId"])
        await gw.users.bind("ann", session["connectionId"])
        await gw.rooms.send("r", "one")
        first = await _json(ws)
        await ws.close()
        for text in ("two", "three", "four"):
            await gw.rooms.send("r", text)  # nobody is in the room now
        ws2, session2 = await _opt_in(gw.websocket_url)
        assert session2["connectionId"] != session["connectionId"]
        position = {"epoch": first["epoch"], "offset": first["offset"]}
        await ws2.send(
            json.dumps({"hubbub": "resume", "token": session["token"], "rooms": {"r": position}})
        )
        replayed = [await _json(ws2) for _ in range(3)]
        assert [m["data"] for m in replayed] == ["two", "three", "four"]
        assert [m["offset"] for m in replayed] == [2, 3, 4]
        report = await _json(ws2)
        assert report["hubbub"] == "recovered"
        assert report["recovered"] is True
        assert report["rooms"]["r"]["replayed"] == 3
        # The room membership and the user binding moved to the new connection.
        assert await gw.rooms.members("r") == [session2["connectionId"]]
        assert await gw.users.connections("ann") == [session2["connectionId"]]
        await gw.rooms.send("r", "live")
        assert (await _json(ws2))["offset"] == 5
        await ws2.close()


async def test_resume_says_when_the_window_passed(gateway: GatewayFactory) -> None:
    async with gateway(history={"size": 2}) as gw:
        ws, session = await _opt_in(gw.websocket_url)
        await gw.rooms.join("r", session["connectionId"])
        await gw.rooms.send("r", "seen")
        seen = await _json(ws)
        await ws.close()
        for i in range(5):
            await gw.rooms.send("r", f"m{i}")
        ws2, _ = await _opt_in(gw.websocket_url)
        position = {"epoch": seen["epoch"], "offset": seen["offset"]}
        await ws2.send(
            json.dumps({"hubbub": "resume", "token": session["token"], "rooms": {"r": position}})
        )
        report = await _json(ws2)
        assert report["recovered"] is False
        assert report["rooms"]["r"]["reason"] == "window passed"
        assert await gw.rooms.members("r") != []  # rejoined even though the gap is lost
        await ws2.close()


async def test_resume_with_an_unknown_token_is_not_recovered(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws, _ = await _opt_in(gw.websocket_url)
        await ws.send(json.dumps({"hubbub": "resume", "token": "nope", "rooms": {}}))
        report = await _json(ws)
        assert (report["recovered"], report["reason"]) == (False, "session expired")
        await ws.send('{"hubbub": 1}')
        assert (await _json(ws))["hubbub"] == "error"
        await ws.close()


async def test_epoch_change_after_a_memory_restart(tmp_path: Path) -> None:
    async with run_gateway({}, base_dir=HANDLERS) as gw:
        ws, session = await _opt_in(gw.websocket_url)
        await gw.rooms.join("r", session["connectionId"])
        await gw.rooms.send("r", "x")
        seen = await _json(ws)
        await ws.close()
    async with run_gateway({}, base_dir=HANDLERS) as gw:
        ws2, _ = await _opt_in(gw.websocket_url)
        position = {"epoch": seen["epoch"], "offset": seen["offset"]}
        await ws2.send(
            json.dumps({"hubbub": "resume", "token": session["token"], "rooms": {"r": position}})
        )
        report = await _json(ws2)
        # In memory the session is gone with the process; the client knows it must resync.
        assert (report["recovered"], report["reason"]) == (False, "session expired")
        await ws2.close()


async def test_sqlite_history_survives_a_restart(tmp_path: Path) -> None:
    from tests.helpers import free_port

    port = free_port()
    raw = {"server": {"port": port}, "history": {"url": f"sqlite:///{tmp_path / 'h.db'}"}}
    async with run_gateway(raw, base_dir=HANDLERS) as gw:
        ws, session = await _opt_in(gw.websocket_url)
        await gw.rooms.join("r", session["connectionId"])
        await gw.rooms.send("r", "before")
        seen = await _json(ws)
        await ws.close()
        await gw.rooms.send("r", "while away")
    async with run_gateway(raw, base_dir=HANDLERS) as gw:
        await gw.rooms.send("r", "after restart")
        ws2, _ = await _opt_in(gw.websocket_url)
        position = {"epoch": seen["epoch"], "offset": seen["offset"]}
        await ws2.send(
            json.dumps({"hubbub": "resume", "token": session["token"], "rooms": {"r": position}})
        )
        replayed = [await _json(ws2), await _json(ws2)]
        assert [m["data"] for m in replayed] == ["while away", "after restart"]
        assert (await _json(ws2))["recovered"] is True
        await ws2.close()

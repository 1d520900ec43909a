"""The Python client's recovery mode (``connect(url, recovery=True)``) against a real gateway:
drops, restarts with SQLite history, the explicit failures, duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from hubbub.client import (
    Backoff,
    ClientConnection,
    NotRecovered,
    Received,
    Recovered,
    connect,
)
from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.client.conftest import HANDLERS, abort_all
from tests.helpers import TIME_SCALE, eventually, free_port

FAST = Backoff(base=0.01 * TIME_SCALE, cap=0.05 * TIME_SCALE)
ROUTES = {
    "$connect": {"handler": "rooms.connect"},
    "$disconnect": {"handler": "rooms.disconnect"},
    "$default": {"handler": "rooms.default", "route_response": True},
}


@pytest.fixture
def rooms() -> Iterator[ModuleType]:
    """The handler module (tests/client/handlers/rooms.py), reset before and after."""
    module = sys.modules[load_handler("rooms.default", HANDLERS).__module__]
    module.reset()
    yield module
    module.reset()


def gateway(port: int = 0, **raw: Any) -> contextlib.AbstractAsyncContextManager[Gateway]:
    return run_gateway({"routes": ROUTES, "server": {"port": port}, **raw}, base_dir=HANDLERS)


class Recorder:
    """Every event of a client, in order, as (name, event)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in ("open", "close", "reconnected", "recovered", "not_recovered"):
            ws.on(name, lambda event, name=name: self.events.append((name, event)))

    def names(self) -> list[str]:
        return [name for name, _ in self.events if name != "close"]

    def last(self, name: str) -> Any:
        return next(event for n, event in reversed(self.events) if n == name)

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.events if n == name)


async def joined(gw: Gateway, ws: ClientConnection, room: str = "r") -> str:
    """Put the client's connection in ``room`` (in-process, as a handler would); its id."""
    cid: str = await eventually(lambda: ws.connection_id, message="the session frame")
    await gw.rooms.join(room, cid)
    return cid


async def recv(ws: ClientConnection) -> Received:
    return await asyncio.wait_for(ws.recv_message(), 5 * TIME_SCALE)


async def drop_and_hold(gw: Gateway, rooms: ModuleType, cid: str) -> None:
    """Drop the connection (1006) and keep the client out until its session is saved."""
    rooms.GATE = asyncio.Event()
    abort_all(gw)
    await eventually(lambda: cid in rooms.DISCONNECTED, message="the old connection retired")


async def test_messages_published_while_away_arrive_once_in_order_after_a_drop(
    rooms: ModuleType,
) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        cid = await joined(gw, ws)
        await gw.rooms.send("r", "one")
        first = await recv(ws)
        assert (first.data, first.room, first.offset, first.replayed) == ("one", "r", 1, False)
        await drop_and_hold(gw, rooms, cid)
        for text in ("two", "three", "four"):
            await gw.rooms.send("r", text)  # nobody is in the room: only the history has them
        assert rooms.GATE is not None
        rooms.GATE.set()
        replayed = [await recv(ws) for _ in range(3)]
        assert [(m.data, m.offset, m.replayed) for m in replayed] == [
            ("two", 2, True),
            ("three", 3, True),
            ("four", 4, True),
        ]
        await eventually(lambda: events.count("reconnected") == 1, message="reconnected")
        await gw.rooms.send("r", "five")
        assert await ws.recv() == "five"  # live again, and recv() gives the plain text
        assert ws.positions["r"].offset == 5
        await ws.close()
    assert events.names() == ["open", "recovered", "reconnected"]
    report = events.last("recovered")
    assert isinstance(report, Recovered)
    assert report.replayed == 3
    assert report.rooms["r"].recovered


async def test_a_room_that_was_silent_before_the_drop_still_replays(rooms: ModuleType) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        cid = await joined(gw, ws)  # joined, but nothing was published in "r" yet
        await drop_and_hold(gw, rooms, cid)
        await gw.rooms.send("r", "missed")
        assert rooms.GATE is not None
        rooms.GATE.set()
        try:
            assert (await asyncio.wait_for(ws.recv(), 1 * TIME_SCALE)) == "missed"
        finally:
            await ws.close()


async def test_the_gateway_rejoins_so_queued_sends_run_inside_the_room_and_joins_are_skipped(
    rooms: ModuleType,
) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        ws.on_reconnect_send({"action": "join", "room": "r"}, skip_if_resumed=True)
        ws.on_reconnect_send("always")
        cid = await joined(gw, ws)
        await drop_and_hold(gw, rooms, cid)
        await eventually(lambda: not ws.connected, message="the client noticed")
        await ws.send("queued 1")
        await ws.send("queued 2")
        assert rooms.GATE is not None
        rooms.GATE.set()
        await eventually(lambda: events.count("reconnected") == 1, message="reconnected")
        await eventually(lambda: len(rooms.RECEIVED) == 3, message="the sends arrived")
        await ws.close()
    # The resume went first and the rest waited for its answer: each message was handled with
    # the new connection already back in "r" (restored by the gateway, not by a join).
    assert rooms.RECEIVED == [("always", True), ("queued 1", True), ("queued 2", True)]
    assert events.names() == ["open", "recovered", "reconnected"]


async def test_control_frames_never_reach_the_application(rooms: ModuleType) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, recovery=True)
        assert ws.subprotocol == "hubbub.v1"
        cid = await joined(gw, ws)
        assert ws.session_token
        await gw.connections.post(cid, "direct")
        await gw.rooms.send("r", "room")
        assert [await ws.recv(), await ws.recv()] == ["direct", "room"]
        assert await _drain(gw, ws, cid) == []  # nothing else: no session, no control frame
        await ws.close()


async def _drain(gw: Gateway, ws: ClientConnection, cid: str) -> list[Received]:
    """Everything received up to a marker (the marker excluded)."""
    await gw.connections.post(cid, "marker")
    got: list[Received] = []
    while (message := await recv(ws)).data != "marker":
        got.append(message)
    return got


async def test_duplicate_offsets_are_dropped(rooms: ModuleType) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, recovery=True)
        cid = await joined(gw, ws)
        await gw.rooms.send("r", "one")
        await gw.rooms.send("r", "two")
        one, two = await recv(ws), await recv(ws)
        assert (one.offset, two.offset) == (1, 2)
        # A frame repeating offsets already delivered (as an overlapping replay would): posted
        # as is, so it reaches the client exactly as the gateway's envelopes do.
        for offset in (1, 2):
            repeat = {"hubbub": "room", "room": "r", "epoch": two.epoch, "offset": offset}
            await gw.connections.post(
                cid, json.dumps({**repeat, "data": "again"}, separators=(",", ":"))
            )
        assert await _drain(gw, ws, cid) == []
        await gw.rooms.send("r", "three")
        assert (await recv(ws)).data == "three"
        await ws.close()


async def test_sqlite_history_recovers_across_a_gateway_restart(
    rooms: ModuleType, tmp_path: Path
) -> None:
    port = free_port()
    history = {"url": f"sqlite:///{tmp_path / 'h.db'}"}
    async with gateway(port, history=history) as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        await joined(gw, ws)
        await gw.rooms.send("r", "before")
        assert (await recv(ws)).data == "before"
    # Drained (1001): the session went to the SQLite file with the room's history.
    await eventually(lambda: not ws.connected, message="the client noticed the restart")
    await ws.send("sent while down")
    rooms.GATE = asyncio.Event()
    async with gateway(port, history=history) as gw:
        await gw.rooms.send("r", "after restart 1")
        await gw.rooms.send("r", "after restart 2")
        rooms.GATE.set()
        got = [await recv(ws), await recv(ws)]
        assert [(m.data, m.offset, m.replayed) for m in got] == [
            ("after restart 1", 2, True),
            ("after restart 2", 3, True),
        ]
        await eventually(lambda: rooms.RECEIVED, message="the queued send")
        assert rooms.RECEIVED == [("sent while down", True)]
        assert await ws.recv() == "sent while down"  # the echo of the queued send
        await ws.close()
    assert events.names() == ["open", "recovered", "reconnected"]


async def test_a_passed_window_is_reported_as_not_recovered(rooms: ModuleType) -> None:
    async with gateway(history={"size": 2}) as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        ws.on_reconnect_send({"action": "join", "room": "r"}, skip_if_resumed=True)
        cid = await joined(gw, ws)
        await gw.rooms.send("r", "seen")
        await recv(ws)
        await drop_and_hold(gw, rooms, cid)
        for i in range(5):
            await gw.rooms.send("r", f"lost {i}")
        assert rooms.GATE is not None
        rooms.GATE.set()
        await eventually(lambda: events.count("reconnected") == 1, message="reconnected")
        await gw.rooms.send("r", "live")
        live = await recv(ws)
        assert (live.data, live.offset) == ("live", 7)  # rejoined; the gap was not replayed
        await ws.close()
    assert events.names() == ["open", "not_recovered", "reconnected"]
    report = events.last("not_recovered")
    assert isinstance(report, NotRecovered)
    assert (report.reason, report.resumed, report.lost) == ("window passed", True, ("r",))
    assert rooms.RECEIVED == []  # resumed: the join registered with skip_if_resumed was skipped


async def test_a_memory_store_restart_expires_the_session(rooms: ModuleType) -> None:
    port = free_port()
    async with gateway(port) as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        ws.on_reconnect_send({"action": "join", "room": "r"}, skip_if_resumed=True)
        await joined(gw, ws)
        await gw.rooms.send("r", "x")
        await recv(ws)
        old_token = ws.session_token
    async with gateway(port) as gw:
        await eventually(lambda: events.count("reconnected") == 1, message="reconnected")
        await eventually(lambda: rooms.RECEIVED, message="the join")
        assert ws.session_token not in (None, old_token)  # the new connection's token
        await ws.close()
    assert events.names() == ["open", "not_recovered", "reconnected"]
    report = events.last("not_recovered")
    assert (report.reason, report.resumed, report.lost) == ("session expired", False, ())
    # Not resumed: the client sent the join the application registered for this case.
    assert [body for body, _ in rooms.RECEIVED] == ['{"action":"join","room":"r"}']


async def test_a_server_without_recovery_is_reported_as_unsupported(rooms: ModuleType) -> None:
    async with gateway(history={"enabled": False}) as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        ws.on_reconnect_send("rejoin", skip_if_resumed=True)
        assert ws.subprotocol is None
        abort_all(gw)
        await eventually(lambda: events.count("reconnected") == 1, message="reconnected")
        await eventually(lambda: rooms.RECEIVED, message="the resubscribe")
        await ws.send('{"hubbub": "looks like control"}')
        # Plain sockets are untouched: no unwrapping, nothing swallowed.
        assert await ws.recv() == "rejoin"
        assert await ws.recv() == '{"hubbub": "looks like control"}'
        await ws.close()
    assert events.last("not_recovered").reason == "unsupported"


async def test_plain_mode_is_unchanged(rooms: ModuleType) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url) as ws:
            assert ws.subprotocol is None
            assert ws.session_token is None
            (cid,) = gw.hub.connections
            await gw.rooms.join("r", cid)
            await gw.rooms.send("r", "plain")
            message = await ws.recv_message()
            assert message == Received("plain")


@contextlib.asynccontextmanager
async def silent_resume_server() -> AsyncIterator[tuple[str, list[list[str]]]]:
    """Speaks hubbub.v1 (sends a session) but never answers a resume; "drop" closes with 1012.
    Yields the URL and, per connection, the texts it received."""
    received: list[list[str]] = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("hubbub.v1",))
        await ws.prepare(request)
        texts: list[str] = []
        received.append(texts)
        n = len(received)
        await ws.send_str(
            json.dumps({"hubbub": "session", "token": f"t{n}", "connectionId": f"c{n}"})
        )
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                texts.append(msg.data)
                if msg.data == "drop":
                    await ws.close(code=1012)
                elif not msg.data.startswith('{"hubbub"'):
                    await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/ws", received
    finally:
        await runner.cleanup()


async def test_no_answer_within_the_timeout_flushes_the_queue_anyway() -> None:
    async with silent_resume_server() as (url, received):
        ws = await connect(url, backoff=FAST, recovery=True, recovery_timeout=0.2 * TIME_SCALE)
        events = Recorder(ws)
        await eventually(lambda: ws.session_token == "t1", message="the first session")
        ws.on_reconnect_send("rejoin", skip_if_resumed=True)
        await ws.send("drop")
        await eventually(lambda: events.count("reconnected") == 1, message="reconnected")
        assert await ws.recv() == "rejoin"
        await ws.close()
    resume = json.loads(received[1][0])
    assert (resume["hubbub"], resume["token"]) == ("resume", "t1")  # the first message
    assert received[1][1:] == ["rejoin"]
    assert events.names() == ["open", "not_recovered", "reconnected"]
    assert events.last("not_recovered").reason == "timeout"
    assert ws.session_token == "t2"  # the timed-out socket's session is the one to resume now


async def test_the_token_presented_is_the_previous_connection_s(rooms: ModuleType) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, recovery=True)
        events = Recorder(ws)
        cid = await joined(gw, ws)
        tokens = [ws.session_token]
        for n in (1, 2):
            await drop_and_hold(gw, rooms, cid)
            assert rooms.GATE is not None
            rooms.GATE.set()
            await eventually(lambda n=n: events.count("recovered") == n, message="recovered")
            await eventually(lambda: ws.session_token not in tokens, message="a new token")
            tokens.append(ws.session_token)
            cid = ws.connection_id
        (conn,) = gw.hub.connections.values()
        assert conn.session == tokens[-1]
        assert await gw.rooms.members("r") == [conn.id]  # carried through two reconnects
        await ws.close()


def test_recovery_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="recovery_timeout"):
        connect("ws://127.0.0.1:1/x", recovery=True, recovery_timeout=0)


async def test_recovery_works_alongside_other_subprotocols(rooms: ModuleType) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url, recovery=True, subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "hubbub.v1"
            await joined(gw, ws)
            await gw.rooms.send("r", "x")
            assert (await recv(ws)).room == "r"

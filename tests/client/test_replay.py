"""What a reconnect sends: resubscribe messages first, then sends queued while disconnected."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from hubbub.client import Backoff, ClientConnection, SendQueueFull, connect
from tests.client.conftest import GatewayFactory, abort_all, public_port
from tests.helpers import TIME_SCALE, eventually

FAST = Backoff(base=0.01 * TIME_SCALE, cap=0.05 * TIME_SCALE)


def noticed(ws: ClientConnection) -> list[object]:
    """Records the client's ``close`` events, to wait on after a drop.

    The client must have *noticed* the drop: a write into a socket the server already aborted is
    accepted by the kernel and lost (in plain mode). Polling ``ws.connected`` instead could miss a
    reconnect that completes between two polls.
    """
    closes: list[object] = []
    ws.on("close", closes.append)
    return closes


async def test_resubscribe_and_queued_sends_arrive_in_order_after_a_drop(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    rooms = ["a", "b"]
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=Backoff(base=0.05, cap=0.1))
        ws.on_reconnect_send({"action": "hello"})
        ws.on_reconnect_send(lambda: [{"action": "join", "room": r} for r in rooms])
        ws.on_reconnect_send("plain text")
        await ws.send("before")
        assert await ws.recv() == "before"
        closes = noticed(ws)
        reconnected: list[object] = []
        ws.on("reconnected", reconnected.append)
        abort_all(gw)
        await eventually(lambda: closes, message="client noticed the drop")
        await ws.send("queued 1")
        await ws.send_json({"action": "queued", "n": 2})
        await eventually(lambda: reconnected, message="reconnected")
        await ws.send("after")
        await eventually(lambda: len(app.RECEIVED) == 8, message="all 8 messages")
        await ws.close()
    assert app.RECEIVED == [
        "before",
        '{"action":"hello"}',
        '{"action":"join","room":"a"}',
        '{"action":"join","room":"b"}',
        "plain text",
        "queued 1",
        '{"action":"queued","n":2}',
        "after",
    ]


async def test_resubscribe_is_not_sent_on_the_first_connection(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        ws = connect(gw.websocket_url)
        ws.on_reconnect_send({"action": "join"})
        await ws.start()
        await ws.send("first")
        assert await ws.recv() == "first"
        await ws.close()
    assert app.RECEIVED == ["first"]


async def test_resubscribe_callables_see_the_current_state(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    rooms: list[str] = []
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST)
        ws.on_reconnect_send(lambda: [{"action": "join", "room": r} for r in rooms])
        reconnected: list[object] = []
        ws.on("reconnected", reconnected.append)
        abort_all(gw)
        await eventually(lambda: len(reconnected) == 1)
        rooms.append("late")
        abort_all(gw)
        await eventually(lambda: len(reconnected) == 2)
        await eventually(lambda: app.RECEIVED, message="the join")
        await ws.close()
    assert [json.loads(m) for m in app.RECEIVED] == [{"action": "join", "room": "late"}]


async def test_a_failing_resubscribe_callable_is_skipped(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    def broken() -> list[str]:
        raise RuntimeError("resubscribe bug")

    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST)
        ws.on_reconnect_send(broken)
        ws.on_reconnect_send("still sent")
        abort_all(gw)
        await eventually(lambda: app.RECEIVED == ["still sent"], message="the good one")
        await ws.close()


async def test_removed_resubscribe_messages_are_not_replayed(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST)
        remove = ws.on_reconnect_send("gone")
        ws.on_reconnect_send("kept")
        remove()
        abort_all(gw)
        await eventually(lambda: app.RECEIVED, message="replay")
        await ws.close()
    assert app.RECEIVED == ["kept"]


async def test_sends_while_the_gateway_is_down_are_flushed_to_the_new_one(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        port = public_port(gw)
        ws = await connect(gw.websocket_url, backoff=FAST)
    for n in range(100):
        await ws.send(f"m{n}")
    assert len(ws.unsent()) == 100
    async with gateway(port=port):
        received = [await ws.recv() for _ in range(100)]
        await ws.close()
    assert received == [f"m{n}" for n in range(100)]
    assert received == app.RECEIVED
    assert ws.unsent() == []


async def test_sends_before_the_first_connection_are_queued(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        ws = connect(gw.websocket_url)
        await ws.send("early")
        await ws.start()
        assert await ws.recv() == "early"
        await ws.close()


async def test_a_full_outgoing_queue_refuses_instead_of_dropping(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, queue_size=2)
    await ws.send("one")
    await ws.send("two")
    with pytest.raises(SendQueueFull, match=r"full \(2 messages"):
        await ws.send("three")
    assert ws.unsent() == ["one", "two"]
    await ws.close()
    assert ws.unsent() == ["one", "two"]  # still readable after close: nothing vanishes


async def test_close_reports_how_many_messages_were_not_sent(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=Backoff(base=30, cap=60))
    await ws.send("stranded")
    await ws.close()
    exc = await ws.wait_closed()
    assert exc.unsent == 1
    assert "not sent" in str(exc)

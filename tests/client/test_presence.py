"""The Python client's presence API against a real gateway on real sockets (issue 19):
``ws.room(name).presence()``, ``set_presence`` and the join/leave/update callbacks, and a client
that drops and resumes without a leave/join pair."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from hubbub.client import Backoff, ClientConnection, PresenceError, PresenceEvent, connect
from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.client.conftest import HANDLERS
from tests.helpers import TIME_SCALE, eventually

FAST = Backoff(base=0.01 * TIME_SCALE, cap=0.05 * TIME_SCALE)
ROUTES = {
    "$connect": {"handler": "rooms.connect"},
    "$disconnect": {"handler": "rooms.disconnect"},
    "$default": {"handler": "rooms.default", "route_response": True},
}


@pytest.fixture
def rooms() -> Iterator[ModuleType]:
    module = sys.modules[load_handler("rooms.default", HANDLERS).__module__]
    module.reset()
    yield module
    module.reset()


def gateway(**presence: Any) -> contextlib.AbstractAsyncContextManager[Gateway]:
    return run_gateway({"routes": ROUTES, "presence": presence}, base_dir=HANDLERS)


class Seen:
    """Every presence event of one room, as (action, connection id)."""

    def __init__(self, ws: ClientConnection, room: str) -> None:
        self.events: list[PresenceEvent] = []
        for action in ("join", "leave", "update"):
            ws.room(room).on(action, self.events.append)  # type: ignore[arg-type]

    def pairs(self) -> list[tuple[str, str]]:
        return [(e.action, e.member.connection_id) for e in self.events]


async def present(gw: Gateway, ws: ClientConnection, room: str, data: Any = None) -> str:
    cid: str = await eventually(lambda: ws.connection_id, message="the session frame")
    await gw.rooms.join(room, cid, presence=True, data=data)
    return cid


async def test_presence_lists_members_and_callbacks_see_join_update_leave(
    rooms: ModuleType,
) -> None:
    async with gateway(grace=0) as gw:
        async with connect(gw.websocket_url, recovery=True, backoff=FAST) as ann:
            seen = Seen(ann, "lobby")
            ann_id = await present(gw, ann, "lobby", {"status": "here"})
            async with connect(gw.websocket_url, recovery=True, backoff=FAST) as bob:
                bob_id = await present(gw, bob, "lobby")
                await eventually(lambda: len(seen.events) == 2, message="two joins")
                everyone = await ann.room("lobby").presence()
                assert (everyone.connections, everyone.users, everyone.next) == (2, 0, None)
                by_id = {m.connection_id: m for m in everyone.members}
                assert by_id[ann_id].data == {"status": "here"}
                assert by_id[bob_id].joined_at > 0
                await bob.room("lobby").set_presence({"status": "typing"})
                await eventually(lambda: len(seen.events) == 3, message="the update")
                assert seen.events[-1].member.data == {"status": "typing"}
            await eventually(lambda: len(seen.events) == 4, message="bob's leave")
            assert seen.pairs() == [
                ("join", ann_id),
                ("join", bob_id),
                ("update", bob_id),
                ("leave", bob_id),
            ]
            page = await ann.room("lobby").presence(limit=1)
            assert [m.connection_id for m in page.members] == [ann_id]


async def test_requests_for_rooms_the_client_is_not_in_are_refused(rooms: ModuleType) -> None:
    async with gateway() as gw, connect(gw.websocket_url, recovery=True) as ann:
        await eventually(lambda: ann.connection_id, message="the session frame")
        with pytest.raises(PresenceError, match="not a member"):
            await ann.room("elsewhere").presence()
        await present(gw, ann, "r")
        with pytest.raises(PresenceError, match="limit"):
            await ann.room("r").set_presence({"x": "y" * 2000})


async def test_presence_needs_the_recovery_protocol() -> None:
    ws = ClientConnection("ws://127.0.0.1:9/dev")
    with pytest.raises(ValueError, match="recovery=True"):
        ws.room("lobby")


async def test_a_client_that_drops_and_resumes_is_no_leave_and_join(rooms: ModuleType) -> None:
    async with gateway(grace=10) as gw:
        async with (
            connect(gw.websocket_url, recovery=True, backoff=FAST) as ann,
            connect(gw.websocket_url, recovery=True, backoff=FAST) as bob,
        ):
            seen = Seen(ann, "lobby")
            await present(gw, ann, "lobby")
            bob_id = await present(gw, bob, "lobby", {"n": 1})
            await eventually(lambda: len(seen.events) == 2, message="two joins")
            rooms.GATE = asyncio.Event()  # bob stays away until its old connection retired
            gw.hub.connections[bob_id].socket.abort()
            await eventually(lambda: bob_id in rooms.DISCONNECTED, message="bob retired")
            rooms.GATE.set()
            await eventually(lambda: bob.connection_id not in (None, bob_id), message="bob back")
            await eventually(lambda: len(seen.events) == 3, message="the takeover")
            last = seen.events[-1]
            assert (last.action, last.previous_connection_id) == ("update", bob_id)
            assert last.member.connection_id == bob.connection_id
            assert last.member.data == {"n": 1}
            await asyncio.sleep(0.2)
            assert [e.action for e in seen.events] == ["join", "join", "update"]  # no leave
            listing = await ann.room("lobby").presence()
            assert listing.connections == 2

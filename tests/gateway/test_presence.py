"""Presence through real sockets: members, counts, events, flapping, the management API, the
``$presence`` route and the in-process API (issue 19)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import websockets

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from tests.gateway.conftest import HANDLERS, GatewayFactory
from tests.helpers import eventually

ROUTES = {
    "join": {"handler": "presence.join"},
    "who": {"handler": "presence.who", "route_response": True},
    "who_sync": {"handler": "presence.who_sync", "route_response": True},
}


@pytest.fixture
def events() -> list[dict[str, Any]]:
    module = sys.modules[load_handler("presence.on_presence", HANDLERS).__module__]
    module.EVENTS.clear()
    return module.EVENTS  # type: ignore[no-any-return]


class Member:
    """A recovery-enabled client: its connection id, and the frames it received."""

    def __init__(self, ws: websockets.ClientConnection, session: dict[str, Any]) -> None:
        self.ws = ws
        self.id: str = session["connectionId"]
        self.token: str = session["token"]

    async def frame(self, kind: str = "presence") -> dict[str, Any]:
        """The next hubbub frame of ``kind`` (others, such as room envelopes, are skipped)."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), 5)
            if isinstance(raw, str) and raw.startswith('{"hubbub"'):
                frame: dict[str, Any] = json.loads(raw)
                if frame["hubbub"] == kind:
                    return frame

    async def nothing(self, seconds: float = 0.3) -> None:
        """No presence frame arrives within ``seconds``."""
        try:
            raw = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {raw!r}")


async def member(gw: Gateway, query: str = "") -> Member:
    ws = await websockets.connect(gw.websocket_url + query, subprotocols=["hubbub.v1"])
    session = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert session["hubbub"] == "session"
    return Member(ws, session)


async def http(
    gw: Gateway, method: str, path: str, body: bytes = b""
) -> tuple[int, dict[str, Any] | None]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, gw.management_url + path, data=body) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None


@pytest.fixture
def presence_gateway(gateway: GatewayFactory) -> Callable[..., Any]:
    def factory(**presence: Any) -> Any:
        return gateway(routes=ROUTES, presence=presence)

    return factory


async def test_join_with_presence_lists_the_member_and_tells_the_others(
    gateway: GatewayFactory,
) -> None:
    async with gateway(presence={"grace": 0}) as gw:  # no grace: a close leaves at once
        ann, bob = await member(gw), await member(gw)
        await gw.users.bind("ann", ann.id)
        await gw.rooms.join("lobby", ann.id, presence=True, data={"status": "here"})
        joined = await ann.frame()
        assert joined == {
            "hubbub": "presence",
            "room": "lobby",
            "action": "join",
            "member": {
                "connectionId": ann.id,
                "user": "ann",
                "data": {"status": "here"},
                "joinedAt": joined["member"]["joinedAt"],
            },
        }
        await gw.rooms.join("lobby", bob.id, presence=True)
        seen = await ann.frame()
        assert (seen["action"], seen["member"]["connectionId"]) == ("join", bob.id)
        assert seen["member"]["user"] is None
        listing = await gw.rooms.presence("lobby")
        assert (listing["connections"], listing["users"]) == (2, 1)
        assert {m["connectionId"] for m in listing["members"]} == {ann.id, bob.id}
        await bob.ws.close()
        left = await ann.frame()
        assert (left["action"], left["member"]["connectionId"]) == ("leave", bob.id)
        assert (await gw.rooms.presence("lobby", summary=True)) == {
            "room": "lobby",
            "connections": 1,
            "users": 1,
        }
        await ann.ws.close()


async def test_leave_update_and_data_limits(presence_gateway: Callable[..., Any]) -> None:
    async with presence_gateway(max_data_bytes=64) as gw:
        ann, bob = await member(gw), await member(gw)
        await gw.rooms.join("r", ann.id, presence=True)
        await gw.rooms.join("r", bob.id, data={"typing": False})
        await ann.frame()  # ann's own join
        await ann.frame()  # bob's
        await gw.rooms.set_presence("r", bob.id, {"typing": True})
        update = await ann.frame()
        assert (update["action"], update["member"]["data"]) == ("update", {"typing": True})
        with pytest.raises(Exception, match="the limit is 64"):
            await gw.rooms.set_presence("r", bob.id, {"x": "y" * 100})
        with pytest.raises(Exception, match="the limit is 64"):
            await gw.rooms.join("q", bob.id, data={"x": "y" * 100})
        assert "q" not in gw.hub.connections[bob.id].rooms  # refused before anything changed
        await gw.rooms.leave("r", bob.id)
        left = await ann.frame()
        assert (left["action"], left["member"]["data"]) == ("leave", {"typing": True})
        with pytest.raises(Exception, match="not present"):
            await gw.rooms.set_presence("r", bob.id, {})
        for m in (ann, bob):
            await m.ws.close()


async def test_configured_rooms_have_presence_and_others_do_not(
    presence_gateway: Callable[..., Any],
) -> None:
    async with presence_gateway(rooms=["chat:*"]) as gw:
        ann = await member(gw)
        await gw.rooms.join("chat:1", ann.id)
        assert (await ann.frame())["action"] == "join"
        await gw.rooms.join("plain", ann.id)
        await gw.rooms.leave("plain", ann.id)
        await ann.nothing()
        assert (await gw.rooms.presence("plain"))["connections"] == 0
        await ann.ws.close()


async def test_plain_aws_clients_never_see_presence_frames(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        async with websockets.connect(gw.websocket_url) as plain:
            cid = next(iter(gw.hub.connections))
            ann = await member(gw)
            await gw.rooms.join("r", cid, presence=True)
            await gw.rooms.join("r", ann.id, presence=True)
            assert (await ann.frame())["member"]["connectionId"] == ann.id
            await gw.rooms.send("r", "hello")
            assert await asyncio.wait_for(plain.recv(), 5) == "hello"  # the first frame it gets
            assert (await gw.rooms.presence("r"))["connections"] == 2
            await ann.ws.close()


async def test_management_api_lists_pages_and_sets_presence(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        members = [await member(gw) for _ in range(5)]
        for i, m in enumerate(members):
            path = f"/@rooms/lobby/connections/{m.id}?presence=1"
            status, _ = await http(gw, "PUT", path, json.dumps({"n": i}).encode())
            assert status == 204
        status, page = await http(gw, "GET", "/@rooms/lobby/presence?limit=2")
        assert status == 200
        assert page is not None
        assert (page["connections"], page["users"], len(page["members"])) == (5, 0, 2)
        seen = [m["connectionId"] for m in page["members"]]
        while page["next"] is not None:
            status, page = await http(
                gw, "GET", f"/@rooms/lobby/presence?limit=2&cursor={page['next']}"
            )
            assert page is not None
            seen += [m["connectionId"] for m in page["members"]]
        assert seen == sorted(m.id for m in members)
        status, summary = await http(gw, "GET", "/@rooms/lobby/presence?summary=1")
        assert (status, summary) == (200, {"room": "lobby", "connections": 5, "users": 0})
        status, _ = await http(gw, "PUT", f"/@rooms/lobby/presence/{members[0].id}", b'{"n": 9}')
        assert status == 204
        status, page = await http(gw, "GET", "/@rooms/lobby/presence?limit=1")
        assert page is not None
        # Pages go in connection-id order: the first member is the smallest id.
        first = min(range(5), key=lambda i: members[i].id)
        assert page["members"][0]["connectionId"] == members[first].id
        assert page["members"][0]["data"] == ({"n": 9} if first == 0 else {"n": first})
        status, error = await http(gw, "GET", "/@rooms/lobby/presence?limit=0")
        assert status == 400
        assert error is not None
        assert "limit" in error["message"]
        status, error = await http(gw, "PUT", f"/@rooms/lobby/presence/{members[0].id}", b"{x")
        assert status == 400
        status, error = await http(gw, "PUT", "/@rooms/lobby/presence/nobody", b"{}")
        assert status == 400
        assert error is not None
        assert "not present" in error["message"]
        for m in members:
            await m.ws.close()


async def test_clients_list_and_update_presence_over_hubbub_v1(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ann = await member(gw)
        await gw.rooms.join("r", ann.id, presence=True)
        await ann.frame()
        await ann.ws.send(json.dumps({"hubbub": "presence.get", "room": "r", "id": 7}))
        listing = await ann.frame("presence.members")
        assert listing["id"] == 7
        assert listing["connections"] == 1
        await ann.ws.send(
            json.dumps({"hubbub": "presence.set", "room": "r", "id": 8, "data": {"s": 1}})
        )
        assert (await ann.frame())["member"]["data"] == {"s": 1}
        assert (await ann.frame("presence.ok"))["id"] == 8
        await ann.ws.send(json.dumps({"hubbub": "presence.get", "room": "secret", "id": 9}))
        error = await ann.frame("error")
        assert error["id"] == 9
        assert "not a member" in error["message"]
        await ann.ws.close()


async def test_a_resume_within_grace_is_no_leave_and_join(
    presence_gateway: Callable[..., Any],
) -> None:
    async with presence_gateway(grace=5.0) as gw:
        ann, bob = await member(gw), await member(gw)
        await gw.rooms.join("r", ann.id, presence=True)
        await gw.rooms.join("r", bob.id, presence=True, data={"s": "b"})
        await ann.frame()
        await ann.frame()
        await bob.ws.close()  # bob drops...
        await eventually(lambda: bob.id not in gw.hub.connections, message="bob retired")
        assert (await gw.rooms.presence("r"))["connections"] == 2  # ...but is still present
        again = await member(gw)
        await again.ws.send(json.dumps({"hubbub": "resume", "token": bob.token, "rooms": {}}))
        assert (await again.frame("recovered"))["reason"] is None
        update = await ann.frame()  # the only event: an update naming the old connection
        assert update["action"] == "update"
        assert update["previousConnectionId"] == bob.id
        assert update["member"]["connectionId"] == again.id
        assert update["member"]["data"] == {"s": "b"}
        listing = await gw.rooms.presence("r")
        assert {m["connectionId"] for m in listing["members"]} == {ann.id, again.id}
        assert await gw.presence.sweep() == 0  # the deferred leave went with the old entry
        await ann.nothing()
        for m in (ann, again):
            await m.ws.close()


async def test_a_client_gone_for_good_leaves_once_after_grace(
    presence_gateway: Callable[..., Any],
) -> None:
    async with presence_gateway(grace=0.2) as gw:
        ann, bob = await member(gw), await member(gw)
        await gw.rooms.join("r", ann.id, presence=True)
        await gw.rooms.join("r", bob.id, presence=True)
        await ann.frame()
        await ann.frame()
        await bob.ws.close()
        left = await ann.frame()  # the sweep, after the grace
        assert (left["action"], left["member"]["connectionId"]) == ("leave", bob.id)
        await ann.nothing(0.5)
        assert (await gw.rooms.presence("r"))["connections"] == 1
        await ann.ws.close()


async def test_presence_route_gets_lambda_events(
    gateway: GatewayFactory, events: list[dict[str, Any]]
) -> None:
    routes = {**ROUTES, "$presence": {"handler": "presence.on_presence"}}
    async with gateway(routes=routes, presence={"route": "$presence"}) as gw:
        async with websockets.connect(gw.websocket_url) as plain:
            cid = next(iter(gw.hub.connections))
            await plain.send(json.dumps({"action": "join", "room": "r", "data": {"a": 1}}))
            await eventually(lambda: len(events) == 1, message="the join event")
        await eventually(lambda: len(events) == 2, message="the leave event")
    join, leave = events
    assert join["requestContext"]["routeKey"] == "$presence"
    assert join["requestContext"]["eventType"] == "PRESENCE"
    assert join["requestContext"]["connectionId"] == cid
    body = json.loads(join["body"])
    assert (body["room"], body["action"], body["member"]["data"]) == ("r", "join", {"a": 1})
    assert json.loads(leave["body"])["action"] == "leave"


async def test_handlers_read_presence_in_process_async_and_sync(gateway: GatewayFactory) -> None:
    async with gateway(routes=ROUTES) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(json.dumps({"action": "join", "room": "r", "data": "hi"}))
            await eventually(lambda: gw.presence.emitted == 1, message="the join")
            await ws.send(json.dumps({"action": "who", "room": "r"}))
            listing = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert listing["members"][0]["data"] == "hi"
            await ws.send(json.dumps({"action": "who_sync", "room": "r"}))
            summary = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert summary == {"room": "r", "connections": 1, "users": 0}


async def test_rooms_without_presence_cost_no_store_call(
    presence_gateway: Callable[..., Any],
) -> None:
    async with presence_gateway(rooms=["chat:*"]) as gw:
        calls: list[str] = []
        store = gw.store
        for name, target in (("registry", store.registry), ("presence", store.presence)):
            for method in [m for m in dir(target) if not m.startswith("_")]:
                original = getattr(target, method)
                if asyncio.iscoroutinefunction(original):
                    setattr(target, method, _counted(calls, f"{name}.{method}", original))
        async with websockets.connect(gw.websocket_url) as ws:
            cid = next(iter(gw.hub.connections))
            calls.clear()
            await gw.rooms.join("plain", cid)
            await gw.rooms.send("plain", "hello")
            await gw.rooms.leave("plain", cid)
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
            assert calls == ["registry.join", "registry.room_nodes", "registry.leave"]
            await gw.rooms.join("chat:1", cid)  # and the counting sees presence rooms
            assert "presence.enter" in calls
            calls.clear()
        await eventually(lambda: "presence.leave_all" in calls, message="the leave on close")


def _counted(calls: list[str], name: str, original: Any) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await original(*args, **kwargs)

    return wrapper

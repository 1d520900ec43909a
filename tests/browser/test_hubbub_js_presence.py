"""hubbub.js presence in real headless Chromium against a real gateway (issue 19):
``ws.room(name).presence()``, ``setPresence``, ``on("join" | "leave" | "update")``, and a page
that drops and resumes without a leave/join pair."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest
import websockets
from playwright.async_api import Page

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.browser.conftest import STATIC, open_test_page
from tests.client.conftest import HANDLERS
from tests.helpers import TIME_SCALE, eventually

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

OPTIONS = {"recovery": True, "backoff": {"base": 10 * TIME_SCALE, "cap": 50 * TIME_SCALE}}
ROUTES = {
    "$connect": {"handler": "rooms.connect"},
    "$disconnect": {"handler": "rooms.disconnect"},
    "$default": {"handler": "rooms.default", "route_response": True},
}
WATCH = """() => {
  window.seen = [];
  const room = ws.room("r");
  for (const action of ["join", "leave", "update"]) {
    room.on(action, (e) => seen.push([e.action, e.member.connectionId, e.member.data,
                                      e.previousConnectionId]));
  }
}"""


@pytest.fixture
def rooms() -> Iterator[ModuleType]:
    module = sys.modules[load_handler("rooms.default", HANDLERS).__module__]
    module.reset()
    yield module
    module.reset()


@contextlib.asynccontextmanager
async def gateway(**presence: Any) -> AsyncIterator[Gateway]:
    config = {"routes": ROUTES, "static": {"dir": str(STATIC)}, "presence": presence}
    async with run_gateway(config, base_dir=HANDLERS) as gw:
        yield gw


async def start(page: Page, gw: Gateway) -> str:
    await open_test_page(page, gw)
    await page.evaluate(f"start({json.dumps(OPTIONS)})")
    cid: str = await page.evaluate(
        "() => new Promise((ok) => { const t = setInterval(() => "
        "{ if (ws.connectionId) { clearInterval(t); ok(ws.connectionId); } }, 5); })"
    )
    await page.evaluate(WATCH)
    await gw.rooms.join("r", cid, presence=True, data={"who": "page"})
    return cid


async def other(gw: Gateway) -> tuple[websockets.ClientConnection, str]:
    ws = await websockets.connect(gw.websocket_url, subprotocols=["hubbub.v1"])
    session = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, session["connectionId"]


async def next_presence(ws: websockets.ClientConnection) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5 * TIME_SCALE))
        if frame.get("hubbub") == "presence":
            return frame  # type: ignore[no-any-return]


async def test_room_presence_lists_members_and_callbacks_fire(
    page: Page, rooms: ModuleType
) -> None:
    async with gateway(grace=0) as gw:
        cid = await start(page, gw)
        await page.wait_for_function("seen.length === 1")
        bob, bob_id = await other(gw)
        await gw.rooms.join("r", bob_id, presence=True)
        await page.wait_for_function("seen.length === 2")
        listing = await page.evaluate("ws.room('r').presence()")
        assert (listing["connections"], listing["users"], listing["next"]) == (2, 0, None)
        assert {m["connectionId"] for m in listing["members"]} == {cid, bob_id}
        await page.evaluate("ws.room('r').setPresence({typing: true})")
        update = None
        while update is None or update["action"] != "update":
            update = await next_presence(bob)
        assert update["member"]["connectionId"] == cid
        assert update["member"]["data"] == {"typing": True}
        await bob.close()
        await page.wait_for_function("seen.length === 4")
        seen = await page.evaluate("seen")
        assert [(s[0], s[1]) for s in seen] == [
            ("join", cid),
            ("join", bob_id),
            ("update", cid),
            ("leave", bob_id),
        ]
        refused = await page.evaluate(
            "ws.room('elsewhere').presence().then(() => null, (e) => [e.name, e.message])"
        )
        assert refused[0] == "PresenceError"
        assert "not a member" in refused[1]


async def test_a_page_that_drops_and_resumes_is_no_leave_and_join(
    page: Page, rooms: ModuleType
) -> None:
    async with gateway(grace=10) as gw:
        watcher, watcher_id = await other(gw)
        await gw.rooms.join("r", watcher_id, presence=True)
        await next_presence(watcher)
        cid = await start(page, gw)
        joined = await next_presence(watcher)
        assert (joined["action"], joined["member"]["connectionId"]) == ("join", cid)
        gate = rooms.GATE = asyncio.Event()
        gw.hub.connections[cid].socket.abort()
        await eventually(lambda: cid in rooms.DISCONNECTED, message="the old connection retired")
        gate.set()
        await page.wait_for_function("window.count('recovered') === 1")
        update = await next_presence(watcher)  # the only event: no leave, no join
        assert update["action"] == "update"
        assert update["previousConnectionId"] == cid
        assert update["member"]["data"] == {"who": "page"}
        new_id = await page.evaluate("ws.connectionId")
        assert update["member"]["connectionId"] == new_id
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watcher.recv(), 0.3)
        listing = await page.evaluate("ws.room('r').presence()")
        assert {m["connectionId"] for m in listing["members"]} == {watcher_id, new_id}
        await watcher.close()

"""hubbub.js with ``recovery: true`` in real headless Chromium, against a real gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest
from playwright.async_api import Page

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.browser.conftest import STATIC, open_test_page
from tests.client.conftest import HANDLERS, abort_all
from tests.helpers import TIME_SCALE, eventually

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

OPTIONS = {"recovery": True, "backoff": {"base": 10 * TIME_SCALE, "cap": 50 * TIME_SCALE}}
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


@contextlib.asynccontextmanager
async def gateway(**raw: Any) -> AsyncIterator[Gateway]:
    config = {"routes": ROUTES, "static": {"dir": str(STATIC)}, **raw}
    async with run_gateway(config, base_dir=HANDLERS) as gw:
        yield gw


async def start(page: Page, gw: Gateway, options: dict[str, Any] | None = None) -> str:
    """Open the test page's client and put its connection in room "r"; its connection id."""
    await open_test_page(page, gw)
    await page.evaluate(f"start({json.dumps(options or OPTIONS)})")
    cid: str = await page.evaluate(
        "() => new Promise((ok) => { const t = setInterval(() => "
        "{ if (ws.connectionId) { clearInterval(t); ok(ws.connectionId); } }, 5); })"
    )
    await gw.rooms.join("r", cid)
    return cid


async def drop_and_hold(gw: Gateway, rooms: ModuleType, cid: str) -> asyncio.Event:
    """Drop the page's connection and keep it out until its session is saved; returns the gate."""
    gate = rooms.GATE = asyncio.Event()
    abort_all(gw)
    await eventually(lambda: cid in rooms.DISCONNECTED, message="the old connection retired")
    return gate


async def named(page: Page, name: str) -> list[dict[str, Any]]:
    return [detail for n, detail in await page.evaluate("log.events") if n == name]


async def test_a_drop_replays_what_was_missed_once_in_order(page: Page, rooms: ModuleType) -> None:
    async with gateway() as gw:
        cid = await start(page, gw)
        await gw.rooms.send("r", "one")
        await page.wait_for_function("log.messages.length === 1")
        gate = await drop_and_hold(gw, rooms, cid)
        for text in ("two", "three"):
            await gw.rooms.send("r", text)
        gate.set()
        await page.wait_for_function("count('reconnected') === 1")
        await gw.rooms.send("r", "four")
        await page.wait_for_function("log.messages.length === 4")
        assert await page.evaluate("log.messages") == ["one", "two", "three", "four"]
        meta = await page.evaluate("log.meta")
        assert [(m["room"], m["offset"], m["replayed"]) for m in meta] == [
            ("r", 1, False),
            ("r", 2, True),
            ("r", 3, True),
            ("r", 4, False),
        ]
        assert await page.evaluate("ws.positions().r.offset") == 4
        await page.evaluate("ws.close()")
    names = await page.evaluate("eventNames()")
    assert names[names.index("recovered") - 1 : names.index("recovered") + 2] == [
        "open",
        "recovered",
        "reconnected",
    ]
    (report,) = await named(page, "recovered")
    assert report["replayed"] == 2
    assert report["rooms"]["r"]["recovered"] is True


async def test_queued_sends_wait_for_the_answer_and_joins_are_skipped(
    page: Page, rooms: ModuleType
) -> None:
    async with gateway() as gw:
        cid = await start(page, gw)
        await page.evaluate(
            "() => { ws.onReconnectSend({action: 'join', room: 'r'}, {skipIfResumed: true}); }"
        )
        gate = await drop_and_hold(gw, rooms, cid)
        await page.wait_for_function("!ws.connected")
        await page.evaluate("ws.send('queued 1'); ws.send('queued 2')")
        gate.set()
        await page.wait_for_function("count('reconnected') === 1")
        await eventually(lambda: len(rooms.RECEIVED) == 2, message="the queued sends")
        await page.evaluate("ws.close()")
    # Handled with the new connection already back in "r": restored by the gateway, no join.
    assert rooms.RECEIVED == [("queued 1", True), ("queued 2", True)]


async def test_a_passed_window_is_not_recovered(page: Page, rooms: ModuleType) -> None:
    async with gateway(history={"size": 2}) as gw:
        cid = await start(page, gw)
        await gw.rooms.send("r", "seen")  # the page knows where it stands in "r"
        await page.wait_for_function("log.messages.length === 1")
        gate = await drop_and_hold(gw, rooms, cid)
        for i in range(4):
            await gw.rooms.send("r", f"lost {i}")
        gate.set()
        await page.wait_for_function("count('reconnected') === 1")
        (report,) = await named(page, "not_recovered")
        assert (report["reason"], report["resumed"], report["lost"]) == (
            "window passed",
            True,
            ["r"],
        )
        await gw.rooms.send("r", "live")
        await page.wait_for_function("log.messages.includes('live')")
        assert await page.evaluate("log.messages") == ["seen", "live"]
        await page.evaluate("ws.close()")


async def test_duplicates_and_control_frames_never_reach_the_page(
    page: Page, rooms: ModuleType
) -> None:
    async with gateway() as gw:
        cid = await start(page, gw)
        await gw.rooms.send("r", "one")
        await page.wait_for_function("log.messages.length === 1")
        (epoch,) = await page.evaluate("log.meta.map((m) => m.epoch)")
        repeat = {"hubbub": "room", "room": "r", "epoch": epoch, "offset": 1, "data": "again"}
        await gw.connections.post(cid, json.dumps(repeat, separators=(",", ":")))
        await gw.connections.post(cid, "marker")
        await page.wait_for_function("log.messages.includes('marker')")
        assert await page.evaluate("log.messages") == ["one", "marker"]
        assert await page.evaluate("log.meta[1]") is None  # a direct post: no room
        assert await page.evaluate("ws._session.duplicates") == 1
        await page.evaluate("ws.close()")


async def test_plain_mode_is_unchanged(page: Page, rooms: ModuleType) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        await page.evaluate("start()")
        await page.wait_for_function("ws.connected")
        (cid,) = gw.hub.connections
        await gw.rooms.join("r", cid)
        await gw.rooms.send("r", "plain")
        await page.wait_for_function("log.messages.length === 1")
        assert await page.evaluate("[log.messages, log.meta, ws.sessionToken]") == [
            ["plain"],
            [None],
            None,
        ]
        await page.evaluate("ws.close()")

"""The /dashboard page in real Chromium: live numbers, per-route latency, rooms, the log tail."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from playwright.async_api import Page

from tests.browser.conftest import GatewayFactory

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_the_dashboard_shows_live_traffic(
    page: Page, gateway: GatewayFactory, tmp_path: Path
) -> None:
    async with gateway() as gw:
        base = gw.management_url.rsplit("/", 1)[0]
        clients = [await websockets.connect(gw.websocket_url) for _ in range(3)]
        try:
            await gw.rooms.join("lobby", next(iter(gw.hub.connections)))
            await page.goto(base + "/dashboard")
            await page.wait_for_selector("body[data-ready='true']")
            for n in range(20):
                await clients[n % 3].send(json.dumps({"action": "echo", "n": n}))
                await clients[n % 3].recv()
            # Two polls later the rates have a previous snapshot to compare with.
            await page.wait_for_function(
                "() => document.querySelector('#connections').textContent === '3'"
            )
            await page.wait_for_selector("#routes tbody tr td:text-is('$default')")
            await page.wait_for_selector("#rooms tbody tr td:text-is('lobby')")
            await page.wait_for_selector(f"#nodes tbody tr td:text-is('{gw.node_id}')")
            await page.wait_for_function(
                "() => document.querySelector('#tail').textContent.includes('invoke')"
            )
            # The tail's filter: a route nobody used shows nothing.
            await page.fill("#route-filter", "nowhere")
            await page.wait_for_function("() => document.querySelector('#tail').textContent === ''")
            await page.fill("#route-filter", "")
            p50 = await page.text_content(
                "#routes tbody tr:has(td:text-is('$default')) td:nth-child(4)"
            )
            assert p50 is not None
            assert float(p50) >= 0
            await asyncio.sleep(1.2)  # one more poll: the rate tiles are filled
            assert await page.text_content("#store") == "ok"
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            for ws in clients:
                await ws.close()

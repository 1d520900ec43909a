"""clients/js/hubbub.js in real headless Chromium, against a real gateway that serves it."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from hubbub.client.backoff import CLOSE_RULES
from tests.browser.conftest import GatewayFactory, open_test_page
from tests.client.conftest import PeakConnections, abort_all, public_port
from tests.helpers import TIME_SCALE, eventually

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

FAST = {"backoff": {"base": 10 * TIME_SCALE, "cap": 50 * TIME_SCALE}}


async def events(page: Page) -> list[tuple[str, dict[str, Any]]]:
    return [(name, detail) for name, detail in await page.evaluate("window.log.events")]


async def test_the_gateway_serves_the_module_as_javascript(gateway: GatewayFactory) -> None:
    async with gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(gw.http_url + "/hubbub.js") as response:
            assert response.status == 200
            assert response.content_type == "text/javascript"
            assert "export function connect" in await response.text()


async def test_connects_sends_and_receives(
    page: Page, gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        await page.evaluate("start()")
        await page.wait_for_function("ws.connected")
        await page.evaluate("ws.send('hello'); ws.sendJson({action: 'echo', n: 1})")
        await page.wait_for_function("log.messages.length === 2")
        assert await page.evaluate("log.messages") == ["hello", '{"action":"echo","n":1}']
        assert app.RECEIVED == ["hello", '{"action":"echo","n":1}']
        await page.evaluate("ws.close()")
        await page.wait_for_function("ws.closed")
        await eventually(lambda: not gw.hub.connections, message="server saw the close")
    names = [name for name, _ in await events(page)]
    assert names == ["open", "close"]


async def test_reconnects_by_itself_after_the_gateway_restarts_on_the_same_port(
    page: Page, gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        port = public_port(gw)
        await open_test_page(page, gw)
        await page.evaluate(f"start({json.dumps(FAST)})")
        # (A function body: playwright would call a function the expression returns, here the
        # remover that onReconnectSend returns.)
        await page.evaluate("() => { ws.onReconnectSend({action: 'join', room: 'lobby'}); }")
        await page.wait_for_function("ws.connected")
    # Drained with 1001: the page retries a closed port and queues what is sent meanwhile.
    await page.wait_for_function("count('reconnecting') >= 2")
    await page.evaluate("ws.send('sent while down')")
    assert await page.evaluate("ws.unsent()") == ["sent while down"]
    async with gateway(port=port) as gw:
        await page.wait_for_function("count('reconnected') === 1")
        await eventually(lambda: len(app.RECEIVED) == 2, message="replay and flush")
        assert app.RECEIVED == ['{"action":"join","room":"lobby"}', "sent while down"]
        await page.evaluate("ws.send('after')")
        await page.wait_for_function("log.messages.includes('after')")
        assert len(gw.hub.connections) == 1
    seen = await events(page)
    close = next(detail for name, detail in seen if name == "close")
    assert (close["code"], close["willReconnect"]) == (1001, True)
    opens = [detail["reconnect"] for name, detail in seen if name == "open"]
    assert opens == [False, True]


async def test_never_opens_a_second_socket_while_reconnecting(
    page: Page, gateway: GatewayFactory
) -> None:
    async with gateway() as gw:
        peak = PeakConnections(gw)
        await open_test_page(page, gw)
        await page.evaluate("start({backoff: {base: 1, cap: 5}})")
        await page.wait_for_function("ws.connected")
        for n in range(1, 11):
            abort_all(gw)
            await page.wait_for_function(f"count('reconnected') === {n} && ws.connected")
        await page.evaluate("ws.close()")
    assert peak.added == 11
    assert peak.peak == 1


async def test_delete_connection_is_final(page: Page, gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        await page.evaluate(f"start({json.dumps(FAST)})")
        await page.wait_for_function("ws.connected")
        (cid,) = gw.hub.connections
        await gw.connections.delete(cid)
        await page.wait_for_function("ws.closed")
    name, detail = (await events(page))[-1]
    assert name == "close"
    assert (detail["code"], detail["byServer"], detail["willReconnect"]) == (1000, True, False)
    assert detail["error"]["name"] == "ConnectionClosedError"
    assert await page.evaluate("count('reconnecting')") == 0


async def test_gives_up_after_max_attempts(page: Page, gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        # A stage that does not exist: the browser sees only a failed handshake (1006).
        await page.evaluate("start({backoff: {base: 1, cap: 4, maxAttempts: 3}}, '/no-such-stage')")
        await page.wait_for_function("ws.closed")
        assert await page.evaluate("count('reconnecting')") == 2
        name, detail = (await events(page))[-1]
        assert name == "close"
        assert detail["willReconnect"] is False
        assert detail["error"]["name"] == "RetriesExhaustedError"
        assert "after 3 attempt(s)" in detail["error"]["message"]


async def test_a_full_queue_throws_instead_of_dropping(page: Page, gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        await page.evaluate("start({queueSize: 2, backoff: {base: 5000, cap: 5000}})")
        await page.wait_for_function("ws.connected")
    await page.wait_for_function("!ws.connected")
    error = await page.evaluate(
        """() => {
            ws.send('one');
            ws.send('two');
            try { ws.send('three'); } catch (e) { return e.name; }
            return 'no error';
        }"""
    )
    assert error == "SendQueueFullError"
    assert await page.evaluate("ws.unsent()") == ["one", "two"]
    await page.evaluate("ws.close()")


async def test_close_during_backoff_stops_reconnecting(page: Page, gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        await page.evaluate("start({backoff: {base: 60000, cap: 60000}})")
        await page.wait_for_function("ws.connected")
    await page.wait_for_function("ws.state === 'waiting' && ws._timer !== null")
    await page.evaluate("ws.close()")
    assert await page.evaluate("[ws.state, ws._timer]") == ["closed", None]
    name, detail = (await events(page))[-1]
    assert (name, detail["code"], detail["byServer"], detail["willReconnect"]) == (
        "close",
        1000,
        False,
        False,
    )


# -- the pure parts, run in the browser --------------------------------------------------------
async def test_the_js_close_code_table_matches_the_python_one(
    page: Page, gateway: GatewayFactory
) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        rules = await page.evaluate("hubbub.CLOSE_RULES")
    assert [tuple(rule) for rule in rules] == [
        (r.first, r.last, r.action, r.meaning) for r in CLOSE_RULES
    ]


async def test_js_delays_stay_within_the_full_jitter_bounds(
    page: Page, gateway: GatewayFactory
) -> None:
    async with gateway() as gw:
        await open_test_page(page, gw)
        result = await page.evaluate(
            """() => {
                const policy = {base: 500, cap: 30000};
                const out = {bad: [], extremes: [], means: []};
                for (let retry = 0; retry < 80; retry++) {
                    const high = hubbub.backoffCeiling(retry, policy);
                    out.extremes.push([
                        hubbub.backoffDelay(retry, policy, () => 0),
                        hubbub.backoffDelay(retry, policy, () => 0.999999999) <= high,
                        high,
                    ]);
                    let sum = 0;
                    for (let i = 0; i < 2000; i++) {
                        const d = hubbub.backoffDelay(retry, policy);
                        if (!(d >= 0 && d <= high && d <= policy.cap)) out.bad.push([retry, d]);
                        sum += d;
                    }
                    out.means.push(sum / 2000 / high);
                }
                return out;
            }"""
        )
    assert result["bad"] == []
    ceilings = [high for _, _, high in result["extremes"]]
    assert ceilings[:7] == [500, 1000, 2000, 4000, 8000, 16000, 30000]
    assert all(high == 30000 for high in ceilings[6:])
    assert all(low == 0 and within for low, within, _ in result["extremes"])
    assert all(0.4 < mean < 0.6 for mean in result["means"])

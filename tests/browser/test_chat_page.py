"""The example chat page (examples/chat/public/index.html) in headless Chromium, served by a real
gateway running the example's unchanged Lambda handler, through a gateway restart."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.client.conftest import public_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"

if not (CHAT / "public" / "index.html").is_file():  # pragma: no cover - the example is elsewhere
    pytest.skip("examples/chat/public/index.html does not exist", allow_module_level=True)


@pytest.fixture
def chat_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's handler with a private table and a fresh management client.

    The handler reads ``CHAT_DB`` per call, but creates its boto3 client once per process (as a
    Lambda container does), bound to the endpoint of the first call: another test's gateway, on
    another port, may have set it already. This test starts with none (restored afterwards).
    """
    monkeypatch.setenv("CHAT_DB", str(tmp_path / "chat.sqlite3"))
    module = sys.modules[load_handler("handler.handler", CHAT).__module__]
    monkeypatch.setattr(module, "_client", None)


@contextlib.asynccontextmanager
async def chat_gateway(
    port: int = 0, management_port: int = 0, tls_port: int = 0
) -> AsyncIterator[Gateway]:
    # The example's hubbub.toml, on free ports (or the ports of the gateway it replaces, since the
    # handler keeps its boto3 client, built from the events' domainName (the HTTPS listener), for
    # the process lifetime).
    route = {"handler": "handler.handler"}
    raw = {
        "api": {"name": "chat", "stage": "dev"},
        "server": {"port": port},
        "management": {"port": management_port, "tls_port": tls_port},
        "routes": {key: route for key in ("$connect", "$disconnect", "sendMessage", "$default")},
        "static": {"dir": "public"},
    }
    async with run_gateway(raw, base_dir=CHAT) as gw:
        yield gw


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")
    await page.wait_for_selector(f"#messages .message.own .text:text-is('{text}')")


async def test_chat_page_sends_and_receives_and_survives_a_restart(
    page: Page, chat_handler: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts: list[str] = []
    page.on("request", lambda request: scripts.append(request.url.rsplit("/", 1)[-1]))
    async with chat_gateway() as gw:
        assert gw.management is not None
        assert gw.management_tls is not None
        ports = public_port(gw), gw.management.port, gw.management_tls.port
        await page.goto(gw.http_url + "/")
        await page.wait_for_selector("#status[data-state='open']")
        await say(page, "hello from the browser")
    assert "hubbub.js" in scripts  # the page runs on the browser client
    await page.wait_for_selector("#status:not([data-state='open'])")
    # Sent while the gateway is down: the client queues it and sends it after the reconnect.
    await page.fill("#text", "written while offline")
    await page.click("#send")
    async with chat_gateway(*ports):
        await page.wait_for_selector("#status[data-state='open']")
        await page.wait_for_selector(
            "#messages .message.own .text:text-is('written while offline')"
        )
        await say(page, "still here after the restart")
    texts = await page.locator("#messages .message .text").all_text_contents()
    assert texts == [
        "hello from the browser",
        "written while offline",
        "still here after the restart",
    ]

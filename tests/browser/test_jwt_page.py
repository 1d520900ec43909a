"""The JWT example in headless Chromium: a token in the query string opens the socket; a bad one
is refused by the built-in authorizer (no authorizer code)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from playwright.async_api import Page

from hubbub.config import load_config
from hubbub.testing import run_gateway

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

JWT = Path(__file__).resolve().parents[2] / "examples" / "jwt"


def _make_token(user: str, minutes: float = 5) -> str:
    spec = importlib.util.spec_from_file_location("make_token", JWT / "make_token.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    token: str = module.make_token(user, minutes)
    return token


async def test_a_valid_token_in_the_query_string_signs_the_page_in(page: Page) -> None:
    config = load_config(
        JWT / "hubbub.toml", env={}, overrides={"server.port": 0, "management.port": 0}
    )
    async with run_gateway(config) as gw:
        await page.goto(f"{gw.http_url}/?token={_make_token('alice')}")
        await page.wait_for_selector('#status[data-state="open"]', timeout=10_000)
        await page.wait_for_function(
            "document.getElementById('principal').textContent === 'alice'", timeout=10_000
        )
        assert '"name": "Alice"' in await page.inner_text("#claims")


@pytest.mark.parametrize("token", ["", "not-a-jwt", "expired"])
async def test_a_missing_or_bad_token_is_refused(page: Page, token: str) -> None:
    if token == "expired":
        token = _make_token("bob", minutes=-1)
    config = load_config(
        JWT / "hubbub.toml", env={}, overrides={"server.port": 0, "management.port": 0}
    )
    async with run_gateway(config) as gw:
        started = time.monotonic()
        await page.goto(f"{gw.http_url}/?token={token}")
        await page.wait_for_selector('#status[data-state="refused"]', timeout=30_000)
        assert time.monotonic() - started < 30
        assert await page.inner_text("#principal") == "—"
        assert not gw.hub.connections

"""Browser fixtures: headless Chromium (Debian's, driven by the playwright package) and a real
gateway serving ``static/index.html`` and ``/hubbub.js``.

Chromium comes from ``HUBBUB_CHROMIUM`` (set by ``dev.py test``) or ``scripts/ensure_browser.py``,
which installs Debian's package when it can. The tests skip only when neither finds a browser.
Nothing is ever downloaded by playwright itself (no ``playwright install``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.client.conftest import HANDLERS, ROUTES
from tests.helpers import TIME_SCALE

ROOT = Path(__file__).resolve().parents[2]
STATIC = Path(__file__).parent / "static"
# Milliseconds for playwright's own deadlines (wait_for_function polls until then).
TIMEOUT_MS = 10_000 * TIME_SCALE

GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


def _ensure_browser_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ensure_browser", ROOT / "scripts" / "ensure_browser.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def chromium() -> tuple[str, tuple[str, ...]]:
    """The Chromium binary and its launch switches; skips the test when there is none."""
    helper = _ensure_browser_module()
    path = os.environ.get("HUBBUB_CHROMIUM") or helper.ensure_chromium()
    if not path:
        pytest.skip(
            "no Chromium: none found and Debian's chromium package could not be installed "
            "(run `sudo apt-get install chromium` or set HUBBUB_CHROMIUM)"
        )
    return path, tuple(helper.CHROMIUM_ARGS)


# One browser for the whole session (launching takes seconds); each test gets a fresh context.
# Playwright objects belong to the loop that created them, so the browser tests all run on the
# session's loop (pytestmark in each module).
@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: tuple[str, tuple[str, ...]]) -> AsyncIterator[Browser]:
    path, args = chromium
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=path, args=list(args))
        try:
            yield instance
        finally:
            await instance.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page; uncaught page errors fail the test."""
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def app() -> ModuleType:
    """The handler module (tests/client/handlers/app.py) with its records cleared."""
    module = sys.modules[load_handler("app.echo", HANDLERS).__module__]
    module.RECEIVED.clear()
    module.CONNECT_STATUSES.clear()
    module.CONNECTED.clear()
    return module


@pytest.fixture
def gateway(app: ModuleType) -> GatewayFactory:
    """``async with gateway(port=0) as gw``: an echoing gateway that serves the test page."""

    @contextlib.asynccontextmanager
    async def factory(port: int = 0, **raw: Any) -> AsyncIterator[Gateway]:
        config = {"routes": ROUTES, "static": {"dir": str(STATIC)}, **raw}
        config["server"] = {**raw.get("server", {}), "port": port}
        async with run_gateway(config, base_dir=HANDLERS) as gw:
            yield gw

    return factory


async def open_test_page(page: Page, gw: Gateway) -> None:
    await page.goto(gw.http_url + "/")
    await page.wait_for_function("() => typeof window.start === 'function'")

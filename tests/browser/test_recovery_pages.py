"""The rooms example (examples/rooms) in two headless Chromium pages through a gateway restart with
SQLite history: nothing sent meanwhile is lost, nothing shows twice."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from hubbub.config import load_config
from hubbub.gateway.app import Gateway
from hubbub.testing import run_gateway
from tests.browser.conftest import TIMEOUT_MS
from tests.helpers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ROOMS = Path(__file__).resolve().parents[2] / "examples" / "rooms"
MESSAGES = "#messages li.message .text"


@contextlib.asynccontextmanager
async def rooms_gateway(
    port: int, db: Path | None, *, grace: float | None = None
) -> AsyncIterator[Gateway]:
    """The example's own hubbub.toml, on ``port``, with its history in the SQLite file ``db``
    (in memory without one); ``grace`` overrides its ``[presence] grace``."""
    overrides: dict[str, object] = {
        "server.port": port,
        "management.port": 0,
        "management.tls": False,
    }
    if grace is not None:
        overrides["presence.grace"] = grace
    if db is not None:
        overrides["history.url"] = f"sqlite:///{db}"
    async with run_gateway(load_config(ROOMS / "hubbub.toml", env={}, overrides=overrides)) as gw:
        yield gw


@contextlib.asynccontextmanager
async def user(browser: Browser) -> AsyncIterator[tuple[BrowserContext, Page]]:
    """A browser context of its own (one user, one network switch); page errors fail the test."""
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield context, page
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def join(page: Page, url: str, nick: str) -> None:
    await page.goto(url)
    await page.wait_for_selector("#status[data-state='open']")
    await page.fill("#nick", nick)
    await page.fill("#room", "lobby")
    await page.click("#join")
    await page.wait_for_selector(f"#messages li.note:text-matches('^{nick} joined lobby')")


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")


async def shows(page: Page, texts: list[str]) -> None:
    for text in texts:
        await page.wait_for_selector(f"{MESSAGES}:text-is('{text}')")


async def texts(page: Page) -> list[str]:
    return await page.locator(MESSAGES).all_text_contents()


async def room_offsets(page: Page) -> list[int]:
    items = page.locator("#messages li.message")
    offsets: list[int] = await items.evaluate_all(
        "(items) => items.map((li) => Number(li.dataset.offset))"
    )
    return offsets


async def server_says(gw: Gateway, text: str) -> None:
    message = {"type": "message", "room": "lobby", "nick": "server", "text": text}
    await gw.rooms.send("lobby", json.dumps(message))


async def test_two_pages_lose_nothing_and_see_nothing_twice_through_a_restart(
    browser: Browser, tmp_path: Path
) -> None:
    port, db = free_port(), tmp_path / "h.db"
    async with user(browser) as (_, ann), user(browser) as (bob_context, bob):
        async with rooms_gateway(port, db) as gw:
            await join(ann, gw.http_url + "/", "ann")
            await join(bob, gw.http_url + "/", "bob")
            await ann.wait_for_selector("#messages li.note:text-matches('^bob joined lobby')")
            await say(ann, "hi bob")
            await say(bob, "hi ann")
            for page in (ann, bob):
                await shows(page, ["hi bob", "hi ann"])
            # Bob's network goes away too, so he cannot be back before the server's messages.
            await bob_context.set_offline(True)
        await ann.wait_for_selector("#status:not([data-state='open'])")
        queued = ["while down 1", "while down 2", "while down 3"]
        for text in queued:
            await say(ann, text)  # the gateway is down: the client queues them
        async with rooms_gateway(port, db) as gw:
            published = ["server says 1", "server says 2"]
            for text in published:
                await server_says(gw, text)
            await shows(ann, queued + published)  # ann is back by herself
            await bob_context.set_offline(False)
            await shows(bob, queued + published)  # bob too, and catches up
            await say(bob, "all good?")
            for page in (ann, bob):
                await shows(page, ["all good?"])
                await page.wait_for_selector("#status[data-state='open']")
            seen = {"ann": await texts(ann), "bob": await texts(bob)}
            offsets = {"ann": await room_offsets(ann), "bob": await room_offsets(bob)}
            notes = await bob.locator("#messages li.note").all_text_contents()
    expected = ["hi bob", "hi ann", *queued, *published, "all good?"]
    for name in ("ann", "bob"):
        assert Counter(seen[name]) == Counter(expected), f"{name} saw {seen[name]}"
        assert offsets[name] == sorted(set(offsets[name])), f"{name}: {offsets[name]}"
    # Both pages show the room's messages in the room's order.
    assert seen["ann"] == seen["bob"]
    # Still in the room without joining again: no second "joined" notice.
    assert [n for n in notes if " joined lobby" in n] == ["bob joined lobby (2 here)"]


async def test_with_memory_history_a_restart_is_reported_and_the_page_rejoins(
    browser: Browser,
) -> None:
    port = free_port()
    async with user(browser) as (_, ann):
        async with rooms_gateway(port, None) as gw:
            await join(ann, gw.http_url + "/", "ann")
        await ann.wait_for_selector("#status:not([data-state='open'])")
        async with rooms_gateway(port, None) as gw:
            # The restarted gateway has no session to resume: the page says so and its join,
            # registered with skipIfResumed, goes out again by itself.
            await ann.wait_for_selector("#messages li.note.warning:text-matches('session expired')")
            await ann.wait_for_selector("#status[data-state='open']")
            await say(ann, "still in the lobby")
            await shows(ann, ["still in the lobby"])
            notes = await ann.locator("#messages li.note").all_text_contents()
    assert [n for n in notes if " joined lobby" in n] == [
        "ann joined lobby (1 here)",
        "ann joined lobby (1 here)",
    ]

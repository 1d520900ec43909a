"""The rooms example shows who is online (issue 19): two headless Chromium pages in one room see
each other, by nick, and one sees the other leave."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.browser.test_recovery_pages import join, rooms_gateway, user
from tests.helpers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ONLINE = "#online li.member"


async def test_pages_show_who_is_online_and_who_left(browser: Browser) -> None:
    async with rooms_gateway(free_port(), None, grace=0) as gw:
        url = gw.http_url + "/"
        async with user(browser) as (_, ann):
            await join(ann, url, "ann")
            await ann.wait_for_selector(f"{ONLINE}:text-is('ann')")
            async with user(browser) as (_, bob):
                await join(bob, url, "bob")
                for page in (ann, bob):
                    await page.wait_for_function(
                        "document.querySelectorAll('#online li.member').length === 2"
                    )
                    names = sorted(await page.locator(ONLINE).all_text_contents())
                    assert names == ["ann", "bob"]
                    assert await page.locator("#online-count").text_content() == "2"
            # bob's page closed: ann sees it leave (no grace in this test)
            await ann.wait_for_function(
                "document.querySelectorAll('#online li.member').length === 1"
            )
            assert await ann.locator(ONLINE).all_text_contents() == ["ann"]
            assert await ann.locator("#online-count").text_content() == "1"

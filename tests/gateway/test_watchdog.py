"""The invoker's Watchdog: one periodic check cancels the tasks whose deadline passed."""

from __future__ import annotations

import asyncio

from hubbub.gateway.invoke import Watchdog


async def _watched_sleep(watchdog: Watchdog) -> bool:
    """Sleep under a deadline of 0.05 s: True when the watchdog cancelled the sleep."""
    deadline = watchdog.watch(0.05)
    assert deadline.task is asyncio.current_task()
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        return deadline.expired
    finally:
        watchdog.forget(deadline)
    return False


def test_a_watchdog_serves_each_loop_it_is_used_on() -> None:
    # It keeps the loop of its last watch (see Watchdog.watch); a new loop replaces it.
    watchdog = Watchdog()
    assert asyncio.run(_watched_sleep(watchdog)) is True
    first = watchdog._loop
    assert asyncio.run(_watched_sleep(watchdog)) is True
    assert watchdog._loop is not first


async def test_a_deadline_is_for_the_task_that_asked() -> None:
    watchdog = Watchdog()
    results = await asyncio.gather(_watched_sleep(watchdog), _watched_sleep(watchdog))
    assert results == [True, True]

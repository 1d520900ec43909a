"""Helpers shared by the tests (import them; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

# A scale for timing-sensitive waits, so slow CI machines can stretch them (as websockets does).
TIME_SCALE = float(os.environ.get("HUBBUB_TEST_TIME_SCALE", "1"))


async def eventually(
    predicate: Callable[[], Any], timeout: float = 5.0, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        await asyncio.sleep(0.01)


def free_port() -> int:
    """A TCP port that was free a moment ago (for configs that must name their port), outside
    the range outgoing connections take theirs from: see scripts/ports.py."""
    from scripts.ports import free_port as pick

    return pick()

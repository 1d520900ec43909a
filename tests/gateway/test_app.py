"""The composition root (gateway/app.py) before it starts."""

from __future__ import annotations

import pytest

from hubbub.gateway.app import Gateway
from hubbub.testing import make_config


async def test_the_started_parts_say_so_before_start_and_close_needs_no_start() -> None:
    gw = Gateway(make_config())
    with pytest.raises(RuntimeError, match="the gateway has not started"):
        _ = gw.websocket_url
    with pytest.raises(RuntimeError, match="the gateway has not started"):
        _ = gw.rooms
    await gw.close()
    await gw.close()  # twice is fine

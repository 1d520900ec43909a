"""The composition root (gateway/app.py) before it starts."""

from __future__ import annotations

import gc
import socket
import warnings

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


@pytest.mark.parametrize("taken", ["server", "management"])
async def test_a_port_in_use_fails_the_start_without_leaving_a_socket_behind(taken: str) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        gw = Gateway(make_config({taken: {"port": holder.getsockname()[1]}}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(Exception, match="address already in use"):
                await gw.start()
            await gw.close()
            gc.collect()
        leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert leaks == [], [str(w.message) for w in leaks]
    finally:
        holder.close()

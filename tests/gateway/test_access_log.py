"""The access log's connect and disconnect lines (hubbub.access at INFO), on real sockets."""

from __future__ import annotations

import logging

import pytest
import websockets

from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


async def test_connect_and_disconnect_are_logged_when_the_access_log_is_on(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub.access")
    async with gateway(routes=routes()) as gw:
        async with websockets.connect(gw.websocket_url):
            await eventually(lambda: len(gw.hub.connections) == 1)
            (cid,) = gw.hub.connections
        await eventually(lambda: not gw.hub.connections)

        def lines() -> list[tuple[str, dict[str, object]]]:
            return [
                (r.getMessage(), r.__dict__["fields"])
                for r in caplog.records
                if r.name == "hubbub.access" and r.__dict__["fields"].get("connectionId") == cid
            ]

        await eventually(lambda: len(lines()) == 2)
    (connect, fields), (disconnect, closed) = lines()
    assert (connect, fields) == ("connect", {"connectionId": cid, "sourceIp": "127.0.0.1"})
    assert disconnect == "disconnect"
    assert closed == {"connectionId": cid, "code": 1000, "reason": ""}


async def test_nothing_is_logged_when_the_access_log_is_off(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hubbub.access")
    async with gateway(routes=routes()) as gw:
        async with websockets.connect(gw.websocket_url):
            await eventually(lambda: len(gw.hub.connections) == 1)
        await eventually(lambda: not gw.hub.connections)
    assert [r for r in caplog.records if r.name == "hubbub.access"] == []

"""The events a real client's connection produces, against real API Gateway captures.

The pure comparison is in tests/aws/test_captures.py; here the events come through the whole
gateway: a real socket, a real handshake, a close frame without a status code.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import websockets

from tests.aws.test_captures import capture, shape
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


def _by_route(app: ModuleType, route_key: str) -> dict[str, Any]:
    event: dict[str, Any] = next(
        e for e in app.EVENTS if e["requestContext"]["routeKey"] == route_key
    )
    return event


async def test_a_connections_events_have_the_shapes_of_the_captures(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    spec = routes(_connect="record", _disconnect="record", chat="record")
    async with gateway(routes=spec) as gw:
        # The Powertools captures' client sent no User-Agent and no Origin.
        ws = await websockets.connect(gw.websocket_url, user_agent_header=None)
        await ws.send('{"action": "chat", "message": "Hello from client"}')
        await eventually(lambda: len(app.EVENTS) >= 2)
        ws.transport.write(b"\x88\x80\x00\x00\x00\x00")  # a close frame without a status code
        await eventually(lambda: len(app.EVENTS) >= 3)
    connect = _by_route(app, "$connect")
    theirs = capture("powertools-websocket-connect.json")
    assert shape(connect) == shape(theirs)
    assert list(connect["headers"]) == list(theirs["headers"])
    assert connect["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert connect["headers"]["X-Forwarded-Port"] == str(gw.public.port if gw.public else 0)
    assert connect["headers"]["X-Forwarded-Proto"] == "http"
    assert shape(_by_route(app, "chat")) == shape(capture("powertools-websocket-message.json"))
    disconnect = _by_route(app, "$disconnect")
    theirs = capture("powertools-websocket-disconnect.json")
    assert shape(disconnect) == shape(theirs)
    assert disconnect["headers"] == {**theirs["headers"], "Host": gw.api_context.domain_name}
    assert (
        disconnect["requestContext"]["disconnectReason"]
        == (theirs["requestContext"]["disconnectReason"])
    )

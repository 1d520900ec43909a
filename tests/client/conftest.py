"""Client test fixtures: a real gateway (``gateway``), its handler module (``app``), and helpers
to drop connections from the server side."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway

HANDLERS = Path(__file__).parent / "handlers"

ROUTES: dict[str, Any] = {
    "$connect": {"handler": "app.connect"},
    "$default": {"handler": "app.echo", "route_response": True},
}

GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def app() -> ModuleType:
    """The handler module the gateway calls, with its records cleared."""
    module = sys.modules[load_handler("app.echo", HANDLERS).__module__]
    module.RECEIVED.clear()
    module.CONNECT_STATUSES.clear()
    module.CONNECTED.clear()
    return module


@pytest.fixture
def gateway(app: ModuleType) -> GatewayFactory:
    """``async with gateway(port=0, **raw) as gw``: a real gateway echoing every message.

    ``port`` pins the public listener, so a second gateway can take over the first one's port.
    """

    @contextlib.asynccontextmanager
    async def factory(port: int = 0, **raw: Any) -> AsyncIterator[Gateway]:
        config = {"routes": ROUTES, **raw}
        config["server"] = {**raw.get("server", {}), "port": port}
        async with run_gateway(config, base_dir=HANDLERS) as gw:
            yield gw

    return factory


def public_port(gw: Gateway) -> int:
    assert gw.public is not None
    return gw.public.port


def abort_all(gw: Gateway) -> int:
    """Drop every connection's TCP stream without a close frame (the client sees 1006)."""
    conns = list(gw.hub.connections.values())
    for conn in conns:
        conn.socket.abort()
    return len(conns)


class PeakConnections:
    """Records the largest number of server-side connections ever open at once.

    It wraps ``hub.add``, so it sees every connection the instant it is registered: an exact
    count, not a sample.
    """

    def __init__(self, gw: Gateway) -> None:
        self.peak = len(gw.hub.connections)
        self.added = 0
        hub = gw.hub
        original = hub.add

        def add(conn: Any) -> None:
            original(conn)
            self.added += 1
            self.peak = max(self.peak, len(hub.connections))

        hub.add = add  # type: ignore[method-assign]


class ScriptedServer:
    """A tiny non-hubbub WebSocket server (aiohttp) for close codes the gateway never sends.

    Connection *n* follows ``script[n]`` (the last entry repeats): ``"echo"`` echoes text,
    ``"close:CODE"`` closes with CODE right after the handshake, ``"close-after-first:CODE"``
    closes with CODE after echoing the first message, ``"silent"`` answers no ping (autoping off),
    and ``"http:STATUS"`` refuses the upgrade with that HTTP status.
    """

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.connections = 0  # upgrades and refusals, in order
        self.open = 0
        self.peak = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_get("/ws", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        step = self.script[min(self.connections, len(self.script) - 1)]
        self.connections += 1
        kind, _, arg = step.partition(":")
        if kind == "http":
            return web.Response(status=int(arg))
        ws = web.WebSocketResponse(autoping=kind != "silent")
        await ws.prepare(request)
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            if kind == "close":
                await ws.close(code=int(arg), message=b"scripted")
                return ws
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                    if kind == "close-after-first":
                        await ws.close(code=int(arg), message=b"scripted")
        finally:
            self.open -= 1
        return ws

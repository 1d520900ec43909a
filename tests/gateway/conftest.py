"""Gateway test fixtures: the handler module in handlers/app.py and a gateway factory."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hubbub.gateway.app import Gateway
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway

HANDLERS = Path(__file__).parent / "handlers"


@pytest.fixture
def app() -> ModuleType:
    """The loaded handler module (the same object the gateway calls), with a clean record."""
    module = sys.modules[load_handler("app.record", HANDLERS).__module__]
    module.EVENTS.clear()
    module.CONTEXTS.clear()
    module.CONNECT_RESULT.clear()
    module.CONNECT_RESULT.update({"statusCode": 200})
    return module


def routes(**spec: str | dict[str, Any]) -> dict[str, Any]:
    """routes(connect="record", echo={"handler": "echo", "route_response": True})."""
    out: dict[str, Any] = {}
    for name, value in spec.items():
        key = f"${name[1:]}" if name.startswith("_") else name
        out[key] = (
            {"handler": f"app.{value}"}
            if isinstance(value, str)
            else {**value, "handler": f"app.{value['handler']}"}
        )
    return out


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> GatewayFactory:
    """``async with gateway(routes=..., limits=...) as gw``: a real gateway on free ports."""

    @contextlib.asynccontextmanager
    async def factory(**raw: Any) -> AsyncIterator[Gateway]:
        async with run_gateway(raw, base_dir=HANDLERS) as gw:
            monkeypatch.setenv("WEBSOCKET_ENDPOINT", gw.management_url)
            yield gw

    return factory


@pytest.fixture
def aiohttp_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Public listeners without the lean transport (hubbub.gateway.lean_upgrade): for tests of
    aiohttp's path, which TLS, compression and PROXY protocol listeners still take."""
    monkeypatch.setenv("HUBBUB_LEAN_TRANSPORT", "0")


@pytest.fixture
def lean_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Public listeners with the lean transport (the default), whatever the environment says: the
    suite can run with HUBBUB_LEAN_TRANSPORT=0 to check aiohttp's path everywhere else."""
    monkeypatch.setenv("HUBBUB_LEAN_TRANSPORT", "1")

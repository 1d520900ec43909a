"""What a case runs against: the options, the fuzz app and its config, the ``Env`` describing an
in-process gateway (or the one at ``--url``), and the victim connections for management cases."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TARGETS = ("handshake", "frames", "management", "bodies", "config")
NETWORK_TARGETS = ("handshake", "frames", "management", "bodies")

APP = '''\
"""Handlers for bench/fuzz: an echo route, $default, whoami; nothing raises."""


async def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}


async def default(event, context):
    return {"statusCode": 200, "body": "D" + event["body"]}


async def whoami(event, context):
    return {"statusCode": 200, "body": "I" + event["requestContext"]["connectionId"]}


async def connect(event, context):
    return {"statusCode": 200}


async def disconnect(event, context):
    return {"statusCode": 200}
'''

MAX_FRAME = 32 * 1024
MAX_MESSAGE = 128 * 1024


def fuzz_config(handshake_timeout: float = 1.0) -> dict[str, Any]:
    """The gateway config the fuzzer runs against (AWS default limits, short handshake timeout)."""
    return {
        "routes": {
            "$connect": {"handler": "app.connect"},
            "$disconnect": {"handler": "app.disconnect"},
            "$default": {"handler": "app.default", "route_response": True},
            "echo": {"handler": "app.echo", "route_response": True},
            "whoami": {"handler": "app.whoami", "route_response": True},
        },
        "limits": {"handshake_timeout": handshake_timeout},
    }


def write_app(directory: Path, *, toml: bool = False) -> Path:
    """The fuzz app's handlers (and, with ``toml``, a hubbub.toml for ``hubbub serve``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(APP)
    if toml:
        lines = ["[limits]", "handshake_timeout = 1.0", "", "[routes]"]
        for key, spec in fuzz_config()["routes"].items():
            two_way = ", route_response = true" if spec.get("route_response") else ""
            lines.append(f'"{key}" = {{ handler = "{spec["handler"]}"{two_way} }}')
        (directory / "hubbub.toml").write_text("\n".join(lines) + "\n")
    return directory


@dataclass
class Env:
    host: str
    ws_port: int
    mgmt_port: int | None
    stage: str
    timeout: float
    handshake_timeout: float
    config_dir: Path
    selector: Any = None
    route_keys: frozenset[str] = frozenset({"$default", "echo", "whoami"})
    victims: list[str] = field(default_factory=list)
    websocket_url: str = ""
    management_url: str | None = None

    @property
    def host_header(self) -> bytes:
        return f"{self.host}:{self.ws_port}".encode()


@dataclass
class FuzzOptions:
    cases: int = 1000
    seed: int = 1
    targets: Sequence[str] = TARGETS
    concurrency: int = 32
    check_every: int = 2000
    timeout: float = 3.0
    handshake_timeout: float = 1.0
    settle: float = 10.0
    url: str | None = None
    management_url: str | None = None
    progress: bool = False


@contextlib.asynccontextmanager
async def fuzz_environment(options: FuzzOptions) -> AsyncIterator[tuple[Env, Any]]:
    """An in-process gateway (or the one at ``--url``) and the Env describing it."""
    with tempfile.TemporaryDirectory(prefix="hubbub-fuzz-") as tmp:
        directory = write_app(Path(tmp))
        if options.url:
            stage = urlsplit(options.url).path.strip("/") or "dev"
            yield _describe(options, directory, options.url, options.management_url, stage), None
            return
        from hubbub.testing import run_gateway

        config = fuzz_config(options.handshake_timeout)
        async with run_gateway(config, base_dir=directory) as gw:
            urls = (gw.websocket_url, gw.management_url)
            yield _describe(options, directory, *urls, gw.config.api.stage), gw


def _describe(
    options: FuzzOptions,
    directory: Path,
    websocket_url: str,
    management_url: str | None,
    stage: str,
) -> Env:
    """The Env of the gateway at these URLs."""
    from hubbub.aws.selection import compile_route_selection

    ws = urlsplit(websocket_url)
    mgmt = urlsplit(management_url) if management_url else None
    return Env(
        host=ws.hostname or "127.0.0.1",
        ws_port=ws.port or 80,
        mgmt_port=mgmt.port if mgmt else None,
        stage=stage,
        timeout=options.timeout,
        handshake_timeout=options.handshake_timeout,
        config_dir=directory,
        selector=compile_route_selection("$request.body.action"),
        websocket_url=websocket_url,
        management_url=management_url,
    )


class Victims:
    """A few well-behaved connections whose ids the management cases aim at."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.clients: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []

    async def open(self, count: int) -> None:
        from websockets.asyncio.client import connect

        for _ in range(count):
            ws = await connect(self.env.websocket_url, compression=None, proxy=None, max_size=None)
            await ws.send('{"action":"whoami"}')
            reply = str(await asyncio.wait_for(ws.recv(), 10))
            self.env.victims.append(reply[1:])
            self.clients.append(ws)
            self.readers.append(asyncio.create_task(self._drain(ws)))

    @staticmethod
    async def _drain(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async def close(self) -> None:
        for ws in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.clients.clear()
        self.readers.clear()
        self.env.victims.clear()

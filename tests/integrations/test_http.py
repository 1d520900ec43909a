"""HTTP integrations: the event is POSTed to a URL, the JSON reply is the Lambda result.

Most tests run a small aiohttp server in the test process as the integration (real sockets, the
real gateway, a real WebSocket client); the last one runs the Node.js example in
examples/node-http with the AWS SDK for JavaScript.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import web
from websockets.exceptions import InvalidStatus

from hubbub.errors import InvocationError
from hubbub.integrations.base import LambdaContext, LambdaFunction
from hubbub.integrations.http import MAX_REPLY_BYTES, HttpClient, HttpIntegration
from hubbub.testing import run_gateway
from tests.helpers import TIME_SCALE, eventually

ROOT = Path(__file__).resolve().parents[2]
NODE_EXAMPLE = ROOT / "examples" / "node-http"
INTERNAL_ERROR = re.compile(
    r'^\{"message": "Internal server error", "connectionId":"[A-Za-z0-9_=-]{16}", '
    r'"requestId":"[A-Za-z0-9_=-]{16}"\}$'
)

Reply = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


def _json(value: object, status: int = 200) -> web.Response:
    return web.json_response(value, status=status)


@dataclass
class Endpoint:
    """An HTTP integration in the test process. ``reply`` decides each answer."""

    url: str = ""
    requests: list[web.Request] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    reply: Reply | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def routes(self, *keys: str, **options: Any) -> dict[str, Any]:
        return {key: {"url": self.url, **options} for key in keys}


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()

    async def handle(request: web.Request) -> web.StreamResponse:
        event = await request.json()
        ep.requests.append(request)
        ep.events.append(event)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ep.peers.append(tuple(peer[:2]) if peer else ("", 0))
        if ep.reply is not None:
            return await ep.reply(event)
        return _json({"statusCode": 200})

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ep.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield ep
    finally:
        ep.release.set()  # let any handler that waits for the test finish
        await runner.cleanup()


def _route_key(event: dict[str, Any]) -> str:
    return str(event["requestContext"]["routeKey"])


# -- $connect ---------------------------------------------------------------------------------
async def test_connect_non_2xx_result_rejects_the_handshake_with_that_status(
    endpoint: Endpoint,
) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return _json({"statusCode": 403, "body": "no entry"})

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$connect")}) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"no entry"


async def test_connect_2xx_result_accepts_with_its_headers(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return _json({"statusCode": 200, "headers": {"X-Hello": "from http"}})

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$connect")}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            assert ws.response is not None
            assert ws.response.headers["X-Hello"] == "from http"
    assert _route_key(endpoint.events[0]) == "$connect"


@pytest.mark.parametrize("status", [200, 204])
async def test_connect_empty_reply_accepts(endpoint: Endpoint, status: int) -> None:
    # Like a Lambda that returns nothing.
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=status)

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$connect")}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.ping()


@pytest.mark.parametrize("status", [500, 404, 403])
async def test_connect_http_error_from_the_endpoint_rejects_with_502(
    endpoint: Endpoint, status: int
) -> None:
    # The endpoint itself failing is a handler failure, not a handler-chosen status.
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=status, text="stack trace here")

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$connect")}) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == 502


async def test_connect_to_an_unreachable_url_rejects_with_502() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    async with run_gateway({"routes": {"$connect": {"url": url}}}) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == 502


# -- messages ---------------------------------------------------------------------------------
async def test_two_way_route_sends_the_reply_body(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return _json({"statusCode": 200, "body": "echo: " + event["body"]})

    endpoint.reply = reply
    routes = endpoint.routes("echo", route_response=True)
    async with run_gateway({"routes": routes}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "echo"}')
            assert await _recv(ws) == 'echo: {"action": "echo"}'


async def test_one_way_route_sends_nothing_back(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        if "last" in event["body"]:
            return _json({"statusCode": 200, "body": "two-way"})
        return _json({"statusCode": 200, "body": "one-way: not sent"})

    endpoint.reply = reply
    routes = {**endpoint.routes("quiet"), **endpoint.routes("last", route_response=True)}
    async with run_gateway({"routes": routes}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "quiet"}')
            await eventually(lambda: endpoint.events, message="the one-way invocation")
            await ws.send('{"action": "last"}')
            assert await _recv(ws) == "two-way"  # the first frame: nothing came before it


async def test_endpoint_500_sends_internal_server_error_and_keeps_the_socket(
    endpoint: Endpoint,
) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        if "fail" in event["body"]:
            return web.Response(status=500, text="boom")
        return _json({"statusCode": 200, "body": "fine"})

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$default", route_response=True)}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "fail"}')
            assert INTERNAL_ERROR.match(await _recv(ws))
            await ws.send('{"action": "ok"}')
            assert await _recv(ws) == "fine"


async def test_non_json_reply_is_a_handler_failure(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$default", route_response=True)}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send("hello")
            assert INTERNAL_ERROR.match(await _recv(ws))


async def test_a_timeout_sends_internal_server_error(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        if "slow" in event["body"]:
            await endpoint.release.wait()  # longer than the route's timeout
        return _json({"statusCode": 200, "body": "fast"})

    endpoint.reply = reply
    routes = endpoint.routes("$default", route_response=True, timeout=0.2 * TIME_SCALE)
    async with run_gateway({"routes": routes}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            started = time.monotonic()
            await ws.send('{"action": "slow"}')
            assert INTERNAL_ERROR.match(await _recv(ws))
            assert time.monotonic() - started < 5 * TIME_SCALE
            await ws.send('{"action": "next"}')  # the pool still works after the cancel
            assert await _recv(ws) == "fast"


async def test_an_unreachable_url_sends_internal_server_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    async with run_gateway({"routes": {"$default": {"url": url}}}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send("hello")
            assert INTERNAL_ERROR.match(await _recv(ws))


async def test_disconnect_event_is_posted(endpoint: Endpoint) -> None:
    async with run_gateway({"routes": endpoint.routes("$connect", "$disconnect")}) as gw:
        async with websockets.connect(gw.websocket_url):
            pass
        await eventually(lambda: len(endpoint.events) == 2, message="$disconnect")
    disconnect = endpoint.events[1]
    assert _route_key(disconnect) == "$disconnect"
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    assert (
        disconnect["requestContext"]["connectionId"]
        == (endpoint.events[0]["requestContext"]["connectionId"])
    )


# -- the request hubbub sends -----------------------------------------------------------------
async def test_the_request_carries_the_event_and_lambda_runtime_headers(
    endpoint: Endpoint,
) -> None:
    routes = endpoint.routes("$default", timeout=7)
    async with run_gateway({"routes": routes}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            sent_at = time.time() * 1000
            await ws.send('{"action": "anything"}')
            await eventually(lambda: endpoint.events, message="the invocation")
    request, event = endpoint.requests[0], endpoint.events[0]
    assert request.method == "POST"
    assert request.content_type == "application/json"
    assert event["body"] == '{"action": "anything"}'
    assert _route_key(event) == "$default"
    # Lambda's invocation id (a UUID), as the runtime API gives it, not API Gateway's requestId.
    invocation_id = request.headers["Lambda-Runtime-Aws-Request-Id"]
    assert str(uuid.UUID(invocation_id)) == invocation_id != event["requestContext"]["requestId"]
    deadline = int(request.headers["Lambda-Runtime-Deadline-Ms"])
    assert sent_at + 5_000 < deadline < time.time() * 1000 + 7_000 + 1_000
    assert request.headers["Lambda-Runtime-Invoked-Function-Arn"].startswith("arn:aws:lambda:")
    assert request.headers["User-Agent"].startswith("hubbub/")


async def test_connections_are_kept_alive_between_invocations(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return _json({"statusCode": 200, "body": event["body"]})

    endpoint.reply = reply
    async with run_gateway({"routes": endpoint.routes("$default", route_response=True)}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for n in range(5):
                # One at a time: the reply frame arrives after the connection went back to
                # the pool, so the next POST can reuse it.
                await ws.send(f"message {n}")
                assert await _recv(ws) == f"message {n}"
    assert len(set(endpoint.peers)) == 1  # every POST went over the same pooled connection


# -- the integration object itself ------------------------------------------------------------
def _context() -> LambdaContext:
    return LambdaContext(LambdaFunction("fn", region="us-east-1", account_id="0"), 5)


async def test_integrations_can_share_one_client(endpoint: Endpoint) -> None:
    client = HttpClient()
    first = HttpIntegration("a", endpoint.url, client=client)
    second = HttpIntegration("b", endpoint.url, client=client)
    try:
        assert await first.invoke({"n": 1}, _context()) == {"statusCode": 200}
        await first.close()  # not the owner: the shared session stays open
        assert await second.invoke({"n": 2}, _context()) == {"statusCode": 200}
        assert len(set(endpoint.peers)) == 1
    finally:
        await client.close()


async def test_a_reply_over_the_lambda_limit_is_a_failure(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(endpoint.requests[-1])
        chunk = b" " * 65536
        for _ in range(MAX_REPLY_BYTES // len(chunk) + 2):
            await response.write(chunk)
        await response.write_eof()
        return response

    endpoint.reply = reply
    integration = HttpIntegration("big", endpoint.url)
    try:
        with pytest.raises(InvocationError, match="more than"):
            await integration.invoke({}, _context())
    finally:
        await integration.close()


async def test_a_redirect_is_not_followed(endpoint: Endpoint) -> None:
    async def reply(event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": endpoint.url})

    endpoint.reply = reply
    integration = HttpIntegration("moved", endpoint.url)
    try:
        with pytest.raises(InvocationError, match="HTTP 307"):
            await integration.invoke({}, _context())
    finally:
        await integration.close()
    assert len(endpoint.events) == 1


async def test_a_dropped_connection_is_a_failure() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request head, then hang up without a reply
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    integration = HttpIntegration("dropped", f"http://127.0.0.1:{port}/")
    try:
        with pytest.raises(InvocationError, match="failed"):
            await integration.invoke({}, _context())
    finally:
        await integration.close()
        server.close()
        await server.wait_closed()


# -- the Node.js example ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def node_example() -> Path:
    """examples/node-http with its node_modules installed (kept there, git-ignored)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Node.js 20+ is needed for the Node example)")
    installed = NODE_EXAMPLE / "node_modules" / "@aws-sdk" / "client-apigatewaymanagementapi"
    if not installed.is_dir():
        try:
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund"],
                cwd=NODE_EXAMPLE,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install in examples/node-http took more than 5 minutes")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            pytest.skip("npm install in examples/node-http failed: " + " | ".join(tail))
    return NODE_EXAMPLE


@contextlib.asynccontextmanager
async def _node_server(folder: Path, env: dict[str, str], log: Path) -> AsyncIterator[int]:
    """Start server.js on a free port; yield the port once it listens."""
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            "node",
            "server.js",
            cwd=folder,
            env={**os.environ, **env, "PORT": "0"},
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        assert proc.stdout is not None
        drain: asyncio.Task[bytes] | None = None
        try:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 15 * TIME_SCALE)
            except TimeoutError:
                pytest.fail(f"server.js did not start: {_text(log)}")
            match = re.search(rb"listening on http://[^:]+:(\d+)/", line)
            assert match, (line, _text(log))
            # Keep reading stdout so the server never blocks on a full pipe.
            drain = asyncio.create_task(proc.stdout.read())
            yield int(match[1])
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
            if drain is not None:
                await drain


@pytest.mark.node
async def test_node_example_broadcasts_to_every_client(node_example: Path, tmp_path: Path) -> None:
    config = tomllib.loads((node_example / "hubbub.toml").read_text())
    management_port = _closed_port()  # server.js must know the endpoint before hubbub starts
    env = {
        "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{management_port}/{config['api']['stage']}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        # The SDK's warning about future Node versions is noise here.
        "NODE_NO_WARNINGS": "1",
    }
    async with _node_server(node_example, env, tmp_path / "node.log") as port:
        for route in config["routes"].values():
            route["url"] = f"http://127.0.0.1:{port}/"
        config["server"]["port"] = 0
        config["management"]["port"] = management_port
        async with run_gateway(config, base_dir=node_example) as gw:
            assert gw.management_url == env["WEBSOCKET_ENDPOINT"]
            async with (
                websockets.connect(gw.websocket_url) as alice,
                websockets.connect(gw.websocket_url) as bob,
            ):
                await alice.send(json.dumps({"action": "sendMessage", "message": "hi all"}))
                got_alice = json.loads(await _recv(alice, 15))
                got_bob = json.loads(await _recv(bob, 15))
                assert got_alice == got_bob
                assert got_alice["action"] == "message"
                assert got_alice["message"] == "hi all"
                assert got_alice["from"] in gw.hub.connections


# -- helpers ----------------------------------------------------------------------------------
async def _recv(ws: websockets.ClientConnection, timeout: float = 5) -> str:
    return str(await asyncio.wait_for(ws.recv(), timeout * TIME_SCALE))


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

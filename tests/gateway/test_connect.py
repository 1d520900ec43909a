"""$connect: the handshake waits for the handler, and its result decides the HTTP answer
(docs/compatibility.md, "Handler results")."""

from __future__ import annotations

import asyncio
from types import ModuleType

import boto3
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hubbub.gateway.app import Gateway
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


async def test_connect_event_has_the_aws_fields(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        url = gw.websocket_url + "?token=abc&room=1&room=2"
        async with websockets.connect(url, additional_headers={"X-Custom-Case": "Yes"}):
            pass
    event = app.EVENTS[0]
    assert set(event) == {
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "requestContext",
        "isBase64Encoded",
    }
    assert event["headers"]["X-Custom-Case"] == "Yes"  # header case kept
    assert event["queryStringParameters"] == {"token": "abc", "room": "2"}
    assert event["multiValueQueryStringParameters"]["room"] == ["1", "2"]
    rc = event["requestContext"]
    assert rc["routeKey"] == "$connect"
    assert rc["eventType"] == "CONNECT"
    assert rc["stage"] == "dev"
    assert rc["identity"]["sourceIp"] == "127.0.0.1"
    assert rc["identity"]["userAgent"].startswith("Python/")
    assert len(rc["connectionId"]) == 16
    assert rc["connectionId"].endswith("=")
    assert "messageId" not in rc


async def test_connect_without_query_has_no_query_fields(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url):
            pass
    assert "queryStringParameters" not in app.EVENTS[0]


@pytest.mark.parametrize("status", [301, 401, 403, 501])
async def test_non_2xx_connect_rejects_with_that_status(
    gateway: GatewayFactory, app: ModuleType, status: int
) -> None:
    app.CONNECT_RESULT["statusCode"] = status
    async with gateway(routes=routes(_connect="record")) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == status


async def test_connect_handler_error_rejects_with_502(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="boom")) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == 502


async def test_connect_invalid_result_rejects_with_502(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="bad_result")) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == 502


async def test_no_connect_route_accepts(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(echo={"handler": "echo", "route_response": True})) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "echo"}')
            assert await ws.recv() == '{"action": "echo"}'


async def test_connect_headers_are_copied_into_the_101(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_RESULT["headers"] = {"X-Hello": "world"}
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            assert ws.response.headers["X-Hello"] == "world"


async def test_subprotocol_is_selected_only_when_the_handler_returns_it(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        # Not echoed by the handler: no protocol in the 101 (AWS never picks one by itself).
        async with websockets.connect(gw.websocket_url, subprotocols=["chat"]) as ws:
            assert ws.subprotocol is None
            assert "Sec-WebSocket-Protocol" not in ws.response.headers
        app.CONNECT_RESULT["headers"] = {"Sec-WebSocket-Protocol": "chat"}
        async with websockets.connect(gw.websocket_url, subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"


async def test_connection_is_gone_while_connect_runs(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="post_self")) as gw:
        async with websockets.connect(gw.websocket_url):
            pass
    await eventually(lambda: app.CONTEXTS, message="$connect handler")
    assert app.CONTEXTS[0]["route"] == "$connect"  # its post_to_connection got GoneException


async def test_connection_exists_after_connect(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url):
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = boto3.client("apigatewaymanagementapi", endpoint_url=gw.management_url)
            info = await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            assert info["Identity"]["SourceIp"] == "127.0.0.1"


async def test_plain_http_get_on_the_stage_answers_426(gateway: GatewayFactory) -> None:
    import aiohttp

    async with gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(gw.websocket_url.replace("ws://", "http://")) as resp:
            assert resp.status == 426


async def _upgrade_with_version(
    gw: Gateway, version: bytes | None, key: bytes = b"dGhlIHNhbXBsZSBub25jZQ=="
) -> tuple[bytes, list[bytes]]:
    """Status and header lines of the answer to a raw upgrade request with this version."""
    assert gw.public is not None
    reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
    version_line = b"Sec-WebSocket-Version: " + version + b"\r\n" if version is not None else b""
    writer.write(
        b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + version_line
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    status_line, *headers = head.rstrip(b"\r\n").split(b"\r\n")
    return status_line.split()[1], [h.lower() for h in headers]


@pytest.mark.parametrize("version", [b"8", b"12", b"14", b"8, 13", b""])
async def test_unsupported_version_answers_426_naming_13_before_connect(
    gateway: GatewayFactory, app: ModuleType, version: bytes
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        status, headers = await _upgrade_with_version(gw, version)
    assert status == b"426"  # RFC 6455 §4.2.2, so the client can retry with version 13 (§4.4)
    assert b"sec-websocket-version: 13" in headers
    assert b"upgrade: websocket" in headers
    assert app.EVENTS == []


async def test_missing_version_is_a_bad_request_before_connect(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        missing, _ = await _upgrade_with_version(gw, None)
        valid, _ = await _upgrade_with_version(gw, b"13")
    assert missing == b"400"  # a malformed handshake (RFC 6455 §4.2.1)
    assert valid == b"101"
    assert len(app.EVENTS) == 1  # only the valid one reached $connect


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"dGhlIHNhbXBsZSBub25jZQ",  # no padding
        b"dGhlIHNhbXBsZSBub25jZ===",  # too much
        b"dGhl IHNhbXBsZSBub25jZQ==",  # not base64
        b"dGhlIHNhbXBsZSBub25jZQ==x",
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # 20 bytes
        "d\u00e9hlIHNhbXBsZSBub25jZQ==".encode(),  # not ASCII
    ],
)
async def test_a_malformed_key_is_a_bad_request_before_connect(
    gateway: GatewayFactory, app: ModuleType, key: bytes
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        status, _ = await _upgrade_with_version(gw, b"13", key)
    assert status == b"400"  # RFC 6455 §4.2.1: a 16-byte nonce in base64
    assert app.EVENTS == []


async def test_the_registry_keeps_the_host_the_client_sent(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    # Taken from the upgrade request itself (Lifecycle.run's host): a reaping node's
    # $disconnect carries it as its Host header.
    async with gateway(routes=routes(_connect="record")) as gw:
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nhost: chat.example.test:8443\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        cid = app.EVENTS[0]["requestContext"]["connectionId"]
        record = await gw.store.registry.get(cid)
        assert record is not None
        assert record.host == "chat.example.test:8443"
        writer.close()


async def test_the_handshake_headers_it_reads_match_in_any_case_and_take_the_first_value(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    # Lifecycle finds User-Agent, Host and Sec-WebSocket-Protocol in one pass over the request
    # (find_headers): each in the case the client wrote it, the first of repeated values.
    async with gateway(routes=routes(_connect="record")) as gw:
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nsec-websocket-PROTOCOL: hubbub.v1, chat\r\n"
            b"uSeR-aGeNt: odd-case-agent/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Protocol: chat\r\nHOST: chat.example.test\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"\r\nSec-WebSocket-Protocol: hubbub.v1\r\n" in head  # recovery: opted in
        assert b'"hubbub":"session"' in await asyncio.wait_for(reader.read(4096), 5)
        rc = app.EVENTS[0]["requestContext"]
        assert rc["identity"]["userAgent"] == "odd-case-agent/1.0"
        record = await gw.store.registry.get(rc["connectionId"])
        assert record is not None
        assert record.host == "chat.example.test"
        writer.close()
        # A second Sec-WebSocket-Protocol header naming hubbub.v1 does not opt in: the first
        # one counts, as for aiohttp's own subprotocol choice.
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: chat\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-protocol: hubbub.v1\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"hubbub.v1" not in head
        assert app.EVENTS[-1]["requestContext"]["identity"].get("userAgent") is None
        writer.close()


async def test_connect_event_headers_sorted_with_the_gateway_added_ones_on_a_real_socket(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    # gateway_headers: the client's own X-Forwarded-Port (any case) and a repeated header stand,
    # its X-Forwarded-For gets the peer appended, the missing ones are added; sorted by name
    # case-insensitively, repeats in the client's order; Upgrade/Connection not in the event.
    async with gateway(routes=routes(_connect="record")) as gw:
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: h.example\r\nx-forwarded-PORT: 8443\r\nB-Two: 2\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\na-one: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"A-One: y\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(
            b"HTTP/1.1 101"
        )
        event = app.EVENTS[0]
        writer.close()
    trace = event["headers"]["X-Amzn-Trace-Id"]
    assert trace.startswith("Root=1-")
    assert list(event["headers"].items()) == [
        ("a-one", "x"),
        ("A-One", "y"),
        ("B-Two", "2"),
        ("Host", "h.example"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("X-Amzn-Trace-Id", trace),
        ("X-Forwarded-For", "6.6.6.6, 127.0.0.1"),
        ("x-forwarded-PORT", "8443"),
        ("X-Forwarded-Proto", "http"),
    ]
    assert event["multiValueHeaders"]["X-Forwarded-For"] == ["6.6.6.6, 127.0.0.1"]


_ODD_UPGRADE = (
    b"GET /dev?a=1&a=2 HTTP/1.1\r\nHost: h.example\r\nx-forwarded-for: 6.6.6.6\r\n"
    b"X-Forwarded-Proto: https\r\nX-Amzn-Trace-Id: Root=1-mine\r\nCookie: a=1\r\nCookie: b=2\r\n"
    b"cookie: c=3\r\nX-Latin: caf\xe9\r\nUpgrade: websocket\r\nconnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_connect_event_headers_are_the_same_on_both_upgrade_paths(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    # hubbub's own path (a connection's first request) and aiohttp's (an upgrade after another
    # request on the connection) give the same headers: repeats and case kept, the client's
    # forwarded headers and trace id kept (X-Forwarded-For with the peer appended), latin-1
    # values as sent, Upgrade/Connection left out.
    async with gateway(routes=routes(_connect="record")) as gw:
        for first in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
            if first:
                writer.write(first)
                health = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(health.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            writer.write(_ODD_UPGRADE)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101")
            writer.close()
    own, aiohttps = app.EVENTS
    expected = [
        ("Cookie", "b=2"),
        ("cookie", "c=3"),
        ("Host", "h.example"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("X-Amzn-Trace-Id", "Root=1-mine"),
        ("x-forwarded-for", "6.6.6.6, 127.0.0.1"),
        ("X-Forwarded-Port", str(gw.public.port)),
        ("X-Forwarded-Proto", "https"),
        ("X-Latin", "caf\xe9"),
    ]
    for event in (own, aiohttps):
        assert list(event["headers"].items()) == expected
        assert event["multiValueHeaders"]["Cookie"] == ["a=1", "b=2"]
        assert event["multiValueHeaders"]["cookie"] == ["c=3"]
        assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert own["multiValueHeaders"] == aiohttps["multiValueHeaders"]

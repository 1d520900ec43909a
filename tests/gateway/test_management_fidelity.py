"""The management API's answers compared with API Gateway's: what a post of any bytes puts on the
wire, throttling, and the bodies and headers of error responses. Real sockets, real boto3."""

from __future__ import annotations

import asyncio
import json
from types import ModuleType
from typing import Any

import aiohttp
import boto3
import botocore.config
import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from hubbub.gateway.app import Gateway
from hubbub.wire.frames import frame_message, frame_text
from tests.gateway.conftest import GatewayFactory, routes

NOT_UTF8 = b"\x00\xff\xfe\x80"
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


def _client(url: str, config: botocore.config.Config | None = None) -> Any:
    return boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


async def _offline(gw: Gateway) -> None:
    """Close the management listeners: from now on only the in-process path can answer."""
    for listener in (gw.management, gw.management_tls):
        if listener is not None:
            await listener.stop_accepting()


# -- item: bytes that are not UTF-8 never travel in a text frame ------------------------------
@pytest.mark.parametrize("in_process", [False, True])
async def test_bytes_that_are_not_utf8_arrive_in_a_binary_frame(
    gateway: GatewayFactory, app: ModuleType, in_process: bool
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            if in_process:
                await _offline(gw)
            client = _client(gw.management_url)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=NOT_UTF8)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data="text é")
            # A text frame holding these bytes would make the client fail the connection (1007).
            assert await asyncio.wait_for(ws.recv(), 10) == NOT_UTF8
            assert await asyncio.wait_for(ws.recv(), 10) == "text é"
            info = await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            assert info["ResponseMetadata"]["HTTPStatusCode"] == 200


async def test_a_handler_posting_bytes_through_boto3_sends_a_binary_frame(
    gateway: GatewayFactory,
) -> None:
    raw = {"routes": {"raw": {"handler": "boto_app.post_raw"}}}
    async with gateway(**raw) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(json.dumps({"action": "raw", "hex": NOT_UTF8.hex()}))
            assert await asyncio.wait_for(ws.recv(), 10) == NOT_UTF8
            assert await asyncio.wait_for(ws.recv(), 10) == "after"


async def test_room_sends_of_bytes_that_are_not_utf8_are_binary_too(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            await gw.rooms.join("lobby", cid)
            assert await gw.rooms.send("lobby", NOT_UTF8) == 1
            assert await gw.broadcast(NOT_UTF8) == 1
            assert await asyncio.wait_for(ws.recv(), 10) == NOT_UTF8
            assert await asyncio.wait_for(ws.recv(), 10) == NOT_UTF8


async def test_compressed_connections_get_binary_frames_for_bytes_that_are_not_utf8(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(server={"compression": True}, routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url, compression="deflate") as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            await gw.connections.post(cid, NOT_UTF8)
            await gw.connections.post(cid, "é")
            assert await asyncio.wait_for(ws.recv(), 10) == NOT_UTF8
            assert await asyncio.wait_for(ws.recv(), 10) == "é"


async def test_empty_data_arrives_as_an_empty_text_message(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = _client(gw.management_url)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"")
            assert await asyncio.wait_for(ws.recv(), 10) == ""


# -- item: 429 LimitExceededException ---------------------------------------------------------
LIMITED = {"rate_limit": 0.001, "burst": 2}


@pytest.mark.parametrize("in_process", [False, True])
async def test_management_calls_over_the_rate_raise_limit_exceeded(
    gateway: GatewayFactory, app: ModuleType, in_process: bool
) -> None:
    async with gateway(management=LIMITED, routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            if in_process:
                await _offline(gw)
            client = _client(gw.management_url, NO_RETRIES)
            for _ in range(2):  # the burst
                await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"ok")
            with pytest.raises(client.exceptions.LimitExceededException) as info:
                await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"no")
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            assert info.value.response["Error"]["Message"] == "Too Many Requests"
            assert [await ws.recv(), await ws.recv()] == ["ok", "ok"]


async def test_boto3_retries_a_throttled_call(gateway: GatewayFactory, app: ModuleType) -> None:
    # Throttling errors are retried by boto3; each attempt is one more request on the bucket,
    # so all of them are refused.
    async with gateway(management=LIMITED, routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url):
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            retrying = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 3})
            client = _client(gw.management_url, retrying)
            attempts: list[int] = []
            client.meta.events.register(
                "before-send.apigatewaymanagementapi", lambda **_: attempts.append(1)
            )
            for _ in range(2):
                await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            attempts.clear()
            with pytest.raises(client.exceptions.LimitExceededException) as info:
                await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 2
            assert len(attempts) == 3


async def test_no_rate_limit_by_default(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url):
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = _client(gw.management_url, NO_RETRIES)
            for _ in range(30):
                await asyncio.to_thread(client.get_connection, ConnectionId=cid)


# -- item: error responses shaped as API Gateway's --------------------------------------------
async def _raw(method: str, url: str, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data) as resp:
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize(
    ("request_line", "status", "error_type", "body"),
    [
        # An empty body: the Java SDK reports message null, the PHP SDK cannot parse it as JSON.
        (("POST", "/dev/@connections/R0oXAdfD0kwCH6w%3D"), 410, "GoneException", b""),
        (("GET", "/dev/@connections/R0oXAdfD0kwCH6w%3D"), 410, "GoneException", b""),
        (("DELETE", "/dev/@connections/R0oXAdfD0kwCH6w%3D"), 410, "GoneException", b""),
        (("GET", "/prod/@connections/x"), 403, "ForbiddenException", None),
        (("GET", "/dev/nothing-here"), 404, "NotFoundException", None),
    ],
)
async def test_error_responses_carry_the_type_header_and_an_api_gateway_body(
    gateway: GatewayFactory,
    request_line: tuple[str, str],
    status: int,
    error_type: str,
    body: bytes | None,
) -> None:
    method, path = request_line
    async with gateway() as gw:
        got_status, headers, got_body = await _raw(
            method, gw.management_url.rsplit("/", 1)[0] + path
        )
    assert got_status == status
    assert headers["x-amzn-ErrorType"] == error_type
    assert headers["x-amzn-RequestId"]
    assert headers["Content-Type"] == "application/json"
    if body is not None:
        assert got_body == body
    else:
        assert got_body.startswith(b'{"message":"')
        assert got_body.endswith(b'"}')


async def test_payload_too_large_and_throttled_bodies(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(
        management={"rate_limit": 0.001, "burst": 2}, routes=routes(_connect="record")
    ) as gw:
        async with websockets.connect(gw.websocket_url):
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            url = f"{gw.management_url}/@connections/{cid}"
            # Throttling comes first, as on AWS: the refused post takes a token too.
            status, headers, body = await _raw("POST", url, b"x" * (128 * 1024 + 1))
            assert (status, headers["x-amzn-ErrorType"]) == (413, "PayloadTooLargeException")
            assert headers["x-amzn-RequestId"]
            assert body.startswith(b'{"message":"')
            assert (await _raw("POST", url, b"ok"))[0] == 200
            status, headers, body = await _raw("POST", url, b"no")
            assert (status, headers["x-amzn-ErrorType"]) == (429, "LimitExceededException")
            assert body == b'{"message":"Too Many Requests"}'


@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_frame_message_is_text_exactly_for_utf8(payload: bytes) -> None:
    frame = frame_message(payload)
    try:
        payload.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    assert frame[0] == (0x81 if utf8 else 0x82)  # FIN + text / binary
    assert frame.endswith(payload)
    assert frame_text(payload)[len(frame) - len(payload) :] == payload

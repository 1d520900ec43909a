"""@connections through the real boto3 client and raw HTTP (docs/management-api.md)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import ModuleType

import aiohttp
import boto3
import pytest
import websockets

from tests.gateway.conftest import GatewayFactory, routes


def _client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client("apigatewaymanagementapi", endpoint_url=url, region_name="us-east-1")


async def test_post_get_delete_with_boto3(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url, user_agent_header="ua/1") as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = _client(gw.management_url)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"bytes")
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data="text é")
            assert await ws.recv() == "bytes"
            assert await ws.recv() == "text é"
            info = await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            assert isinstance(info["ConnectedAt"], datetime)
            assert isinstance(info["LastActiveAt"], datetime)
            assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ua/1"}
            response = await asyncio.to_thread(client.delete_connection, ConnectionId=cid)
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("operation", ["post_to_connection", "get_connection", "delete_connection"])
async def test_unknown_connection_raises_gone_exception(
    gateway: GatewayFactory, operation: str
) -> None:
    async with gateway() as gw:
        client = _client(gw.management_url)
        kwargs = {"ConnectionId": "R0oXAdfD0kwCH6w="}
        if operation == "post_to_connection":
            kwargs["Data"] = b"x"
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(getattr(client, operation), **kwargs)


async def test_post_over_128kb_raises_payload_too_large(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = _client(gw.management_url)
            with pytest.raises(client.exceptions.PayloadTooLargeException):
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId=cid, Data=b"x" * (128 * 1024 + 1)
                )
            exact = b"y" * (128 * 1024)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=exact)
            assert await ws.recv() == exact.decode()


async def test_percent_encoded_at_sign_and_id_are_accepted(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw, aiohttp.ClientSession() as http:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            encoded = cid.replace("=", "%3D")
            url = f"{gw.management_url}/%40connections/{encoded}"
            async with http.post(aiohttp.client.URL(url, encoded=True), data=b"raw") as resp:
                assert resp.status == 200
            assert await ws.recv() == "raw"


async def test_wrong_stage_is_forbidden(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        client = _client(gw.management_url.rsplit("/", 1)[0] + "/prod")
        with pytest.raises(client.exceptions.ForbiddenException):
            await asyncio.to_thread(client.get_connection, ConnectionId="abc=")


async def test_errors_carry_amzn_headers(gateway: GatewayFactory) -> None:
    async with gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.management_url}/@connections/nope") as resp:
            assert resp.status == 410
            assert resp.headers["x-amzn-ErrorType"] == "GoneException"
            assert resp.headers["x-amzn-RequestId"]
        async with http.get(f"{gw.management_url}/@nothing") as resp:
            assert resp.status == 404
        async with http.patch(f"{gw.management_url}/@connections/nope") as resp:
            assert resp.status == 405


async def test_health_endpoint(gateway: GatewayFactory) -> None:
    async with gateway() as gw, aiohttp.ClientSession() as http:
        base = gw.management_url.rsplit("/", 1)[0]
        async with http.get(f"{base}/health") as resp:
            body = await resp.json()
    assert body["status"] == "ok"
    assert body["connections"] == 0

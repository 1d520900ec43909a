"""Web pages cannot use the management API; SDKs still can (issue 17, item 5).

The attacks, as a browser would send them, over real sockets: a cross-site ``text/plain`` POST to
``@broadcast`` (no CORS preflight for it), and DNS rebinding (a page whose own name now points at
127.0.0.1 lists and deletes connections; the browser sends its name in ``Host``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import websockets

from hubbub.gateway.app import Gateway
from hubbub.gateway.browser_guard import BrowserGuard, split_host
from hubbub.testing import run_gateway
from hubbub.wire.http import HttpRequest
from tests.gateway.conftest import HANDLERS
from tests.helpers import eventually
from tests.integrations.test_http import node_example  # noqa: F401  (a fixture)

NO_TLS: dict[str, Any] = {"tls": False}


async def _request(
    method: str, url: str, *, headers: dict[str, str] | None = None, data: bytes = b""
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, data=data) as resp,
    ):
        body = await resp.json(content_type=None) if await resp.read() else {}
        return resp.status, body


async def _connection(gw: Gateway) -> tuple[websockets.ClientConnection, str]:
    ws = await websockets.connect(gw.websocket_url)
    await eventually(lambda: gw.hub.connections)
    (cid,) = gw.hub.connections
    return ws, cid


async def test_a_cross_site_post_to_broadcast_is_refused() -> None:
    async with run_gateway({"management": NO_TLS}, base_dir=HANDLERS) as gw:
        ws, _ = await _connection(gw)
        status, body = await _request(
            "POST",
            f"{gw.management_url}/@broadcast",
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
            data=b"pwned",
        )
        assert status == 403
        assert "allowed_origins" in body["message"]
        # The SDK's way (no Origin) still broadcasts, and it is the first thing the client gets.
        status, body = await _request("POST", f"{gw.management_url}/@broadcast", data=b"legit")
        assert (status, body) == (200, {"delivered": 1})
        assert await asyncio.wait_for(ws.recv(), 5) == "legit"
        await ws.close()


async def test_a_dns_rebinding_host_is_refused() -> None:
    async with run_gateway({"management": NO_TLS}, base_dir=HANDLERS) as gw:
        ws, cid = await _connection(gw)
        assert gw.management is not None
        rebound = {"Host": f"rebind.evil.example:{gw.management.port}"}
        base = gw.management_url
        for method, url in (
            ("GET", f"{base}/@connections"),
            ("GET", f"{base}/@connections/{cid}"),
            ("DELETE", f"{base}/@connections/{cid}"),
        ):
            status, body = await _request(method, url, headers=rebound)
            assert status == 403, (method, url)
            assert "allowed_hosts" in body["message"]
        assert cid in gw.hub.connections  # not deleted
        status, body = await _request("GET", f"{base}/@connections")
        assert (status, body["connections"]) == (200, [cid])
        await ws.close()


async def test_the_listeners_own_names_are_accepted() -> None:
    config = {"management": NO_TLS, "api": {"domain_name": "ws.example.test"}}
    async with run_gateway(config, base_dir=HANDLERS) as gw:
        assert gw.management is not None
        port = gw.management.port
        url = f"{gw.management_url}/@connections"
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"LOCALHOST:{port}",
            f"[::1]:{port}",
            "localhost",  # no port: some tools leave it out; a browser never sends loopback
            "ws.example.test",  # https://{domainName}/{stage}, e.g. through a proxy
            "ws.example.test:443",
        ):
            status, _ = await _request("GET", url, headers={"Host": host})
            assert status == 200, host
        for host in (
            f"localhost:{port + 1}",
            "ws.example.test.evil.example",
            "127.0.0.2",
            f"rebind.evil.example:{port}",
        ):
            status, _ = await _request("GET", url, headers={"Host": host})
            assert status == 403, host


async def test_allowed_hosts_and_origins_are_configurable() -> None:
    management = {
        **NO_TLS,
        "allowed_hosts": ["gateway.internal", "proxy.internal:9000"],
        "allowed_origins": ["https://admin.example"],
    }
    async with run_gateway({"management": management}, base_dir=HANDLERS) as gw:
        url = f"{gw.management_url}/@connections"
        cases = [
            ({"Host": "gateway.internal:1234"}, 200),
            ({"Host": "proxy.internal:9000"}, 200),
            ({"Host": "proxy.internal:9001"}, 403),
            ({"Origin": "https://admin.example"}, 200),
            ({"Origin": "https://admin.example.evil"}, 403),
            ({"Origin": "null"}, 403),
        ]
        for headers, expected in cases:
            status, _ = await _request("GET", url, headers=headers)
            assert status == expected, headers


def _boto3(url: str, **kwargs: Any) -> Any:
    return boto3.client(
        "apigatewaymanagementapi", endpoint_url=url, region_name="us-east-1", **kwargs
    )


async def test_boto3_keeps_working_over_http_and_https(tmp_path: Path) -> None:
    # in_process = false: boto3 in this process goes over the network, as from another one.
    management = {"in_process": False, "tls_port": 0, "state_dir": str(tmp_path / "state")}
    async with run_gateway({"management": management}, base_dir=HANDLERS) as gw:
        assert gw.tls is not None
        assert gw.management_https_url is not None
        ws, cid = await _connection(gw)
        for client in (
            _boto3(gw.management_url),
            _boto3(gw.management_https_url, verify=str(gw.tls.ca_cert)),
        ):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            info = await asyncio.to_thread(client.get_connection, ConnectionId=cid)
            assert info["Identity"]["SourceIp"] == "127.0.0.1"
        await ws.close()


_JS_POST = """
import { ApiGatewayManagementApiClient, PostToConnectionCommand }
  from "@aws-sdk/client-apigatewaymanagementapi";
const [endpoint, connectionId, data] = process.argv.slice(2);
const client = new ApiGatewayManagementApiClient({ endpoint, region: "us-east-1" });
await client.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: data }));
"""


@pytest.mark.node
async def test_the_javascript_sdk_keeps_working_over_http_and_https(
    node_example: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    script = node_example / f"post-{tmp_path.name}.mjs"  # next to its node_modules
    script.write_text(_JS_POST)
    management = {"in_process": False, "tls_port": 0, "state_dir": str(tmp_path / "state")}
    try:
        async with run_gateway({"management": management}, base_dir=HANDLERS) as gw:
            assert gw.tls is not None
            assert gw.management_https_url is not None
            ws, cid = await _connection(gw)
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "NODE_EXTRA_CA_CERTS": str(gw.tls.ca_cert),
                "NODE_NO_WARNINGS": "1",
            }
            for url in (gw.management_url, gw.management_https_url):
                node = await asyncio.create_subprocess_exec(
                    "node",
                    str(script),
                    url,
                    cid,
                    f"via {url[:5]}",
                    env=env,
                    stderr=asyncio.subprocess.PIPE,
                )
                _, stderr = await asyncio.wait_for(node.communicate(), 30)
                assert node.returncode == 0, stderr.decode()
                assert await asyncio.wait_for(ws.recv(), 5) == f"via {url[:5]}"
            await ws.close()
    finally:
        script.unlink()


async def test_boto3_in_process_is_not_checked() -> None:
    async with run_gateway({"management": NO_TLS}, base_dir=HANDLERS) as gw:
        ws, cid = await _connection(gw)
        client = _boto3(gw.management_url)  # diverted in-process (management.in_process)
        await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"in-process")
        assert await asyncio.wait_for(ws.recv(), 5) == "in-process"
        await ws.close()


# -- the pure parts ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:8081", ("localhost", 8081)),
        ("LocalHost", ("localhost", None)),
        ("[::1]:8081", ("[::1]", 8081)),
        ("[::1]", ("[::1]", None)),
        ("ws.example.test:not-a-port", ("ws.example.test", None)),
    ],
)
def test_split_host(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host(value) == expected


def _req(**headers: str) -> HttpRequest:
    return HttpRequest("GET", "/dev/@connections", "", tuple(headers.items()), b"", "127.0.0.1")


def test_without_a_host_check_only_the_origin_counts() -> None:
    # auth = "sigv4": the signature covers Host; a page still may not call.
    guard = BrowserGuard(check_host=False)
    assert guard.refusal(_req(Host="anything.example")) is None
    refused = guard.refusal(_req(Host="anything.example", Origin="https://evil.example"))
    assert refused is not None
    assert refused.status == 403
    assert refused.headers["x-amzn-ErrorType"] == "ForbiddenException"


def test_a_request_without_host_is_not_a_browser() -> None:
    guard = BrowserGuard(check_host=True)
    guard.add_listener("http", "127.0.0.1", 8081)
    assert guard.refusal(_req()) is None
    assert guard.refusal(_req(Host="127.0.0.1:8081")) is None
    assert guard.refusal(_req(Host="evil.example:8081")) is not None


def test_a_listener_on_the_default_port_accepts_its_name_without_port() -> None:
    guard = BrowserGuard(check_host=True)
    guard.add_listener("https", "127.0.0.1", 443)
    assert guard.refusal(_req(Host="localhost")) is None
    assert guard.refusal(_req(Host="localhost:443")) is None

"""[server] proxy_protocol: the PROXY header (v1 and v2) from trusted proxies, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import struct
from pathlib import Path
from types import ModuleType

import pytest

from hubbub.config import build_config
from hubbub.errors import ConfigError
from hubbub.gateway.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


def _v2(source: str, port: int, *, command: int = 1) -> bytes:
    ip = ipaddress.ip_address(source)
    family = 0x11 if ip.version == 4 else 0x21
    dest = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    block = ip.packed + dest.packed + struct.pack("!HH", port, 8080)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def test_v1_lines() -> None:
    line = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\n"
    header = parse(line + b"GET /dev HTTP/1.1\r\n")
    assert header is not None
    assert (header.source, header.source_port, header.length) == ("203.0.113.7", 51234, len(line))
    six = parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n")
    assert six is not None
    assert six.source == "2001:db8::1"
    unknown = parse(b"PROXY UNKNOWN\r\n")
    assert unknown is not None
    assert unknown.source is None
    assert parse(b"PROXY TCP4 203.0.11") is None  # more bytes needed


def test_v2_headers() -> None:
    header = parse(_v2("198.51.100.9", 4444) + b"GET")
    assert header is not None
    assert (header.source, header.source_port) == ("198.51.100.9", 4444)
    assert header.length == len(_v2("198.51.100.9", 4444))
    six = parse(_v2("2001:db8::7", 5))
    assert six is not None
    assert six.source == "2001:db8::7"
    local = parse(_v2("198.51.100.9", 1, command=0))  # a health check from the proxy itself
    assert local is not None
    assert local.source is None
    assert parse(_v2("198.51.100.9", 1)[:20]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET /dev HTTP/1.1\r\n",
        b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 2\r\n",
        b"PROXY " + b"x" * 200,
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,  # version 3
        b"\r\n\r\nnope, not the signature",
    ],
)
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


def test_proxy_protocol_needs_trusted_proxies(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.proxy_protocol: needs server\.trusted"):
        build_config({"server": {"proxy_protocol": True}}, base_dir=tmp_path)


_UPGRADE = (
    "GET /dev HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
)


async def _handshake(port: int, prefix: bytes, source: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    # The header and the request in separate writes: the header may arrive split from the rest.
    writer.write(prefix[:7])
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.write(prefix[7:] + _UPGRADE.format(key=key).encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return status


async def test_the_header_names_the_client(gateway: GatewayFactory, app: ModuleType) -> None:
    config = {
        "routes": routes(_connect="record"),
        "server": {"trusted_proxies": ["127.0.0.1"], "proxy_protocol": True},
    }
    async with gateway(**config) as gw:
        assert gw.public is not None
        port = gw.public.port
        v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\n"
        assert (await _handshake(port, v1)).startswith(b"HTTP/1.1 101")
        assert (await _handshake(port, _v2("2001:db8::5", 1))).startswith(b"HTTP/1.1 101")
        await eventually(lambda: len(app.EVENTS) == 2)
        sources = [e["requestContext"]["identity"]["sourceIp"] for e in app.EVENTS]
        assert sources == ["203.0.113.7", "2001:db8::5"]
        # A trusted peer that sends no header is refused rather than misattributed.
        assert (await _handshake(port, b"")).startswith(b"HTTP/1.1 400")
        # Anyone else is not asked for one: a PROXY line from them is not believed.
        refused = await _handshake(port, v1, source="127.0.0.9")
        assert b" 400 " in refused  # aiohttp's own answer to a request line it can't parse
        assert len(app.EVENTS) == 2

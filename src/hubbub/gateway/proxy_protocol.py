"""The PROXY protocol header (HAProxy's spec, versions 1 and 2): pure parsing, no I/O.

A load balancer that speaks it (HAProxy, AWS NLB, nginx's stream module) sends one header before
the client's bytes, naming the client's address. ``[server] proxy_protocol = true`` reads it from
the peers in ``[server] trusted_proxies`` (hubbub.gateway.http_limits); the address becomes the
connection's source as ``X-Forwarded-For`` would (hubbub.gateway.proxies).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's longest v1 line, CRLF included
V2_MAX = 16 + 216  # fixed part + the largest address block (AF_UNIX); TLVs beyond are refused


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol header, or a malformed one."""


@dataclass(frozen=True)
class ProxyHeader:
    """The client as the proxy saw it; ``source`` None for LOCAL/UNKNOWN (the proxy itself)."""

    source: str | None
    source_port: int | None
    length: int  # bytes of the header, to strip before the client's own bytes


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while more bytes are needed."""
    if not data:
        return None
    return _parse_v2(data) if data[:1] == b"\r" else _parse_v1(data)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        raise ProxyHeaderError("not a PROXY protocol v1 line")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("PROXY protocol v1 line longer than 107 bytes")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(None, None, end + 2)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"malformed PROXY protocol v1 line: {data[:end]!r}")
    source = _address(parts[2], 4 if parts[1] == "TCP4" else 6)
    _address(parts[3], 4 if parts[1] == "TCP4" else 6)
    return ProxyHeader(source, _port(parts[4]), end + 2)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyHeaderError("not a PROXY protocol v2 signature")
        return None
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("not a PROXY protocol v2 signature")
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2 or command not in (0, 1):
        raise ProxyHeaderError(f"unsupported PROXY protocol v2 version/command byte {data[12]:#x}")
    length = int.from_bytes(data[14:16], "big")
    if 16 + length > V2_MAX + 512:  # room for a few TLVs, not an unbounded buffer
        raise ProxyHeaderError(f"PROXY protocol v2 header of {16 + length} bytes is too long")
    if len(data) < 16 + length:
        return None
    family = data[13] >> 4
    block = data[16 : 16 + length]
    if command == 0 or family == 0:  # LOCAL (a health check) or AF_UNSPEC: the proxy itself
        return ProxyHeader(None, None, 16 + length)
    if family == 1 and len(block) >= 12:  # AF_INET
        source = str(ipaddress.IPv4Address(block[0:4]))
        return ProxyHeader(source, int.from_bytes(block[8:10], "big"), 16 + length)
    if family == 2 and len(block) >= 36:  # AF_INET6
        source = str(ipaddress.IPv6Address(block[0:16]))
        return ProxyHeader(source, int.from_bytes(block[32:34], "big"), 16 + length)
    if family == 3:  # AF_UNIX: no IP address to give
        return ProxyHeader(None, None, 16 + length)
    raise ProxyHeaderError("malformed PROXY protocol v2 address block")


def _address(text: str, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ProxyHeaderError(f"{text!r} is not an IP address") from exc
    if ip.version != version:
        raise ProxyHeaderError(f"{text!r} is not an IPv{version} address")
    return str(ip)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ProxyHeaderError(f"{text!r} is not a port")
    return int(text)

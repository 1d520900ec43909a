"""Clients behind a reverse proxy: ``[server] trusted_proxies``.

A handshake that arrives from a trusted proxy carries the client's address in ``X-Forwarded-For``
and its scheme and port in ``X-Forwarded-Proto`` / ``X-Forwarded-Port``. From such a peer those
headers decide the connection's ``identity.sourceIp`` (and so per-IP rate limits and
GetConnection's ``Identity``) and the forwarded headers of its events. From any other peer they
are the client's own claims: the peer address is the source, and the event's
``X-Forwarded-For`` gets it appended, as API Gateway does.

The client is the rightmost ``X-Forwarded-For`` address that is not itself a trusted proxy
(each proxy appends the address it saw, so only the part added by trusted hops can be believed).
A malformed entry ends the walk: the hop before it is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import replace

from hubbub.wire.http import Handshake

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"}


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)

    def apply(self, hs: Handshake) -> Handshake:
        """``hs`` as the client sent it to the first trusted proxy (unchanged from others)."""
        if not self._networks or not self.trusts(hs.remote):
            return hs
        hops = _forwarded_for(hs.headers)
        client = hs.remote
        used = 0
        for hop in reversed(hops):
            if not _is_address(hop):
                break
            client = hop
            used += 1
            if not self.trusts(hop):
                break
        earlier = hops[: len(hops) - used]
        proto = _last(hs.headers, "x-forwarded-proto")
        port = _last(hs.headers, "x-forwarded-port")
        headers = [(k, v) for k, v in hs.headers if k.lower() not in _FORWARDED]
        if earlier:  # hops before the client, as it claimed them: kept for the event
            headers.append(("X-Forwarded-For", ", ".join(earlier)))
        scheme = proto.lower() if proto and proto.lower() in ("http", "https") else hs.scheme
        if proto:
            headers.append(("X-Forwarded-Proto", scheme))
        if port and port.isdigit() and 0 < int(port) < 65536:
            headers.append(("X-Forwarded-Port", port))
        return replace(
            hs,
            headers=tuple(headers),
            remote=client,
            scheme=scheme,
            port=int(port) if port and port.isdigit() and 0 < int(port) < 65536 else hs.port,
        )


def _forwarded_for(headers: Sequence[tuple[str, str]]) -> list[str]:
    hops: list[str] = []
    for name, value in headers:
        if name.lower() == "x-forwarded-for":
            hops += [part.strip() for part in value.split(",") if part.strip()]
    return hops


def _last(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value.split(",")[-1].strip()
    return found


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

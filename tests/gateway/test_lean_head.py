"""Which request heads the lean transport answers itself (hubbub.gateway.lean_head): only the
plain upgrade; anything unusual goes to aiohttp (tests/gateway/test_lean_upgrade.py checks the
answers on real sockets)."""

from __future__ import annotations

import pytest

from hubbub.gateway.lean_head import plain_upgrade

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HEAD = (
    b"GET /dev?token=a HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY
)


def test_a_plain_upgrade_is_taken_with_its_headers_as_sent() -> None:
    upgrade = plain_upgrade(HEAD + b"\r\nX-Thing:  a b \t\r\nEmpty:", "/dev")
    assert upgrade is not None
    assert upgrade.target == "/dev?token=a"
    assert upgrade.key == KEY.decode()
    assert upgrade.protocols is None
    assert upgrade.headers[-2:] == (("X-Thing", "a b"), ("Empty", ""))
    assert upgrade.headers[0] == ("Host", "example")


def test_connection_may_name_upgrade_among_its_tokens() -> None:
    head = HEAD.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade")
    assert plain_upgrade(head, "/dev") is not None


def test_the_offered_subprotocols_are_kept() -> None:
    upgrade = plain_upgrade(HEAD + b"\r\nSec-WebSocket-Protocol: a, b", "/dev")
    assert upgrade is not None
    assert upgrade.protocols == "a, b"


@pytest.mark.parametrize(
    "head",
    [
        HEAD.replace(b"GET ", b"HEAD "),
        HEAD.replace(b"GET ", b"get "),
        HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
        HEAD.replace(b"/dev?token=a", b"/other"),
        HEAD.replace(b"/dev?token=a", b"/devx"),
        HEAD.replace(b"/dev?token=a", b"http://example/dev"),
        HEAD.replace(b"GET /dev", b"GET  /dev"),
        HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        HEAD.replace(b"Connection: Upgrade", b"Connection: keep-alive"),
        HEAD.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        HEAD.replace(KEY, b"short"),
        HEAD.replace(KEY, KEY[:-2] + b"=!"),
        HEAD.replace(b"Host: example\r\n", b""),  # (no Host is fine) ... but see below
        HEAD + b"\r\nContent-Length: 0",
        HEAD + b"\r\nTransfer-Encoding: chunked",
        HEAD + b"\r\nExpect: 100-continue",
        HEAD + b"\r\nHost: again",  # a header the upgrade reads, twice
        HEAD + b"\r\nSec-WebSocket-Key: " + KEY,
        HEAD + b"\r\n folded",  # obs-fold
        HEAD + b"\r\nBad Name: x",
        HEAD + b"\r\nName : x",
        HEAD + b"\r\nNoColon",
        HEAD + b"\r\nX: caf\xc3\xa9",  # outside ASCII
        HEAD + b"\r\nX: a\x01b",  # a control character
        HEAD + b"\r\n",  # an empty line inside the head
        HEAD.replace(b"\r\n", b"\n"),
    ],
)
def test_anything_unusual_is_left_to_aiohttp(head: bytes) -> None:
    if b"Host" not in head:
        assert plain_upgrade(head, "/dev") is not None  # Host is not required (nor by aiohttp)
        return
    assert plain_upgrade(head, "/dev") is None

"""hubbub.wire.http: the handshake's header lookups."""

from __future__ import annotations

from dataclasses import replace

from hubbub.wire.http import Handshake, find_header

HEADERS = (
    ("Host", "gw.example.com"),
    ("X-Custom", "first"),
    ("user-agent", "Mozilla/5.0"),
    ("x-custom", "second"),
)


def test_handshake_header_is_case_insensitive_and_the_first_value_wins() -> None:
    hs = Handshake("/dev", "", HEADERS, "10.0.0.1")
    for name in ("X-Custom", "x-custom", "X-CUSTOM", "User-Agent", "host", "Origin"):
        assert hs.header(name) == find_header(HEADERS, name)
    assert hs.header("X-Custom") == "first"
    assert hs.header("Origin") is None


def test_a_replaced_handshake_answers_from_its_own_headers() -> None:
    hs = Handshake("/dev", "", HEADERS, "10.0.0.1")
    assert hs.header("Host") == "gw.example.com"  # the index is built
    moved = replace(hs, headers=(("Host", "other.example.com"),))
    assert moved.header("Host") == "other.example.com"
    assert moved.header("X-Custom") is None
    assert hs.header("Host") == "gw.example.com"


def test_the_index_is_no_part_of_equality_or_repr() -> None:
    asked = Handshake("/dev", "", HEADERS, "10.0.0.1")
    asked.header("Host")
    fresh = Handshake("/dev", "", HEADERS, "10.0.0.1")
    assert asked == fresh
    assert hash(asked) == hash(fresh)
    assert repr(asked) == repr(fresh)

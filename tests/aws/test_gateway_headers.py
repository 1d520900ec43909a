"""gateway_headers: the handshake headers as API Gateway passes them on to $connect."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hubbub.aws.events import gateway_headers
from hubbub.aws.headers import _GATEWAY_PLANS, MAX_NAME_CHARS, MAX_NAMES, MAX_SEQUENCES


def _gateway(*headers: tuple[str, str]) -> list[tuple[str, str]]:
    return gateway_headers(
        headers, source_ip="203.0.113.7", port=8080, proto="http", trace_id="Root=1-abc"
    )


def test_gateway_headers_sorted_case_insensitively_repeats_in_the_client_order() -> None:
    assert _gateway(("b", "1"), ("X-A", "first"), ("A", "2"), ("x-a", "second")) == [
        ("A", "2"),
        ("b", "1"),
        ("X-A", "first"),
        ("x-a", "second"),
        ("X-Amzn-Trace-Id", "Root=1-abc"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Port", "8080"),
        ("X-Forwarded-Proto", "http"),
    ]


def test_gateway_headers_append_the_peer_to_every_forwarded_for_and_keep_the_clients() -> None:
    assert _gateway(
        ("x-forwarded-for", "198.51.100.1"),
        ("X-Forwarded-For", ""),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Amzn-Trace-Id", "Root=1-mine"),
    ) == [
        ("X-Amzn-Trace-Id", "Root=1-mine"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ]


def _reference(
    headers: Sequence[tuple[str, str]], source_ip: str, port: int, proto: str, trace_id: str
) -> list[tuple[str, str]]:
    """gateway_headers as it was before its per-sequence plans: each name lowered, keyed, sorted."""
    names = [name.lower() for name, _ in headers]
    keyed = [
        (lower, (n, f"{v}, {source_ip}" if v else source_ip))
        if lower == "x-forwarded-for"
        else (lower, (n, v))
        for lower, (n, v) in zip(names, headers, strict=True)
    ]
    for lower, name, value in (
        ("x-amzn-trace-id", "X-Amzn-Trace-Id", trace_id),
        ("x-forwarded-for", "X-Forwarded-For", source_ip),
        ("x-forwarded-port", "X-Forwarded-Port", str(port)),
        ("x-forwarded-proto", "X-Forwarded-Proto", proto),
    ):
        if lower not in names:
            keyed.append((lower, (name, value)))
    keyed.sort(key=lambda item: item[0])
    return [pair for _, pair in keyed]


_CASES = [
    (),
    (("Host", "a"), ("Upgrade", "websocket"), ("Connection", "Upgrade")),
    (("b", "1"), ("X-A", "first"), ("A", "2"), ("x-a", "second"), ("X-A", "third")),
    (("X-Forwarded-Port", "443"), ("Host", "h")),
    (("x-amzn-trace-id", "Root=1-mine"), ("HOST", "h"), ("X-FORWARDED-PROTO", "https")),
    (("X-Forwarded-For", ""), ("x-forwarded-for", "1.2.3.4"), ("Z", "\xe9\xff")),
    (
        ("X-Forwarded-For", "1.1.1.1"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Amzn-Trace-Id", "t"),
    ),
]


@pytest.mark.parametrize("headers", _CASES)
def test_gateway_headers_equal_the_reference_first_time_and_from_the_cache(
    headers: tuple[tuple[str, str], ...],
) -> None:
    expected = _reference(headers, "203.0.113.7", 8080, "http", "Root=1-abc")
    assert _gateway(*headers) == expected  # worked out
    assert _gateway(*headers) == expected  # looked up
    # The same names with other values and another peer: the plan depends on the names only.
    other = tuple((name, value + "!") for name, value in headers)
    assert gateway_headers(
        other, source_ip="198.51.100.9", port=443, proto="https", trace_id="Root=1-x"
    ) == _reference(other, "198.51.100.9", 443, "https", "Root=1-x")


def test_gateway_headers_keep_their_caches_bounded_and_right() -> None:
    # More distinct sequences than a cache keeps, and sequences too long to be kept at all.
    for n in range(MAX_SEQUENCES * 3):
        headers = (("Host", "h"), (f"X-Name-{n}", str(n)), ("Upgrade", "websocket"))
        assert _gateway(*headers) == _reference(headers, "203.0.113.7", 8080, "http", "Root=1-abc")
        assert len(_GATEWAY_PLANS) <= MAX_SEQUENCES
    many = tuple((f"H{n:03d}", "v") for n in range(MAX_NAMES + 1))
    long = (("X-" + "a" * MAX_NAME_CHARS, "v"),)
    for headers in (many, long):
        _GATEWAY_PLANS.clear()
        assert _gateway(*headers) == _reference(headers, "203.0.113.7", 8080, "http", "Root=1-abc")
        assert _GATEWAY_PLANS == {}

"""gateway_headers: the handshake headers as API Gateway passes them on to $connect."""

from __future__ import annotations

from hubbub.aws.events import gateway_headers


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

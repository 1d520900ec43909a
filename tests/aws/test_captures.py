"""hubbub's events against real API Gateway captures (tests/aws/captures/), key by key.

The comparison is on shapes: which keys exist at every level, the JSON type of every value, and
the names of the headers. Values differ by nature (ids, times, addresses). Each test builds the
event hubbub produces for what the capture's client sent, so any drift from AWS shows as a diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubbub.aws.authorizer import authorizer_event
from hubbub.aws.events import (
    ApiContext,
    ConnectionContext,
    connect_event,
    disconnect_event,
    gateway_headers,
    message_event,
)
from hubbub.aws.ids import new_trace_id

CAPTURES = Path(__file__).parent / "captures"
API = ApiContext(
    api_id="asasasas", stage="prod", domain_name="asasasas.execute-api.us-east-1.amazonaws.com"
)
# What the Powertools capture's client sent (an upgrade request without User-Agent).
CLIENT_HEADERS = [
    ("Host", API.domain_name),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "+W5xw47OHh3OTFsWKjGu9Q=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
]


def capture(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((CAPTURES / name).read_text())
    return event


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively: what the comparison looks at."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def conn(
    user_agent: str = "", headers: list[tuple[str, str]] = CLIENT_HEADERS
) -> ConnectionContext:
    return ConnectionContext(
        connection_id="BFHPhfCWIAMCKlQ=",
        connected_at=1731324924553,
        source_ip="166.90.225.1",
        user_agent=user_agent,
        headers=gateway_headers(
            headers,
            source_ip="166.90.225.1",
            port=443,
            proto="https",
            trace_id=new_trace_id(1731324924553),
        ),
        query=None,
    )


def test_connect_event_matches_the_capture() -> None:
    ours = connect_event(API, conn(), request_id="BFHPhFe3IAMF95g=", now_ms=1731324924561)
    theirs = capture("powertools-websocket-connect.json")
    assert shape(ours) == shape(theirs)
    assert list(ours["headers"]) == list(theirs["headers"])  # the same names, in AWS's order
    assert list(ours["multiValueHeaders"]) == list(theirs["multiValueHeaders"])
    assert list(ours["requestContext"]) == list(theirs["requestContext"])


def test_connect_trace_id_has_aws_format() -> None:
    ours = connect_event(API, conn(), request_id="r", now_ms=1731324924561)
    trace = ours["headers"]["X-Amzn-Trace-Id"]
    theirs = capture("powertools-websocket-connect.json")["headers"]["X-Amzn-Trace-Id"]
    assert trace.startswith("Root=1-6731ebfc-")  # the capture's epoch seconds, in hex
    assert len(trace) == len(theirs)


def test_authorizer_event_matches_the_capture() -> None:
    headers = [*CLIENT_HEADERS, ("Authorization", "Leo")]
    connect = connect_event(API, conn(headers=headers), request_id="r", now_ms=1737995987617)
    ours = authorizer_event(connect, method_arn="arn:aws:execute-api:us-east-1:1:a/p/$connect")
    theirs = capture("powertools-websocket-authorizer.json")
    # The capture's single-value map lost its Sec-WebSocket-Key (an edit); its multi-value map
    # has every header.
    theirs["headers"]["Sec-WebSocket-Key"] = theirs["multiValueHeaders"]["Sec-WebSocket-Key"][0]
    assert shape(ours) == shape(theirs)
    assert sorted(ours["headers"], key=str.lower) == list(theirs["multiValueHeaders"])
    assert list(ours["multiValueHeaders"]) == list(theirs["multiValueHeaders"])
    assert list(ours) == list(theirs)


def test_message_event_matches_the_captures() -> None:
    for name, user_agent in (
        ("powertools-websocket-message.json", ""),
        ("lgo-websocket-message.json", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"),
    ):
        theirs = capture(name)
        ours = message_event(
            API,
            conn(user_agent),
            route_key=theirs["requestContext"]["routeKey"],
            body=theirs["body"],
            request_id="BFaVtH2HoAMFZEQ=",
            message_id="BFaVtfGSIAMCKug=",
            now_ms=1731332746514,
        )
        assert shape(ours) == shape(theirs), name
        assert list(ours["requestContext"]) == list(theirs["requestContext"]), name


def test_disconnect_event_matches_the_captures() -> None:
    for name, user_agent in (
        ("powertools-websocket-disconnect.json", ""),
        ("lgo-websocket-disconnect.json", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"),
    ):
        theirs = capture(name)
        rc = theirs["requestContext"]
        api = ApiContext(api_id=rc["apiId"], stage=rc["stage"], domain_name=rc["domainName"])
        ours = disconnect_event(
            api,
            conn(user_agent),
            status_code=rc["disconnectStatusCode"],
            reason=rc["disconnectReason"],
            request_id="BFbOeE87IAMF31w=",
            now_ms=1731333109875,
        )
        assert shape(ours) == shape(theirs), name
        assert ours["headers"] == theirs["headers"], name  # the fixed set, values included
        assert ours["multiValueHeaders"] == theirs["multiValueHeaders"], name
        assert list(ours["requestContext"]) == list(theirs["requestContext"]), name

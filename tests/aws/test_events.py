from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.events import (
    ApiContext,
    ConnectionContext,
    MessageEventFactory,
    clf_time,
    connect_event,
    disconnect_event,
    message_event,
)

# Key lists of the captures (tests/aws/captures/README.md), in the captures' order.
CAPTURED_CONNECT_TOP = [
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "requestContext",
    "isBase64Encoded",
]
CAPTURED_CONNECT_CONTEXT = [
    "routeKey",
    "eventType",
    "extendedRequestId",
    "requestTime",
    "messageDirection",
    "stage",
    "connectedAt",
    "requestTimeEpoch",
    "identity",
    "requestId",
    "domainName",
    "connectionId",
    "apiId",
]
CAPTURED_MESSAGE_TOP = ["requestContext", "body", "isBase64Encoded"]
CAPTURED_MESSAGE_CONTEXT = [
    "routeKey",
    "messageId",
    "eventType",
    "extendedRequestId",
    "requestTime",
    "messageDirection",
    "stage",
    "connectedAt",
    "requestTimeEpoch",
    "identity",
    "requestId",
    "domainName",
    "connectionId",
    "apiId",
]
CAPTURED_DISCONNECT_TOP = ["headers", "multiValueHeaders", "requestContext", "isBase64Encoded"]
CAPTURED_DISCONNECT_CONTEXT = [
    "routeKey",
    "disconnectStatusCode",
    "eventType",
    "extendedRequestId",
    "requestTime",
    "messageDirection",
    "disconnectReason",
    "stage",
    "connectedAt",
    "requestTimeEpoch",
    "identity",
    "requestId",
    "domainName",
    "connectionId",
    "apiId",
]

API = ApiContext(
    api_id="dl7ptocha9",
    stage="prod",
    domain_name="dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
)
CONNECTED_AT = 1705751697419
NOW = 1705751700453
HANDSHAKE = [
    ("Host", "gw.example.com"),
    ("Sec-WebSocket-Key", "X/MA+DSRXZ8WnITjBpxm3g=="),
    ("User-Agent", "Mozilla/5.0"),
    ("X-Custom", "first"),
    ("X-Custom", "second"),
]


def make_conn(**changes: Any) -> ConnectionContext:
    conn = ConnectionContext(
        connection_id="R1kmxc2VNjMCFIA=",
        connected_at=CONNECTED_AT,
        source_ip="49.105.91.154",
        user_agent="Mozilla/5.0",
        headers=HANDSHAKE,
        query=[("token", "abc"), ("room", "a"), ("room", "b")],
    )
    return dataclasses.replace(conn, **changes)


def connect(conn: ConnectionContext | None = None, api: ApiContext = API) -> dict[str, Any]:
    return connect_event(api, conn or make_conn(), request_id="XfGLwFTktjMFsLg=", now_ms=NOW)


def message(conn: ConnectionContext | None = None, api: ApiContext = API) -> dict[str, Any]:
    return message_event(
        api,
        conn or make_conn(),
        route_key="sendmessage",
        body='{"action": "sendmessage"}',
        request_id="R1knPH17NjMFftw=",
        message_id="R1knPc2ntjMCFIA=",
        now_ms=NOW,
    )


def disconnect(conn: ConnectionContext | None = None, api: ApiContext = API) -> dict[str, Any]:
    return disconnect_event(
        api,
        conn or make_conn(),
        status_code=1001,
        reason="Going away",
        request_id="R1koeHsUtjMFbRw=",
        now_ms=NOW,
    )


# --- clf_time -------------------------------------------------------------------------------


def test_clf_time_formats_the_captured_example() -> None:
    assert clf_time(1705751708326) == "20/Jan/2024:11:55:08 +0000"


def first_of_month_ms(month: int) -> int:
    return int(datetime(2024, month, 1, tzinfo=UTC).timestamp()) * 1000


def test_clf_time_uses_english_month_abbreviations() -> None:
    months = [clf_time(first_of_month_ms(month))[3:6] for month in range(1, 13)]
    assert " ".join(months) == "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"


def test_clf_time_drops_milliseconds() -> None:
    assert clf_time(1705751708000) == clf_time(1705751708999)


@given(st.integers(min_value=0, max_value=253402300799999))
def test_clf_time_agrees_with_datetime(epoch_ms: int) -> None:
    expected = datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    assert clf_time(epoch_ms) == expected


# --- $connect ---------------------------------------------------------------------------------


def test_connect_event_has_the_captured_top_level_keys() -> None:
    assert list(connect()) == CAPTURED_CONNECT_TOP


def test_connect_event_has_the_captured_request_context_keys() -> None:
    assert list(connect()["requestContext"]) == CAPTURED_CONNECT_CONTEXT


def test_connect_event_without_query_string_omits_query_parameters() -> None:
    event = connect(make_conn(query=None))
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


def test_connect_event_with_empty_query_string_has_empty_parameters() -> None:
    event = connect(make_conn(query=[]))
    assert event["queryStringParameters"] == {}
    assert event["multiValueQueryStringParameters"] == {}


def test_connect_event_headers_keep_original_case_and_last_value_wins() -> None:
    assert connect()["headers"] == {
        "Host": "gw.example.com",
        "Sec-WebSocket-Key": "X/MA+DSRXZ8WnITjBpxm3g==",
        "User-Agent": "Mozilla/5.0",
        "X-Custom": "second",
    }


def test_connect_event_multi_value_headers_keep_every_value_in_order() -> None:
    assert connect()["multiValueHeaders"]["X-Custom"] == ["first", "second"]


def test_connect_event_headers_spelled_differently_stay_separate() -> None:
    event = connect(make_conn(headers=[("X-A", "1"), ("x-a", "2")]))
    assert event["multiValueHeaders"] == {"X-A": ["1"], "x-a": ["2"]}


def test_connect_event_query_last_value_wins_and_multi_keeps_all() -> None:
    event = connect()
    assert event["queryStringParameters"] == {"token": "abc", "room": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"], "room": ["a", "b"]}


def test_connect_event_request_context_values() -> None:
    assert connect()["requestContext"] == {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "extendedRequestId": "XfGLwFTktjMFsLg=",
        "requestTime": "20/Jan/2024:11:55:00 +0000",
        "messageDirection": "IN",
        "stage": "prod",
        "connectedAt": CONNECTED_AT,
        "requestTimeEpoch": NOW,
        "identity": {"sourceIp": "49.105.91.154", "userAgent": "Mozilla/5.0"},
        "requestId": "XfGLwFTktjMFsLg=",
        "domainName": "dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
        "connectionId": "R1kmxc2VNjMCFIA=",
        "apiId": "dl7ptocha9",
    }


def test_connect_event_is_not_base64_encoded() -> None:
    assert connect()["isBase64Encoded"] is False


def test_identity_leaves_user_agent_out_when_the_client_sent_none() -> None:
    # As AWS does: the Powertools 2024 captures (tests/aws/captures/) have {"sourceIp": ...} only.
    for event in all_events(make_conn(user_agent="")):
        assert event["requestContext"]["identity"] == {"sourceIp": "49.105.91.154"}


# --- every event type -------------------------------------------------------------------------


def all_events(conn: ConnectionContext, api: ApiContext = API) -> list[dict[str, Any]]:
    return [connect(conn, api), message(conn, api), disconnect(conn, api)]


def test_authorizer_reaches_every_event() -> None:
    authorizer = {"principalId": "user-1", "plan": "pro", "level": 3}
    for event in all_events(make_conn(authorizer=authorizer)):
        assert event["requestContext"]["authorizer"] == authorizer


def test_attributes_reach_every_event() -> None:
    attributes = {"room": "lobby"}
    for event in all_events(make_conn(attributes=attributes)):
        assert event["requestContext"]["attributes"] == attributes


def test_no_authorizer_or_attributes_keys_without_them() -> None:
    for event in all_events(make_conn()):
        assert "authorizer" not in event["requestContext"]
        assert "attributes" not in event["requestContext"]


def test_stage_variables_appear_on_every_event_when_set() -> None:
    api = dataclasses.replace(API, stage_variables={"env": "test"})
    for event in all_events(make_conn(), api):
        assert event["stageVariables"] == {"env": "test"}


def test_stage_variables_are_absent_when_not_set() -> None:
    for event in all_events(make_conn()):
        assert "stageVariables" not in event


def test_request_id_equals_extended_request_id_on_every_event() -> None:
    for event in all_events(make_conn()):
        context = event["requestContext"]
        assert context["requestId"] == context["extendedRequestId"]


def test_connected_at_is_the_same_on_every_event() -> None:
    assert {event["requestContext"]["connectedAt"] for event in all_events(make_conn())} == {
        CONNECTED_AT
    }


# --- MESSAGE ----------------------------------------------------------------------------------


def test_message_event_has_the_captured_top_level_keys() -> None:
    assert list(message()) == CAPTURED_MESSAGE_TOP


def test_message_event_has_the_captured_request_context_keys() -> None:
    assert list(message()["requestContext"]) == CAPTURED_MESSAGE_CONTEXT


def test_message_event_values() -> None:
    event = message()
    context = event["requestContext"]
    assert event["body"] == '{"action": "sendmessage"}'
    assert event["isBase64Encoded"] is False
    assert context["routeKey"] == "sendmessage"
    assert context["eventType"] == "MESSAGE"
    assert context["messageId"] == "R1knPc2ntjMCFIA="
    assert context["requestId"] == "R1knPH17NjMFftw="
    assert context["requestTime"] == "20/Jan/2024:11:55:00 +0000"
    assert context["requestTimeEpoch"] == NOW
    assert context["identity"] == {"sourceIp": "49.105.91.154", "userAgent": "Mozilla/5.0"}


def test_factory_builds_the_same_event_as_the_function() -> None:
    factory = MessageEventFactory(API, make_conn())
    built = factory.build(
        "sendmessage", '{"action": "sendmessage"}', "R1knPH17NjMFftw=", "R1knPc2ntjMCFIA=", NOW
    )
    assert built == message()


def test_factory_events_do_not_share_mutable_parts() -> None:
    factory = MessageEventFactory(API, make_conn(authorizer={"principalId": "u"}))
    first = factory.build("$default", "a", "r1", "m1", NOW)
    first["requestContext"]["identity"]["sourceIp"] = "changed"
    first["requestContext"]["authorizer"]["principalId"] = "changed"
    second = factory.build("$default", "b", "r2", "m2", NOW + 1)
    assert second["requestContext"]["identity"]["sourceIp"] == "49.105.91.154"
    assert second["requestContext"]["authorizer"] == {"principalId": "u"}


def test_factory_events_vary_per_message() -> None:
    factory = MessageEventFactory(API, make_conn())
    first = factory.build("a", "1", "r1", "m1", NOW)
    second = factory.build("b", "2", "r2", "m2", NOW + 5000)
    assert (first["requestContext"]["routeKey"], second["requestContext"]["routeKey"]) == (
        "a",
        "b",
    )
    assert second["requestContext"]["requestTime"] == "20/Jan/2024:11:55:05 +0000"


@given(st.lists(st.integers(min_value=0, max_value=253402300799999), min_size=1, max_size=6))
def test_factory_request_time_follows_every_message(epochs: list[int]) -> None:
    # build() remembers the last second's requestTime: back and forth, it must still be right.
    factory = MessageEventFactory(API, make_conn())
    for epoch_ms in [*epochs, *epochs]:
        context = factory.build("a", "1", "r", "m", epoch_ms)["requestContext"]
        assert context["requestTime"] == clf_time(epoch_ms)
        assert context["requestTimeEpoch"] == epoch_ms


def test_factory_picks_up_a_replaced_authorizer_without_refresh() -> None:
    conn = make_conn()
    factory = MessageEventFactory(API, conn)
    conn.authorizer = {"principalId": "late"}
    event = factory.build("$default", "x", "r", "m", NOW)
    assert event["requestContext"]["authorizer"] == {"principalId": "late"}


def test_factory_picks_up_replaced_attributes_without_refresh() -> None:
    conn = make_conn(attributes={"v": 1})
    factory = MessageEventFactory(API, conn)
    conn.attributes = {"v": 2}
    event = factory.build("$default", "x", "r", "m", NOW)
    assert event["requestContext"]["attributes"] == {"v": 2}


def test_factory_drops_attributes_cleared_after_it_was_built() -> None:
    conn = make_conn(attributes={"v": 1})
    factory = MessageEventFactory(API, conn)
    conn.attributes = None
    assert "attributes" not in factory.build("$default", "x", "r", "m", NOW)["requestContext"]


def test_factory_refresh_rereads_the_connection() -> None:
    conn = make_conn()
    factory = MessageEventFactory(API, conn)
    conn.user_agent = "changed"
    factory.refresh()
    event = factory.build("$default", "x", "r", "m", NOW)
    assert event["requestContext"]["identity"]["userAgent"] == "changed"


def test_factory_puts_stage_variables_first_like_connect() -> None:
    api = dataclasses.replace(API, stage_variables={"env": "test"})
    assert list(message(api=api)) == ["stageVariables", *CAPTURED_MESSAGE_TOP]


# --- $disconnect ------------------------------------------------------------------------------


def test_disconnect_event_has_the_captured_top_level_keys() -> None:
    assert list(disconnect()) == CAPTURED_DISCONNECT_TOP


def test_disconnect_event_has_the_captured_request_context_keys() -> None:
    assert list(disconnect()["requestContext"]) == CAPTURED_DISCONNECT_CONTEXT


def test_disconnect_event_has_only_the_fixed_headers() -> None:
    # Host = domainName and an empty X-Forwarded-For, as in every $disconnect capture.
    event = disconnect()
    assert event["headers"] == {
        "Host": API.domain_name,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    assert event["multiValueHeaders"] == {
        "Host": [API.domain_name],
        "x-api-key": [""],
        "X-Forwarded-For": [""],
        "x-restapi": [""],
    }


def test_disconnect_event_host_is_the_domain_name_whatever_the_handshake_said() -> None:
    event = disconnect(make_conn(headers=[("host", "127.0.0.1:8090")]))
    assert event["headers"]["Host"] == API.domain_name


@given(
    st.lists(
        st.tuples(st.sampled_from(["Host", "host", "HOST", "X-Other"]), st.text(max_size=8)),
        max_size=5,
    )
)
def test_forgetting_the_handshake_keeps_the_disconnect_and_message_events(
    headers: list[tuple[str, str]],
) -> None:
    conn = make_conn(headers=headers)
    before = disconnect(conn), message(conn)
    conn.forget_handshake()
    assert (disconnect(conn), message(conn)) == before
    assert conn.query is None
    assert len(conn.headers) <= 1


def test_disconnect_event_carries_status_code_and_reason() -> None:
    context = disconnect()["requestContext"]
    assert context["disconnectStatusCode"] == 1001
    assert context["disconnectReason"] == "Going away"
    assert context["eventType"] == "DISCONNECT"
    assert context["routeKey"] == "$disconnect"


@pytest.mark.parametrize("twice", [False, True])  # worked out, then from the cache
def test_connect_event_leaves_out_upgrade_and_connection_in_any_case_and_keeps_repeats(
    twice: bool,
) -> None:
    headers = [
        ("connection", "Upgrade"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("cookie", "c=3"),
        ("Host", "h"),
        ("UPGRADE", "websocket"),
        ("X-Latin", "caf\xe9 \xff"),
    ]
    for _ in range(2 if twice else 1):
        event = connect(make_conn(headers=headers))
    assert list(event["headers"].items()) == [
        ("Cookie", "b=2"),
        ("cookie", "c=3"),
        ("Host", "h"),
        ("X-Latin", "caf\xe9 \xff"),
    ]
    assert event["multiValueHeaders"] == {
        "Cookie": ["a=1", "b=2"],
        "cookie": ["c=3"],
        "Host": ["h"],
        "X-Latin": ["caf\xe9 \xff"],
    }
    # Each event its own maps: an in-process handler that edits one does not edit the next.
    event["multiValueHeaders"]["Host"].append("x")
    assert connect(make_conn(headers=headers))["multiValueHeaders"]["Host"] == ["h"]

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.parsers
import botocore.session
import orjson
import pytest
from botocore.awsrequest import HeadersDict
from botocore.model import OperationModel
from botocore.utils import percent_encode
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.management import (
    ManagementPath,
    error_body,
    error_headers,
    get_connection_body,
    iso8601_ms,
    parse_management_path,
)

CONNECTED_AT = 1705751697419  # 2024-01-20T11:54:57.419Z
LAST_ACTIVE_AT = 1705751700453


def operation(name: str) -> OperationModel:
    model = botocore.session.get_session().get_service_model("apigatewaymanagementapi")
    return model.operation_model(name)


def botocore_parse(operation_name: str, status: int, headers: dict[str, str], body: bytes) -> Any:
    # HeadersDict is what botocore hands its parsers on a real response (case-insensitive).
    response = {"status_code": status, "headers": HeadersDict(headers), "body": body}
    # Typed as Any: botocore passes output_shape None (PostToConnection) though the stubs say Shape.
    parser: Any = botocore.parsers.create_parser("rest-json")
    return parser.parse(response, operation(operation_name).output_shape)


# --- paths ------------------------------------------------------------------------------------


def test_boto3_post_path_is_parsed() -> None:
    assert parse_management_path("/dev/@connections/R0oXAdfD0kwCH6w%3D") == ManagementPath(
        stage="dev", resource="connections", ident="R0oXAdfD0kwCH6w=", sub=None
    )


def test_encoded_at_sign_is_accepted() -> None:
    parsed = parse_management_path("/dev/%40connections/abc%3D")
    assert parsed == ManagementPath("dev", "connections", "abc=", None)


def test_lowercase_percent_encoding_is_accepted() -> None:
    parsed = parse_management_path("/dev/%40connections/abc%3d")
    assert parsed is not None
    assert parsed.ident == "abc="


def test_encoded_slash_stays_inside_the_id() -> None:
    parsed = parse_management_path("/dev/@connections/ab%2Fcd%3D")
    assert parsed == ManagementPath("dev", "connections", "ab/cd=", None)


def test_plus_is_not_a_space_in_paths() -> None:
    parsed = parse_management_path("/dev/@connections/a+b")
    assert parsed is not None
    assert parsed.ident == "a+b"


def test_resource_without_ident() -> None:
    assert parse_management_path("/prod/@broadcast") == ManagementPath(
        "prod", "broadcast", None, None
    )


def test_trailing_slash_is_ignored() -> None:
    assert parse_management_path("/prod/@connections/") == ManagementPath(
        "prod", "connections", None, None
    )


def test_sub_resource_after_a_connection() -> None:
    assert parse_management_path("/dev/@connections/abc%3D/attributes") == ManagementPath(
        "dev", "connections", "abc=", "attributes"
    )


def test_nested_sub_path_is_decoded_per_segment() -> None:
    assert parse_management_path("/dev/@rooms/lobby/connections/abc%3D") == ManagementPath(
        "dev", "rooms", "lobby", "connections/abc="
    )


def test_users_resource() -> None:
    assert parse_management_path("/dev/@users/al%20ice") == ManagementPath(
        "dev", "users", "al ice", None
    )


def test_encoded_stage_is_decoded() -> None:
    parsed = parse_management_path("/my%20stage/@connections/x")
    assert parsed is not None
    assert parsed.stage == "my stage"


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "dev/@connections/x",
        "/dev",
        "/dev/",
        "/dev/connections/x",
        "/dev/@things/x",
        "/dev/@Connections/x",
        "//@connections/x",
        "/@connections/x",
        "/dev/@connections//x",
        "/dev/@connections/x//y",
        "/dev/@connections/%FF",
    ],
)
def test_other_paths_are_not_management_paths(path: str) -> None:
    assert parse_management_path(path) is None


@given(st.text(min_size=1).filter(lambda text: "\x00" not in text))
def test_any_id_encoded_by_botocore_round_trips(connection_id: str) -> None:
    # botocore renders the {connectionId} label with percent_encode(safe="-._~").
    path = "/prod/@connections/" + percent_encode(connection_id, safe="-._~")
    parsed = parse_management_path(path)
    assert parsed is not None
    assert parsed.ident == connection_id


@given(st.text())
def test_arbitrary_paths_never_raise(path: str) -> None:
    parse_management_path(path)


# --- errors -----------------------------------------------------------------------------------


def test_gone_has_an_empty_body() -> None:
    # A real 410's body is not JSON to the PHP SDK and null to the Java SDK (see error_body).
    assert error_body("GoneException", None) == b""
    assert error_body("GoneException", "ignored") == b""


def test_error_body_with_message_is_compact_like_api_gateways_template() -> None:
    assert error_body("PayloadTooLargeException", "too big") == b'{"message":"too big"}'


@pytest.mark.parametrize(
    ("error_type", "message"),
    [
        ("ForbiddenException", "Forbidden"),
        ("LimitExceededException", "Too Many Requests"),
        ("InternalServerErrorException", "Internal server error"),
        ("NotFoundException", "Not Found"),
    ],
)
def test_error_body_without_message_uses_api_gateways_words(error_type: str, message: str) -> None:
    assert orjson.loads(error_body(error_type, None)) == {"message": message}


def test_error_body_escapes_the_message() -> None:
    assert orjson.loads(error_body("X", 'a "quote"')) == {"message": 'a "quote"'}


def test_error_headers() -> None:
    assert error_headers("GoneException", "rid-1") == {
        "x-amzn-ErrorType": "GoneException",
        "x-amzn-RequestId": "rid-1",
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("status", "error_type", "message", "parsed_message"),
    [
        (410, "GoneException", None, ""),
        (413, "PayloadTooLargeException", "Message too long", "Message too long"),
        (429, "LimitExceededException", None, "Too Many Requests"),
        (403, "ForbiddenException", None, "Forbidden"),
    ],
)
def test_botocore_maps_error_responses_to_the_error_code(
    status: int, error_type: str, message: str | None, parsed_message: str
) -> None:
    parsed = botocore_parse(
        "PostToConnection",
        status,
        error_headers(error_type, "rid-1"),
        error_body(error_type, message),
    )
    assert parsed["Error"] == {"Code": error_type, "Message": parsed_message}
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-1"


def test_boto3_client_has_an_exception_class_for_gone() -> None:
    client = botocore.session.get_session().create_client(
        "apigatewaymanagementapi",
        region_name="us-east-1",
        endpoint_url="http://localhost/prod",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    assert client.exceptions.from_code("GoneException") is client.exceptions.GoneException


# --- GetConnection ----------------------------------------------------------------------------


def test_iso8601_ms_formats_utc_with_milliseconds() -> None:
    assert iso8601_ms(CONNECTED_AT) == "2024-01-20T11:54:57.419Z"


def test_iso8601_ms_pads_milliseconds() -> None:
    assert iso8601_ms(1705751697007) == "2024-01-20T11:54:57.007Z"


@given(st.integers(min_value=0, max_value=253402300799999))
def test_iso8601_ms_agrees_with_datetime(epoch_ms: int) -> None:
    parsed = datetime.strptime(iso8601_ms(epoch_ms), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert round(parsed.timestamp() * 1000) == epoch_ms


def test_get_connection_body_shape() -> None:
    body = get_connection_body(
        connected_at=CONNECTED_AT,
        last_active_at=LAST_ACTIVE_AT,
        source_ip="49.105.91.154",
        user_agent="Mozilla/5.0",
    )
    assert orjson.loads(body) == {
        "connectedAt": "2024-01-20T11:54:57.419Z",
        "identity": {"sourceIp": "49.105.91.154", "userAgent": "Mozilla/5.0"},
        "lastActiveAt": "2024-01-20T11:55:00.453Z",
    }


def test_get_connection_body_keeps_an_empty_user_agent() -> None:
    body = get_connection_body(
        connected_at=CONNECTED_AT, last_active_at=LAST_ACTIVE_AT, source_ip="1.2.3.4", user_agent=""
    )
    assert orjson.loads(body)["identity"] == {"sourceIp": "1.2.3.4", "userAgent": ""}


def test_get_connection_body_includes_attributes_when_given() -> None:
    body = get_connection_body(
        connected_at=CONNECTED_AT,
        last_active_at=LAST_ACTIVE_AT,
        source_ip="1.2.3.4",
        user_agent="",
        attributes={"room": "lobby"},
    )
    assert orjson.loads(body)["attributes"] == {"room": "lobby"}


def test_botocore_parses_the_get_connection_body() -> None:
    body = get_connection_body(
        connected_at=CONNECTED_AT,
        last_active_at=LAST_ACTIVE_AT,
        source_ip="49.105.91.154",
        user_agent="",
        attributes={"room": "lobby"},
    )
    parsed = botocore_parse("GetConnection", 200, {"Content-Type": "application/json"}, body)
    assert isinstance(parsed["ConnectedAt"], datetime)
    assert parsed["ConnectedAt"].timestamp() * 1000 == pytest.approx(CONNECTED_AT)
    assert parsed["LastActiveAt"].timestamp() * 1000 == pytest.approx(LAST_ACTIVE_AT)
    assert parsed["Identity"] == {"SourceIp": "49.105.91.154", "UserAgent": ""}

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.results import ProxyResult, is_success, parse_proxy_result
from hubbub.errors import HubbubError, InvalidProxyResult


def test_none_is_a_bodiless_200() -> None:
    assert parse_proxy_result(None) == ProxyResult(200, {}, None, False)


def test_a_string_is_a_200_with_that_body() -> None:
    assert parse_proxy_result("hello") == ProxyResult(200, {}, "hello", False)


def test_a_dict_with_status_code() -> None:
    result = parse_proxy_result({"statusCode": 401, "body": "no"})
    assert (result.status_code, result.body) == (401, "no")


def test_the_common_shapes_have_no_headers() -> None:
    assert parse_proxy_result({"statusCode": 200, "body": "x"}) == ProxyResult(200, {}, "x", False)
    # The route-response shape is built with tuple.__new__: still a whole ProxyResult.
    assert type(parse_proxy_result({"statusCode": 200, "body": "x"})) is ProxyResult
    assert parse_proxy_result({"statusCode": 204}) == ProxyResult(204, {}, None, False)
    assert parse_proxy_result({"statusCode": 200, "body": None}) == ProxyResult(200, {}, None)


def test_a_result_without_headers_shares_a_read_only_mapping() -> None:
    for result in (ProxyResult(200), parse_proxy_result({"statusCode": 200, "body": "x"})):
        with pytest.raises(TypeError):
            result.headers["X-Mine"] = "no"  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        {"statusCode": 200, "body": "\ud800"},
        {"statusCode": 200, "body": "\udfff", "headers": {"a": "b"}},
        "x\ud800",
    ],
)
def test_text_with_lone_surrogates_is_invalid(value: object) -> None:
    with pytest.raises(InvalidProxyResult, match="Unicode"):
        parse_proxy_result(value)


def test_non_ascii_text_is_kept() -> None:
    assert parse_proxy_result({"statusCode": 200, "body": "héllo ✓"}).body == "héllo ✓"
    assert parse_proxy_result("naïve").body == "naïve"


def test_a_numeric_string_status_code() -> None:
    assert parse_proxy_result({"statusCode": "403"}).status_code == 403


def test_an_integral_float_status_code() -> None:
    assert parse_proxy_result({"statusCode": 201.0}).status_code == 201


@pytest.mark.parametrize("status", [True, None, "abc", "²", 200.5, "", [200], 99, 600, -200])
def test_unusable_status_codes_are_invalid(status: object) -> None:
    with pytest.raises(InvalidProxyResult, match="statusCode"):
        parse_proxy_result({"statusCode": status})


def test_a_dict_without_status_code_is_a_200_with_the_dict_as_json() -> None:
    result = parse_proxy_result({"message": "hi", "n": 1})
    assert result.status_code == 200
    assert result.body is not None
    assert orjson.loads(result.body) == {"message": "hi", "n": 1}


def test_a_dict_without_status_code_that_is_not_json_is_invalid() -> None:
    with pytest.raises(InvalidProxyResult):
        parse_proxy_result({"when": object()})


@pytest.mark.parametrize("value", [42, ["a"], b"bytes", object()])
def test_other_types_are_invalid(value: object) -> None:
    with pytest.raises(InvalidProxyResult, match="must return"):
        parse_proxy_result(value)


def test_invalid_proxy_result_is_a_value_error_and_a_hubbub_error() -> None:
    assert issubclass(InvalidProxyResult, ValueError)
    assert issubclass(InvalidProxyResult, HubbubError)


def test_missing_body_is_none() -> None:
    assert parse_proxy_result({"statusCode": 200}).body is None


def test_non_string_body_is_sent_as_json_text() -> None:
    assert parse_proxy_result({"statusCode": 200, "body": {"a": [1, 2]}}).body == '{"a":[1,2]}'


def test_unserialisable_body_is_invalid() -> None:
    with pytest.raises(InvalidProxyResult, match="body"):
        parse_proxy_result({"statusCode": 200, "body": {1, 2}})


def test_header_values_are_stringified() -> None:
    result = parse_proxy_result({"statusCode": 200, "headers": {"X-N": 5, "X-B": True, "X-S": "s"}})
    assert result.headers == {"X-N": "5", "X-B": "true", "X-S": "s"}


def test_null_header_values_are_dropped() -> None:
    assert parse_proxy_result({"statusCode": 200, "headers": {"X-N": None}}).headers == {}


def test_multi_value_headers_are_merged_and_the_last_value_wins() -> None:
    result = parse_proxy_result(
        {"statusCode": 200, "headers": {"X-A": "1"}, "multiValueHeaders": {"X-B": ["2", "3"]}}
    )
    assert result.headers == {"X-A": "1", "X-B": "3"}


def test_multi_value_headers_override_headers_regardless_of_case() -> None:
    result = parse_proxy_result(
        {
            "statusCode": 200,
            "headers": {"sec-websocket-protocol": "a"},
            "multiValueHeaders": {"Sec-WebSocket-Protocol": ["b"]},
        }
    )
    assert result.headers == {"Sec-WebSocket-Protocol": "b"}


def test_empty_multi_value_header_lists_are_dropped() -> None:
    result = parse_proxy_result({"statusCode": 200, "multiValueHeaders": {"X-A": []}})
    assert result.headers == {}


@pytest.mark.parametrize("key", ["headers", "multiValueHeaders"])
def test_headers_that_are_not_objects_are_invalid(key: str) -> None:
    with pytest.raises(InvalidProxyResult, match=key):
        parse_proxy_result({"statusCode": 200, key: ["X-A: 1"]})


def test_base64_flag_is_kept_and_the_body_left_encoded() -> None:
    result = parse_proxy_result({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True})
    assert (result.body, result.is_base64) == ("aGk=", True)


def test_body_text_decodes_base64() -> None:
    result = parse_proxy_result({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True})
    assert result.body_text() == "hi"


def test_base64_flag_given_as_a_string_is_understood() -> None:
    result = parse_proxy_result({"statusCode": 200, "body": "aGk=", "isBase64Encoded": "true"})
    assert result.body_text() == "hi"


def test_body_text_is_the_body_when_not_base64() -> None:
    assert parse_proxy_result({"statusCode": 200, "body": "aGk="}).body_text() == "aGk="


def test_body_text_is_none_without_a_body() -> None:
    assert parse_proxy_result({"statusCode": 200, "isBase64Encoded": True}).body_text() is None


BAD_BASE64 = ["not base64!", "é", base64.b64encode(b"\xff\xfe").decode()]


@pytest.mark.parametrize("body", BAD_BASE64)
def test_bad_base64_body_is_invalid_when_parsed(body: str) -> None:
    with pytest.raises(InvalidProxyResult, match="base64"):
        parse_proxy_result({"statusCode": 200, "body": body, "isBase64Encoded": True})


@pytest.mark.parametrize("body", BAD_BASE64)
def test_body_text_of_a_hand_built_bad_base64_result_is_invalid(body: str) -> None:
    with pytest.raises(InvalidProxyResult, match="base64"):
        ProxyResult(200, {}, body, is_base64=True).body_text()


@given(st.text())
def test_any_text_round_trips_through_base64(text: str) -> None:
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    result = parse_proxy_result({"statusCode": 200, "body": encoded, "isBase64Encoded": True})
    assert result.body_text() == text


any_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=3)
    ),
    max_leaves=10,
)
proxy_keys = st.sampled_from(
    ["statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "other"]
)


@given(any_values | st.dictionaries(proxy_keys, any_values))
def test_any_value_parses_or_raises_invalid_proxy_result(value: Any) -> None:
    try:
        result = parse_proxy_result(value)
    except InvalidProxyResult:
        return
    text = result.body_text()  # a parsed result's body always decodes
    assert 100 <= result.status_code <= 599
    assert all(isinstance(item, str) for item in [*result.headers, *result.headers.values()])
    assert text is None or isinstance(text, str)


@pytest.mark.parametrize(
    ("status", "expected"), [(199, False), (200, True), (299, True), (300, False)]
)
def test_is_success_means_2xx(status: int, expected: bool) -> None:
    assert is_success(status) is expected

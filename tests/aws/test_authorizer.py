"""REQUEST Lambda authorizers on $connect: identity sources, input event, result evaluation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.authorizer import (
    AuthorizerDecision,
    IdentitySource,
    authorizer_error_status,
    authorizer_event,
    evaluate_authorizer_result,
    method_arn,
    missing_identity,
    parse_identity_source,
    request_context_authorizer,
)

ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"
AUTH_HEADER = IdentitySource("header", "Authorization")
TOKEN_QUERY = IdentitySource("querystring", "token")

CONNECT_EVENT: dict[str, Any] = {
    "headers": {
        "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "Authorization": "Bearer abc",
        "Sec-WebSocket-Version": "13",
    },
    "multiValueHeaders": {
        "Host": ["abcdef1234.execute-api.us-east-1.amazonaws.com"],
        "Authorization": ["Bearer abc"],
        "Sec-WebSocket-Version": ["13"],
    },
    "queryStringParameters": {"token": "abc"},
    "multiValueQueryStringParameters": {"token": ["abc"]},
    "requestContext": {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "stage": "dev",
        "connectionId": "XfGLwdvRtjMCFsA=",
        "apiId": "abcdef1234",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "test"},
    },
    "isBase64Encoded": False,
}


def policy_result(*statements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "principalId": "user-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
        **extra,
    }


def allow(resource: Any = ARN, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(resource: Any = ARN, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def evaluate(result: object) -> AuthorizerDecision:
    return evaluate_authorizer_result(result, method_arn=ARN)


# --- identity sources ------------------------------------------------------------------------


def test_header_identity_source_parses() -> None:
    assert parse_identity_source("route.request.header.Authorization") == AUTH_HEADER


def test_querystring_identity_source_parses() -> None:
    assert parse_identity_source("route.request.querystring.token") == TOKEN_QUERY


def test_identity_source_prints_as_configured() -> None:
    assert str(AUTH_HEADER) == "route.request.header.Authorization"


@pytest.mark.parametrize(
    "source",
    [
        "route.request.header.",
        "route.request.querystring.",
        "route.request.header.Bad Name",
        "stageVariables.secret",
        "context.requestId",
        "$request.header.Authorization",
        "Authorization",
        "",
    ],
)
def test_unsupported_identity_source_is_a_value_error(source: str) -> None:
    with pytest.raises(ValueError, match="identity source"):
        parse_identity_source(source)


def test_present_identity_is_not_missing() -> None:
    headers = [("Authorization", "Bearer abc")]
    assert missing_identity([AUTH_HEADER, TOKEN_QUERY], headers, [("token", "t")]) is None


def test_header_identity_matches_any_case() -> None:
    assert missing_identity([AUTH_HEADER], [("authorization", "Bearer abc")], None) is None


def test_absent_header_is_missing() -> None:
    assert missing_identity([AUTH_HEADER], [("Host", "x")], None) == AUTH_HEADER


def test_empty_header_is_missing() -> None:
    assert missing_identity([AUTH_HEADER], [("Authorization", "  ")], None) == AUTH_HEADER


def test_no_query_string_means_query_identity_is_missing() -> None:
    assert missing_identity([TOKEN_QUERY], [], None) == TOKEN_QUERY


def test_empty_query_parameter_is_missing() -> None:
    assert missing_identity([TOKEN_QUERY], [], [("token", "")]) == TOKEN_QUERY


def test_query_identity_name_is_case_sensitive() -> None:
    assert missing_identity([TOKEN_QUERY], [], [("Token", "t")]) == TOKEN_QUERY


def test_first_missing_identity_is_reported() -> None:
    other = IdentitySource("header", "X-Api-Key")
    assert missing_identity([AUTH_HEADER, other, TOKEN_QUERY], [], None) == AUTH_HEADER


def test_one_non_empty_occurrence_of_a_repeated_header_is_enough() -> None:
    headers = [("Authorization", ""), ("Authorization", "Bearer abc")]
    assert missing_identity([AUTH_HEADER], headers, None) is None


@given(
    name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1),
    flips=st.lists(st.booleans()),
    value=st.text(min_size=1).filter(str.strip),
)
def test_header_identity_ignores_name_case(name: str, flips: list[bool], value: str) -> None:
    sent = "".join(c.upper() if i < len(flips) and flips[i] else c for i, c in enumerate(name))
    assert missing_identity([IdentitySource("header", name)], [(sent, value)], None) is None


# --- method ARN and input event --------------------------------------------------------------


def test_method_arn_has_no_http_verb() -> None:
    arn = method_arn(
        region="us-east-1", account_id="123456789012", api_id="abcdef1234", stage="dev"
    )
    assert arn == ARN


def test_method_arn_takes_another_route_key() -> None:
    arn = method_arn(region="r", account_id="1", api_id="a", stage="s", route_key="$default")
    assert arn == "arn:aws:execute-api:r:1:a/s/$default"


def test_authorizer_event_is_a_request_event_with_method_arn() -> None:
    event = authorizer_event(CONNECT_EVENT, method_arn=ARN)
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == ARN


UPGRADE_HEADERS = {"Connection": "upgrade", "content-length": "0", "Upgrade": "websocket"}


def test_authorizer_event_carries_headers_and_query() -> None:
    event = authorizer_event(CONNECT_EVENT, method_arn=ARN)
    assert event["headers"] == {**CONNECT_EVENT["headers"], **UPGRADE_HEADERS}
    assert event["multiValueHeaders"] == {
        **CONNECT_EVENT["multiValueHeaders"],
        **{name: [value] for name, value in UPGRADE_HEADERS.items()},
    }
    assert event["queryStringParameters"] == {"token": "abc"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"]}


def test_authorizer_event_keys_follow_the_aws_example_order() -> None:
    event = authorizer_event(CONNECT_EVENT, method_arn=ARN)
    assert list(event) == [
        "type",
        "methodArn",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "stageVariables",
        "requestContext",
    ]


def test_authorizer_event_has_empty_query_maps_when_the_url_had_none() -> None:
    # As in the Powertools 2025 capture (tests/aws/captures/powertools-websocket-authorizer.json).
    connect = {
        k: v for k, v in CONNECT_EVENT.items() if "QueryString" not in k and "queryString" not in k
    }
    event = authorizer_event(connect, method_arn=ARN)
    assert event["queryStringParameters"] == {}
    assert event["multiValueQueryStringParameters"] == {}


def test_authorizer_event_headers_are_sorted_by_name_ignoring_case() -> None:
    headers = list(authorizer_event(CONNECT_EVENT, method_arn=ARN)["headers"])
    assert headers == sorted(headers, key=str.lower)


def test_authorizer_event_keeps_upgrade_headers_the_client_already_has() -> None:
    connect = {**CONNECT_EVENT, "headers": {**CONNECT_EVENT["headers"], "connection": "Upgrade"}}
    headers = authorizer_event(connect, method_arn=ARN)["headers"]
    assert headers["connection"] == "Upgrade"
    assert "Connection" not in headers


def test_authorizer_event_always_has_stage_variables() -> None:
    assert authorizer_event(CONNECT_EVENT, method_arn=ARN)["stageVariables"] == {}


def test_authorizer_event_passes_stage_variables_through() -> None:
    connect = {**CONNECT_EVENT, "stageVariables": {"env": "dev"}}
    assert authorizer_event(connect, method_arn=ARN)["stageVariables"] == {"env": "dev"}


def test_authorizer_event_keeps_connection_id() -> None:
    context = authorizer_event(CONNECT_EVENT, method_arn=ARN)["requestContext"]
    assert context == CONNECT_EVENT["requestContext"]
    assert context["connectionId"] == "XfGLwdvRtjMCFsA="


def test_authorizer_event_has_no_body_or_path_parameters() -> None:
    event = authorizer_event(CONNECT_EVENT, method_arn=ARN)
    assert "pathParameters" not in event
    assert "isBase64Encoded" not in event


def test_authorizer_event_drops_a_stale_authorizer_context() -> None:
    connect = copy.deepcopy(CONNECT_EVENT)
    connect["requestContext"]["authorizer"] = {"principalId": "earlier"}
    assert "authorizer" not in authorizer_event(connect, method_arn=ARN)["requestContext"]


def test_mutating_the_authorizer_event_leaves_the_connect_event_alone() -> None:
    connect = copy.deepcopy(CONNECT_EVENT)
    event = authorizer_event(connect, method_arn=ARN)
    event["headers"]["Authorization"] = "changed"
    event["multiValueHeaders"]["Host"].append("evil")
    event["requestContext"]["identity"]["sourceIp"] = "changed"
    assert connect == CONNECT_EVENT


# --- evaluating the result -------------------------------------------------------------------


def test_allow_on_the_method_arn_is_allowed() -> None:
    decision = evaluate(policy_result(allow()))
    assert decision.allowed
    assert decision.status == 200
    assert decision.principal_id == "user-1"


def test_aws_example_result_is_allowed_with_its_context() -> None:
    result = policy_result(
        allow(),
        context={"stringKey": "value", "numberKey": 1, "booleanKey": True},
        usageIdentifierKey="optional-api-key",
    )
    decision = evaluate(result)
    assert decision.allowed
    assert decision.context == {"stringKey": "value", "numberKey": 1, "booleanKey": True}
    assert decision.usage_identifier_key == "optional-api-key"


def test_single_statement_object_is_tolerated() -> None:
    result = {"principalId": "u", "policyDocument": {"Statement": allow()}}
    assert evaluate(result).allowed


@pytest.mark.parametrize(
    "action",
    [
        "execute-api:Invoke",
        "execute-api:*",
        "*",
        "EXECUTE-API:invoke",
        "execute-api:Inv?ke",
        ["execute-api:ManageConnections", "execute-api:Invoke"],
    ],
)
def test_action_forms_that_cover_invoke_are_allowed(action: Any) -> None:
    assert evaluate(policy_result(allow(action=action))).allowed


@pytest.mark.parametrize(
    "action", ["execute-api:ManageConnections", "lambda:Invoke", ["s3:*", "execute-api:Inv"]]
)
def test_action_that_does_not_cover_invoke_is_forbidden(action: Any) -> None:
    decision = evaluate(policy_result(allow(action=action)))
    assert not decision.allowed
    assert decision.status == 403


@pytest.mark.parametrize(
    "resource",
    [
        ARN,
        "*",
        "arn:aws:execute-api:*",
        "arn:aws:execute-api:*:*:*",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/de?/$connect",
        ["arn:aws:execute-api:us-east-1:123456789012:other/*", ARN],
    ],
)
def test_resource_forms_that_match_the_method_arn_are_allowed(resource: Any) -> None:
    assert evaluate(policy_result(allow(resource=resource))).allowed


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/$connect",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect/extra",
        "arn:aws:execute-api:us-east-1:123456789012:ABCDEF1234/dev/$connect",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/d?/$connect",
        [],
    ],
)
def test_resource_that_does_not_match_is_forbidden(resource: Any) -> None:
    decision = evaluate(policy_result(allow(resource=resource)))
    assert not decision.allowed
    assert decision.status == 403


def test_explicit_deny_wins_over_allow() -> None:
    decision = evaluate(policy_result(allow(), deny()))
    assert not decision.allowed
    assert decision.status == 403
    assert "denied by policy statement 1" in decision.reason


def test_deny_on_another_resource_does_not_block() -> None:
    other = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/*"
    assert evaluate(policy_result(deny(resource=other), allow())).allowed


def test_deny_of_another_action_does_not_block() -> None:
    assert evaluate(policy_result(deny(action="execute-api:ManageConnections"), allow())).allowed


def test_lower_case_effect_is_honoured() -> None:
    result = policy_result(allow() | {"Effect": "allow"}, deny() | {"Effect": "deny"})
    assert evaluate(result).status == 403


def test_not_resource_allows_everything_else() -> None:
    statement = {"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:execute-api:*/prod/*"}
    assert evaluate(policy_result(statement)).allowed


def test_not_action_deny_blocks_invoke() -> None:
    statement = {"Effect": "Deny", "NotAction": "execute-api:ManageConnections", "Resource": "*"}
    assert evaluate(policy_result(allow(), statement)).status == 403


def test_empty_statement_list_is_forbidden() -> None:
    decision = evaluate(policy_result())
    assert decision.status == 403
    assert "no policy statement allows" in decision.reason


def test_refused_decision_keeps_the_principal_for_the_log() -> None:
    assert evaluate(policy_result(deny())).principal_id == "user-1"


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (None, "expected an object, got NoneType"),
        ("Allow", "expected an object, got str"),
        ([allow()], "expected an object, got list"),
        ({"policyDocument": {"Statement": [allow()]}}, "principalId must be a string"),
        ({"principalId": 7, "policyDocument": {"Statement": [allow()]}}, "principalId"),
        ({"principalId": "u"}, "policyDocument must be an object"),
        ({"principalId": "u", "policyDocument": {}}, "Statement must be a list"),
        ({"principalId": "u", "policyDocument": {"Statement": ["x"]}}, "must be an object"),
        (policy_result({"Effect": "Maybe", "Action": "*", "Resource": "*"}), "Effect"),
        (policy_result({"Effect": "Allow", "Resource": "*"}), "neither Action nor NotAction"),
        (policy_result({"Effect": "Allow", "Action": "*"}), "neither Resource nor NotResource"),
        (policy_result(allow(resource=7)), "Resource must be a string or a list"),
        (policy_result(allow(), context=["a"]), "context must be an object"),
        (policy_result(allow(), usageIdentifierKey=1), "usageIdentifierKey"),
    ],
)
def test_malformed_result_is_a_server_error(result: object, reason: str) -> None:
    decision = evaluate(result)
    assert not decision.allowed
    assert decision.status == 500
    assert reason in decision.reason


@pytest.mark.parametrize("value", [{"nested": 1}, [1, 2], None])
def test_context_value_that_is_not_scalar_is_a_server_error_naming_the_key(value: object) -> None:
    decision = evaluate(policy_result(allow(), context={"ok": 1, "bad": value}))
    assert decision.status == 500
    assert "'bad'" in decision.reason


def test_malformed_context_fails_even_when_denied() -> None:
    assert evaluate(policy_result(deny(), context={"bad": None})).status == 500


_ARNS = st.builds(
    method_arn,
    region=st.sampled_from(["us-east-1", "eu-west-3"]),
    account_id=st.from_regex(r"\d{12}", fullmatch=True),
    api_id=st.from_regex(r"[a-z0-9]{10}", fullmatch=True),
    stage=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_*?.", min_size=1),
    route_key=st.sampled_from(["$connect", "$default", "send.message"]),
)


@given(arn=_ARNS)
def test_exact_resource_allows_any_method_arn(arn: str) -> None:
    # Stage names with '*' or '?' must still match themselves literally.
    assert evaluate_authorizer_result(policy_result(allow(resource=arn)), method_arn=arn).allowed


@given(arn=_ARNS, statements=st.lists(st.sampled_from([allow("*"), deny("*")]), min_size=1))
def test_any_matching_deny_wins_wherever_it_appears(
    arn: str, statements: list[dict[str, Any]]
) -> None:
    decision = evaluate_authorizer_result(policy_result(*statements), method_arn=arn)
    assert decision.allowed == (deny("*") not in statements)


# --- errors and the context later events carry -----------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [Exception("Unauthorized"), RuntimeError("Unauthorized"), PermissionError("Unauthorized")],
)
def test_unauthorized_message_is_401_whatever_the_class(exc: BaseException) -> None:
    assert authorizer_error_status(exc) == 401


@pytest.mark.parametrize(
    "exc",
    [
        Exception("unauthorized"),
        Exception("Unauthorized."),
        Exception("Unauthorized", "extra"),
        KeyError("Unauthorized"),
        ValueError("boom"),
        Exception(),
    ],
)
def test_any_other_authorizer_error_is_500(exc: BaseException) -> None:
    assert authorizer_error_status(exc) == 500


def test_request_context_authorizer_is_principal_plus_native_context() -> None:
    decision = evaluate(policy_result(allow(), context={"n": 1, "f": 1.5, "b": False, "s": "x"}))
    assert request_context_authorizer(decision) == {
        "principalId": "user-1",
        "n": 1,
        "f": 1.5,
        "b": False,
        "s": "x",
    }


def test_request_context_authorizer_without_context_is_just_the_principal() -> None:
    assert request_context_authorizer(evaluate(policy_result(allow()))) == {"principalId": "user-1"}


def test_context_cannot_override_the_principal() -> None:
    decision = evaluate(policy_result(allow(), context={"principalId": "admin"}))
    assert request_context_authorizer(decision)["principalId"] == "user-1"


def test_refused_decision_has_no_request_context_authorizer() -> None:
    with pytest.raises(ValueError, match="only an allowed decision"):
        request_context_authorizer(evaluate(policy_result(deny())))


@given(
    context=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k != "principalId"),
        st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans()),
    )
)
def test_any_scalar_context_reaches_later_events_unchanged(context: dict[str, Any]) -> None:
    decision = evaluate(policy_result(allow(), context=context))
    assert decision.allowed
    assert request_context_authorizer(decision) == {"principalId": "user-1", **context}

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.selection import compile_route_selection, select_route

ACTION = compile_route_selection("$request.body.action")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def evaluate(expression: str, body: Any) -> str | None:
    return compile_route_selection(expression).evaluate(orjson.dumps(body))


# --- compiling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "$default",
        "$context.routeKey",
        "$request.header.x",
        "$request.bodyx",
        "${request.body.action",
        "$request.body..action",
        "$request.body.",
        "$request.body.*",
        "$request.body[*]",
        "$request.body[1:2]",
        "$request.body[?(@.a)]",
        "$request.body['unterminated",
        "$request.body[0",
        "${request.body.a]x}",
        "${request.body.*}",
    ],
)
def test_malformed_expression_raises_value_error(expression: str) -> None:
    with pytest.raises(ValueError, match="route selection expression"):
        compile_route_selection(expression)


def test_error_message_names_the_position() -> None:
    with pytest.raises(ValueError, match="at position 14"):
        compile_route_selection("$request.body..a")


def test_unescaped_dollar_error_suggests_the_escape() -> None:
    with pytest.raises(ValueError, match=r"write \\\$ for a literal \$"):
        compile_route_selection("$default")


@given(st.text())
def test_arbitrary_expressions_compile_or_raise_value_error(expression: str) -> None:
    with contextlib.suppress(ValueError):
        compile_route_selection(expression)


@given(
    st.lists(
        st.sampled_from(
            ["$", "{", "}", "[", "]", ".", "'", '"', "\\", "request", ".body", "-1", "0", "a", " "]
        )
    ).map("".join)
)
def test_expressions_made_of_syntax_pieces_compile_or_raise_value_error(expression: str) -> None:
    try:
        selector = compile_route_selection(expression)
    except ValueError:
        return
    assert isinstance(selector.evaluate(b'{"a": [1, {"b": 2}]}'), str)


def test_selector_repr_shows_the_expression() -> None:
    assert repr(ACTION) == "RouteSelector('$request.body.action')"


# --- evaluating -------------------------------------------------------------------------------


def test_action_is_selected_from_a_json_object() -> None:
    assert ACTION.evaluate('{"action": "sendmessage"}') == "sendmessage"


def test_bytes_bodies_are_accepted() -> None:
    assert ACTION.evaluate(b'{"action": "join"}') == "join"


def test_non_json_body_evaluates_to_none() -> None:
    assert ACTION.evaluate("hello there") is None


def test_invalid_utf8_body_evaluates_to_none() -> None:
    assert ACTION.evaluate(b'{"action": "\xff"}') is None


def test_too_deeply_nested_body_evaluates_to_none() -> None:
    assert ACTION.evaluate("[" * 2000 + "]" * 2000) is None


def test_missing_key_evaluates_to_empty_string() -> None:
    assert ACTION.evaluate('{"other": 1}') == ""


def test_json_scalar_body_evaluates_to_empty_string() -> None:
    assert ACTION.evaluate('"action"') == ""


def test_array_body_evaluates_to_empty_string_for_a_name() -> None:
    assert ACTION.evaluate('[{"action": "x"}]') == ""


def test_null_value_evaluates_to_empty_string() -> None:
    assert evaluate("$request.body.action", {"action": None}) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (-7, "-7"),
        (1.5, "1.5"),
        (2.0, "2.0"),
        (True, "true"),
        (False, "false"),
        ("", ""),
        (["a", 1, True, None], "[a, 1, true, null]"),
        ({"k": "v", "k2": [1, 2]}, "{k=v, k2=[1, 2]}"),
        ([], "[]"),
        ({}, "{}"),
    ],
)
def test_values_are_stringified_java_style(value: Any, expected: str) -> None:
    assert evaluate("$request.body.action", {"action": value}) == expected


def test_nested_dotted_path() -> None:
    assert evaluate("$request.body.meta.type", {"meta": {"type": "chat"}}) == "chat"


def test_nested_path_through_a_non_object_is_empty() -> None:
    assert evaluate("$request.body.meta.type", {"meta": "flat"}) == ""


def test_braced_variable() -> None:
    assert evaluate("${request.body.meta.type}", {"meta": {"type": "chat"}}) == "chat"


def test_several_variables_with_static_text() -> None:
    body = {"service": "chat", "action": "join"}
    assert evaluate("${request.body.service}/${request.body.action}", body) == "chat/join"


def test_missing_variable_in_a_template_is_empty() -> None:
    assert evaluate("${request.body.action}-${request.body.invalidPath}", {"action": "join"}) == (
        "join-"
    )


def test_static_expression_is_its_own_value() -> None:
    assert evaluate("action", {"action": "join"}) == "action"


def test_static_expression_still_needs_a_json_body() -> None:
    assert compile_route_selection("action").evaluate("not json") is None


def test_escaped_dollar_is_literal() -> None:
    assert evaluate("\\$default", {}) == "$default"


def test_escaped_backslash_is_literal() -> None:
    assert evaluate("a\\\\b", {}) == "a\\b"


def test_other_backslashes_are_kept() -> None:
    assert evaluate("a\\b", {}) == "a\\b"


def test_quoted_name_may_contain_dots_and_spaces() -> None:
    assert evaluate("$request.body['a.b c']", {"a.b c": "x"}) == "x"


def test_double_quoted_name() -> None:
    assert evaluate('$request.body["key"]', {"key": "x"}) == "x"


def test_quoted_name_with_escaped_quote() -> None:
    assert evaluate("$request.body['it\\'s']", {"it's": "x"}) == "x"


def test_array_index() -> None:
    assert evaluate("$request.body.items[1].name", {"items": [{"name": "a"}, {"name": "b"}]}) == "b"


def test_negative_array_index_counts_from_the_end() -> None:
    assert evaluate("$request.body.items[-1]", {"items": ["a", "b"]}) == "b"


def test_array_index_out_of_range_is_empty() -> None:
    assert evaluate("$request.body.items[5]", {"items": ["a"]}) == ""


def test_array_index_on_an_object_is_empty() -> None:
    assert evaluate("$request.body.items[0]", {"items": {"0": "a"}}) == ""


def test_unbraced_names_may_contain_hyphens() -> None:
    assert evaluate("$request.body.message-type", {"message-type": "x"}) == "x"


def test_whole_body_variable_stringifies_the_body() -> None:
    assert evaluate("$request.body", {"a": 1}) == "{a=1}"


def test_evaluation_does_not_recurse_into_values() -> None:
    assert evaluate("$request.body.action", {"action": "${request.body.other}", "other": "x"}) == (
        "${request.body.other}"
    )


@given(json_values)
def test_arbitrary_json_bodies_evaluate_to_a_string(body: Any) -> None:
    assert isinstance(ACTION.evaluate(orjson.dumps(body)), str)


@given(json_values)
def test_arbitrary_json_bodies_evaluate_in_a_template(body: Any) -> None:
    selector = compile_route_selection("x${request.body[0]['a'].b}${request.body.c[-1]}")
    assert isinstance(selector.evaluate(orjson.dumps(body)), str)


@given(json_values | st.dictionaries(st.sampled_from("ab"), json_values))
def test_fast_path_agrees_with_the_general_path(body: Any) -> None:
    raw = orjson.dumps({"a": body})
    fast = compile_route_selection("$request.body.a.b").evaluate(raw)
    general = compile_route_selection("${request.body.a.b}!").evaluate(raw)
    assert f"{fast}!" == general


@given(st.text())
def test_arbitrary_text_never_raises(body: str) -> None:
    result = ACTION.evaluate(body)
    assert result is None or isinstance(result, str)


@given(st.binary())
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    result = ACTION.evaluate(body)
    assert result is None or isinstance(result, str)


@given(st.dictionaries(st.text(), json_values), st.text())
def test_a_string_action_is_selected_as_is(body: dict[str, Any], action: str) -> None:
    assert ACTION.evaluate(orjson.dumps({**body, "action": action})) == action


@given(st.lists(st.text(min_size=1), min_size=1, max_size=4), st.text())
def test_quoted_paths_reach_any_key(keys: list[str], leaf: str) -> None:
    document: Any = leaf
    for key in reversed(keys):
        document = {key: document}
    quoted = "".join("['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']" for key in keys)
    assert evaluate("$request.body" + quoted, document) == leaf


@given(st.text().filter(lambda text: "$" not in text and "\\" not in text))
def test_text_without_variables_is_static(text: str) -> None:
    if text:
        assert evaluate(text, {}) == text


# --- selecting a route ------------------------------------------------------------------------

ROUTES = {"$connect", "$disconnect", "$default", "sendmessage", "join"}


def test_exact_match_selects_the_route() -> None:
    assert select_route(ACTION, '{"action": "join"}', ROUTES) == "join"


def test_matching_is_case_sensitive() -> None:
    assert select_route(ACTION, '{"action": "JOIN"}', ROUTES) == "$default"


def test_unknown_key_goes_to_default() -> None:
    assert select_route(ACTION, '{"action": "other"}', ROUTES) == "$default"


def test_unknown_key_without_default_selects_nothing() -> None:
    assert select_route(ACTION, '{"action": "other"}', {"join"}) is None


def test_non_json_goes_to_default() -> None:
    assert select_route(ACTION, "hello", ROUTES) == "$default"


def test_non_json_without_default_selects_nothing() -> None:
    assert select_route(ACTION, "hello", {"join"}) is None


def test_missing_key_goes_to_default() -> None:
    assert select_route(ACTION, "{}", ROUTES) == "$default"


@pytest.mark.parametrize("system_route", ["$connect", "$disconnect"])
def test_frames_never_select_connect_or_disconnect(system_route: str) -> None:
    body = orjson.dumps({"action": system_route})
    assert select_route(ACTION, body, ROUTES) == "$default"


def test_frames_may_name_default_explicitly() -> None:
    assert select_route(ACTION, '{"action": "$default"}', ROUTES) == "$default"


def test_numeric_keys_match_stringified_routes() -> None:
    assert select_route(ACTION, '{"action": 7}', {"7"}) == "7"


# --- the shortcut for bodies that cannot hold the key -----------------------------------------


def test_a_body_without_the_key_text_cannot_select() -> None:
    assert ACTION.cannot_select('{"type":"chat.message","body":"hi"}')
    assert ACTION.cannot_select(b'{"type":"chat.message","body":"hi"}')


def test_a_body_with_the_key_text_may_select() -> None:
    assert not ACTION.cannot_select('{"action":"join"}')
    assert not ACTION.cannot_select(b'{"action":"join"}')


def test_a_key_written_with_escapes_is_still_selected() -> None:
    body = '{"\\u0061ction": "join"}'
    assert not ACTION.cannot_select(body)
    assert select_route(ACTION, body, ROUTES) == "join"


def test_expressions_that_are_not_a_plain_path_never_take_the_shortcut() -> None:
    for expression in ("$request.body", "x${request.body.action}", "$request.body.items[0]"):
        assert not compile_route_selection(expression).cannot_select("{}")


def test_the_shortcut_keeps_a_route_named_by_the_empty_key() -> None:
    # Not configurable (route keys must not be empty), but select_route takes any container.
    assert select_route(ACTION, '{"type": "x"}', {"", "$default"}) == ""
    assert select_route(ACTION, "not json", {"", "$default"}) == "$default"


def _parsed_route(selector: Any, body: str | bytes, routes: set[str]) -> str | None:
    """select_route without the shortcut: always parse."""
    key = selector.evaluate(body)
    if key is not None and key in routes and key not in {"$connect", "$disconnect"}:
        return str(key)
    return "$default" if "$default" in routes else None


KEYS = st.sampled_from(["action", "act", "ction", "\u00e9", 'a"b', "a\\b", "type"])


@given(
    st.sampled_from(["$request.body.action", "$request.body.\u00e9", "$request.body['a\"b'].x"]),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
        max_leaves=8,
    ),
    st.booleans(),
    st.booleans(),
)
def test_the_shortcut_agrees_with_parsing(
    expression: str, document: Any, ascii_only: bool, as_bytes: bool
) -> None:
    selector = compile_route_selection(expression)
    text = orjson.dumps(document).decode() if not ascii_only else _ascii_json(document)
    body: str | bytes = text.encode() if as_bytes else text
    routes = {"$default", "join", "x", "1", "true", "[1]"}
    assert select_route(selector, body, routes) == _parsed_route(selector, body, routes)


@given(st.text(max_size=40), st.booleans())
def test_the_shortcut_agrees_with_parsing_on_any_text(text: str, as_bytes: bool) -> None:
    body: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    routes = {"$default", "join"}
    assert select_route(ACTION, body, {"join"}) == _parsed_route(ACTION, body, {"join"})
    assert select_route(ACTION, body, routes) == _parsed_route(ACTION, body, routes)


def _ascii_json(document: Any) -> str:
    """JSON with every non-ASCII character escaped (keys then carry a backslash)."""
    import json

    return json.dumps(document, ensure_ascii=True)


ROUTE_SETS = st.sampled_from(
    [
        frozenset({"$default", "join"}),
        frozenset({"join", "x"}),
        frozenset({"", "$default"}),
        frozenset({"", "join"}),
        frozenset({"$connect", "$disconnect", "$default", "true", "1", "[1]"}),
        frozenset(),
    ]
)


@given(
    st.sampled_from(["$request.body.action", "$request.body.\u00e9", "$request.body.a.b"]),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(KEYS | st.just("join") | st.just("a"), inner, max_size=3)
        ),
        max_leaves=8,
    )
    | st.text(max_size=12).map(lambda text: ("raw", text)),
    ROUTE_SETS,
    st.booleans(),
)
def test_select_agrees_with_parsing_for_any_routes(
    expression: str, document: Any, routes: frozenset[str], as_bytes: bool
) -> None:
    # RouteSelector.select writes the one-name case out; it must match evaluate + the route
    # rules for every route set (with "" and without $default too), and for text that is not JSON.
    selector = compile_route_selection(expression)
    if isinstance(document, tuple) and document[:1] == ("raw",):
        text = document[1]
    else:
        text = orjson.dumps(document).decode()
    body: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert selector.select(body, routes) == _parsed_route(selector, body, set(routes))

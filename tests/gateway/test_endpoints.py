"""The management endpoint table (gateway/management/endpoints.py), without sockets."""

from __future__ import annotations

import pytest

from hubbub.aws.management import RESOURCES, parse_management_path
from hubbub.gateway.management import endpoints
from hubbub.gateway.management.endpoints import (
    ENDPOINTS,
    SHAPES,
    MethodNotAllowedError,
    NotFoundError,
)


def test_every_endpoint_is_at_a_known_shape_and_every_shape_has_an_endpoint() -> None:
    patterns = {shape.pattern for shape in SHAPES.values()}
    assert {pattern for _, pattern in ENDPOINTS} == patterns
    assert {resource for resource, _, _ in SHAPES} == RESOURCES


@pytest.mark.parametrize(
    ("method", "raw_path", "handler", "label"),
    [
        ("POST", "/dev/@connections/abc%3D", endpoints.post_to_connection, "connection_post"),
        ("GET", "/dev/@connections", endpoints.list_connections, "connections_get"),
        ("PUT", "/dev/@rooms/r/connections/c", endpoints.join_room, "member_put"),
        ("PUT", "/dev/@rooms/r/presence/c", endpoints.set_presence, "presence_put"),
        ("GET", "/dev/@rooms/r/presence", endpoints.room_presence, "presence_get"),
        ("PUT", "/dev/@users/u/connections/c", endpoints.bind_user, "binding_put"),
        ("POST", "/dev/@broadcast", endpoints.broadcast, "broadcast_post"),
    ],
)
def test_a_path_and_method_find_their_handler_and_metrics_label(
    method: str, raw_path: str, handler: endpoints.Handler, label: str
) -> None:
    path = parse_management_path(raw_path)
    assert path is not None
    assert endpoints.endpoint(method, path, raw_path) is handler
    assert endpoints.operation(path, method) == label


def test_a_known_path_with_another_method_is_405_and_an_unknown_one_404() -> None:
    path = parse_management_path("/dev/@connections/abc")
    assert path is not None
    with pytest.raises(MethodNotAllowedError):
        endpoints.endpoint("PATCH", path, "/dev/@connections/abc")
    assert endpoints.operation(path, "PATCH") == "connection_patch"
    path = parse_management_path("/dev/@connections/abc/nothing")
    assert path is not None
    with pytest.raises(NotFoundError):
        endpoints.endpoint("GET", path, "/dev/@connections/abc/nothing")
    assert endpoints.operation(path, "GET") == "unknown"


def test_a_path_seen_before_is_not_decoded_again() -> None:
    # The seed pattern posts to the same connections over and over: their paths are cached.
    raw = "/dev/%40connections/cachedId%3D"
    first = parse_management_path(raw)
    assert first is not None
    assert first.ident == "cachedId="
    assert parse_management_path(raw) is first


def test_a_long_path_is_parsed_alike_but_not_kept() -> None:
    raw = "/dev/@connections/" + "x" * 300
    first = parse_management_path(raw)
    assert first is not None
    assert first.ident == "x" * 300
    second = parse_management_path(raw)
    assert second == first
    assert second is not first

"""The AWS API Gateway WebSocket contract, as pure functions.

Everything a gateway needs to look like API Gateway to Lambda handlers and to boto3, with no
asyncio, no sockets and no I/O, so it is tested without an event loop:

- :mod:`~hubbub.aws.ids`: connection, request and API ids in AWS's shapes;
- :mod:`~hubbub.aws.events`: ``$connect``, MESSAGE and ``$disconnect`` proxy events;
- :mod:`~hubbub.aws.selection`: route selection expressions and route choice;
- :mod:`~hubbub.aws.frames`: the Forbidden / Internal server error frames, byte for byte;
- :mod:`~hubbub.aws.management`: the ``@connections`` paths, error responses, GetConnection body;
- :mod:`~hubbub.aws.results`: Lambda proxy results returned by handlers.

This package sits at the bottom of the dependency graph: it never imports ``hubbub.gateway``,
``hubbub.store`` or anything else that awaits.
"""

from __future__ import annotations

from hubbub.aws.events import (
    ApiContext,
    ConnectionContext,
    MessageEventFactory,
    clf_time,
    connect_event,
    disconnect_event,
    message_event,
)
from hubbub.aws.frames import error_frame, forbidden_frame, internal_error_frame
from hubbub.aws.ids import api_id_for, is_valid_connection_id, new_connection_id, new_request_id
from hubbub.aws.management import (
    ManagementPath,
    error_body,
    error_headers,
    get_connection_body,
    iso8601_ms,
    parse_management_path,
)
from hubbub.aws.results import ProxyResult, is_success, parse_proxy_result
from hubbub.aws.selection import RouteSelector, compile_route_selection, select_route
from hubbub.errors import InvalidProxyResult

__all__ = [
    "ApiContext",
    "ConnectionContext",
    "InvalidProxyResult",
    "ManagementPath",
    "MessageEventFactory",
    "ProxyResult",
    "RouteSelector",
    "api_id_for",
    "clf_time",
    "compile_route_selection",
    "connect_event",
    "disconnect_event",
    "error_body",
    "error_frame",
    "error_headers",
    "forbidden_frame",
    "get_connection_body",
    "internal_error_frame",
    "is_success",
    "is_valid_connection_id",
    "iso8601_ms",
    "message_event",
    "new_connection_id",
    "new_request_id",
    "parse_management_path",
    "parse_proxy_result",
    "select_route",
]

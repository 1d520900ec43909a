"""The error frames API Gateway sends on a live socket byte for byte (docs/compatibility.md,
"Route selection" and "Handler results").

AWS's spacing is irregular: a space after the first colon only, e.g.
``{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", "requestId":"XDmGEE2RoE0FRdQ="}``.
Clients that compare strings depend on it, so the frames are assembled by hand.
"""

from __future__ import annotations

import orjson

__all__ = ["error_frame", "forbidden_frame", "internal_error_frame"]

_FORBIDDEN = b'{"message": "Forbidden", "connectionId":'
_INTERNAL_ERROR = b'{"message": "Internal server error", "connectionId":'


def _tail(connection_id: str, request_id: str) -> bytes:
    # orjson.dumps quotes and escapes; for AWS-shaped ids it is just the id in quotes.
    return orjson.dumps(connection_id) + b', "requestId":' + orjson.dumps(request_id) + b"}"


def forbidden_frame(connection_id: str, request_id: str) -> bytes:
    """The frame for a message that matched no route while there is no ``$default`` route."""
    return _FORBIDDEN + _tail(connection_id, request_id)


def internal_error_frame(connection_id: str, request_id: str) -> bytes:
    """The frame for a message whose integration failed (raised, timed out, bad result)."""
    return _INTERNAL_ERROR + _tail(connection_id, request_id)


def error_frame(message: str, connection_id: str, request_id: str) -> bytes:
    """An AWS-shaped error frame with any ``message`` (e.g. hubbub's ``Too Many Requests``)."""
    return (
        b'{"message": '
        + orjson.dumps(message)
        + b', "connectionId":'
        + _tail(connection_id, request_id)
    )

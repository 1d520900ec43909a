"""The ``@connections`` management API on the wire (docs/management-api.md): paths, errors,
GetConnection.

botocore maps an error response to an exception class by the ``x-amzn-ErrorType`` header
(``GoneException``, ``PayloadTooLargeException``, ...), before it looks at the body, so every error
carries that header; without it a 410 becomes a bare ``ClientError("410")``.

Paths arrive percent-encoded: boto3 encodes the connection id label with the safe set ``-._~``
(``=`` becomes ``%3D``, ``/`` becomes ``%2F``) and AWS's own examples write ``%40connections``. A
path is therefore split on literal ``/`` first and each segment decoded afterwards, so an encoded
``/`` stays inside its segment.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

__all__ = [
    "RESOURCES",
    "ManagementPath",
    "error_body",
    "error_headers",
    "get_connection_body",
    "iso8601_ms",
    "parse_management_path",
]

RESOURCES = frozenset({"connections", "rooms", "users", "broadcast"})
"""Resources served under ``/{stage}/@<resource>``: AWS's ``connections`` and hubbub's own."""


@dataclass(frozen=True)
class ManagementPath:
    """A parsed management path such as ``/dev/@rooms/lobby/connections/abc%3D``.

    ``ident`` is the decoded segment after the resource (None when absent); ``sub`` is what
    follows it, each segment decoded and joined with ``/`` (None when absent).
    """

    stage: str
    resource: str
    ident: str | None
    sub: str | None


def _decode(segment: str) -> str:
    # errors="strict": an id must round-trip exactly, so bad UTF-8 is a bad path, not U+FFFD.
    return unquote(segment, errors="strict") if "%" in segment else segment


def parse_management_path(raw_path: str) -> ManagementPath | None:
    """Parse the raw (still percent-encoded) request path, query string already removed.

    Returns None for anything that is not ``/{stage}/@{resource}[/{ident}[/{sub...}]]`` with a known
    resource, including empty segments and invalid percent-encoding. One trailing ``/`` is ignored.
    """
    # Short paths are cached: a handler posts to the same few connections over and over, and
    # decoding their ids was a tenth of an in-process post's own time. The result is frozen;
    # the bound on length and count keeps the cache under a megabyte whatever clients send.
    if len(raw_path) <= _CACHED_PATH_CHARS:
        return _parse_cached(raw_path)
    return _parse(raw_path)


_CACHED_PATH_CHARS = 200


def _parse(raw_path: str) -> ManagementPath | None:
    if not raw_path.startswith("/"):
        return None
    segments = raw_path[1:].split("/")
    if len(segments) > 2 and segments[-1] == "":
        segments.pop()
    if len(segments) < 2 or "" in segments:
        return None
    try:
        stage, resource, *rest = [_decode(segment) for segment in segments]
    except UnicodeDecodeError:
        return None
    if not resource.startswith("@") or resource[1:] not in RESOURCES:
        return None
    ident = rest[0] if rest else None
    sub = "/".join(rest[1:]) if len(rest) > 1 else None
    return ManagementPath(stage=stage, resource=resource[1:], ident=ident, sub=sub)


_parse_cached = functools.lru_cache(maxsize=2048)(_parse)


# API Gateway's own words where an error carries no message of ours (its default gateway
# responses: "Forbidden", "Too Many Requests", "Internal server error", ...).
_DEFAULT_MESSAGES = {
    "ForbiddenException": "Forbidden",
    "LimitExceededException": "Too Many Requests",
    "InternalServerErrorException": "Internal server error",
    "ServiceUnavailableException": "Service Unavailable",
    "NotFoundException": "Not Found",
}


def error_body(error_type: str, message: str | None) -> bytes:
    """The body of an error response, shaped as API Gateway's: ``{"message":"..."}``.

    That is the template of API Gateway's default gateway responses,
    ``{"message":$context.error.messageString}``, compact. A ``GoneException`` has an empty body:
    the model gives it no members, the Java SDK reports its message as ``null`` and the PHP SDK
    fails to parse a real 410's body as JSON (aws-sdk-java#2200, laravel-echo-api-gateway#9).
    The error type travels in the ``x-amzn-ErrorType`` header (see :func:`error_headers`), which
    botocore reads first.
    """
    if error_type == "GoneException":
        return b""
    if message is None:
        message = _DEFAULT_MESSAGES.get(error_type, error_type)
    return b'{"message":' + orjson.dumps(message) + b"}"


def error_headers(error_type: str, request_id: str) -> dict[str, str]:
    """The headers of an error response, so SDKs raise the right exception class."""
    return {
        "x-amzn-ErrorType": error_type,
        "x-amzn-RequestId": request_id,
        "Content-Type": "application/json",
    }


def iso8601_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as ``2024-01-20T11:54:57.419Z`` (UTC, millisecond precision)."""
    seconds, millis = divmod(epoch_ms, 1000)
    tm = time.gmtime(seconds)
    return (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{millis:03d}Z"
    )


def get_connection_body(
    *,
    connected_at: int,
    last_active_at: int,
    source_ip: str,
    user_agent: str,
    attributes: Mapping[str, Any] | None = None,
) -> bytes:
    """The GetConnection response body; ``attributes`` is a hubbub extension boto3 ignores.

    ``userAgent`` is always present (``""`` when the client sent none): the botocore model marks it
    required, and LocalStack crashed on its absence (localstack#12321).
    """
    body: dict[str, Any] = {
        "connectedAt": iso8601_ms(connected_at),
        "identity": {"sourceIp": source_ip, "userAgent": user_agent},
        "lastActiveAt": iso8601_ms(last_active_at),
    }
    if attributes is not None:
        body["attributes"] = dict(attributes)
    return orjson.dumps(body)

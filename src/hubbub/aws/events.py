"""Lambda proxy events for ``$connect``, messages and ``$disconnect``.

docs/compatibility.md, "Events" lists what they carry.

The shapes follow the current (2024-2025) AWS captures: compact ``identity``, no explicit nulls,
and per-event field presence exactly as AWS sends them:

=============================  ==========  =======  =============
top-level field                 $connect    MESSAGE  $disconnect
=============================  ==========  =======  =============
headers / multiValueHeaders     handshake   --       fixed set
query string parameters         if any      --       --
body                            --          frame    --
isBase64Encoded                 false       false    false
stageVariables                  if set      if set   if set
=============================  ==========  =======  =============

Keys are emitted in the order of the AWS captures. Message events are on the per-message hot path,
so :class:`MessageEventFactory` prebuilds everything that is constant for a connection.

Headers are what API Gateway forwards, not just what the client sent (:func:`gateway_headers`):
it adds ``X-Amzn-Trace-Id`` and ``X-Forwarded-For/Port/Proto``, lists them sorted by name without
regard to case, and leaves ``Upgrade`` and ``Connection`` out of the ``$connect`` event (the
authorizer's input keeps them, see ``hubbub.aws.authorizer``). ``$disconnect`` carries a fixed set:
``Host`` is the API's domain name and ``X-Forwarded-For`` is empty. The real captures these
shapes are checked against live in ``tests/aws/captures/``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hubbub.aws.headers import event_headers, gateway_headers, single_and_multi

__all__ = [
    "ApiContext",
    "ConnectionContext",
    "MessageEventFactory",
    "clf_time",
    "connect_event",
    "disconnect_event",
    "gateway_headers",
    "message_event",
]

# Spelled out rather than strftime("%b"), which follows the process locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What every event says about the API: ``apiId``, ``stage``, ``domainName``, stage variables.

    ``stage_variables`` becomes the top-level ``stageVariables`` only when it is not None.
    """

    api_id: str
    stage: str
    domain_name: str
    stage_variables: Mapping[str, str] | None = None


@dataclass(slots=True)
class ConnectionContext:
    """What every event says about one connection, captured at the handshake.

    ``headers`` keep their original case and order, repeats allowed; ``query`` is None when the URL
    had no query string. ``authorizer`` (principalId + context) becomes
    ``requestContext.authorizer`` on every event; ``attributes`` (a hubbub extension) becomes
    ``requestContext.attributes``. Both may be replaced during the connection's life.
    """

    connection_id: str
    connected_at: int
    source_ip: str
    user_agent: str
    headers: Sequence[tuple[str, str]]
    query: Sequence[tuple[str, str]] | None
    authorizer: Mapping[str, Any] | None = None
    attributes: Mapping[str, Any] | None = None

    def forget_handshake(self) -> None:
        """Drop the handshake's headers and query: no later event uses them.

        Call it once the ``$connect`` event is built: ``$disconnect`` carries a fixed header set,
        MESSAGE events neither headers nor query, and an open connection then no longer holds
        every request header (~0.9 KB per connection).
        """
        self.headers = ()
        self.query = None


@lru_cache(maxsize=64)
def _clf_second(epoch_s: int) -> str:
    tm = time.gmtime(epoch_s)
    return (
        f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}:"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000"
    )


# The requestTime of the last second a MESSAGE event was built in (MessageEventFactory.build):
# messages arrive in the same second far more often than not. Replaced as one tuple (threads).
_last_request_time: tuple[int, str] = (-1, "")


def _remember_request_time(epoch_s: int) -> tuple[int, str]:
    global _last_request_time
    last = _last_request_time = (epoch_s, _clf_second(epoch_s))
    return last


def clf_time(epoch_ms: int) -> str:
    """Format epoch milliseconds as AWS's ``requestTime``: ``20/Jan/2024:11:55:08 +0000`` (UTC).

    Cached per second, because every message event needs one.
    """
    return _clf_second(epoch_ms // 1000)


def _identity(conn: ConnectionContext) -> dict[str, str]:
    # AWS leaves userAgent out when the client sent none (the Powertools 2024 captures).
    if conn.user_agent:
        return {"userAgent": conn.user_agent, "sourceIp": conn.source_ip}
    return {"sourceIp": conn.source_ip}


def _add_connection_extras(context: dict[str, Any], conn: ConnectionContext) -> None:
    # Shallow copies: an in-process handler that edits its event must not edit the next one's.
    if conn.authorizer is not None:
        context["authorizer"] = dict(conn.authorizer)
    if conn.attributes is not None:
        context["attributes"] = dict(conn.attributes)


def connect_event(
    api: ApiContext, conn: ConnectionContext, *, request_id: str, now_ms: int
) -> dict[str, Any]:
    """Build the ``$connect`` event: handshake headers, query parameters, no body."""
    headers, multi_headers = event_headers(conn.headers)
    event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi_headers}
    if conn.query is not None:
        query, multi_query = single_and_multi(conn.query)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    if api.stage_variables is not None:
        event["stageVariables"] = dict(api.stage_variables)
    # clf_time and _identity written out (as in MessageEventFactory.build): calls were a tenth
    # of this function.
    second = now_ms // 1000
    last = _last_request_time
    if last[0] != second:
        last = _remember_request_time(second)
    # AWS leaves userAgent out when the client sent none (the Powertools 2024 captures).
    user_agent = conn.user_agent
    context: dict[str, Any] = {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "extendedRequestId": request_id,
        "requestTime": last[1],
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": conn.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": (
            {"userAgent": user_agent, "sourceIp": conn.source_ip}
            if user_agent
            else {"sourceIp": conn.source_ip}
        ),
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": conn.connection_id,
        "apiId": api.api_id,
    }
    if conn.authorizer is not None or conn.attributes is not None:
        _add_connection_extras(context, conn)
    event["requestContext"] = context
    event["isBase64Encoded"] = False
    return event


class MessageEventFactory:
    """Builds MESSAGE events for one connection in a few microseconds.

    Everything constant for the connection is prebuilt once; :meth:`build` copies that template and
    fills the keys that vary per message. Build one factory per connection after ``$connect``
    succeeded. ``conn.authorizer`` and ``conn.attributes`` are read at every :meth:`build`, so
    replacing them needs no refresh; the other fields of ``conn`` and ``api`` are read once, and
    :meth:`refresh` re-reads them.
    """

    __slots__ = ("_api", "_conn", "_context", "_identity", "_stage_variables")

    def __init__(self, api: ApiContext, conn: ConnectionContext) -> None:
        self._api = api
        self._conn = conn
        self._context: dict[str, Any] = {}
        self._identity: dict[str, str] = {}
        self._stage_variables: dict[str, str] | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the constant parts of the connection and the API into the template."""
        api, conn = self._api, self._conn
        self._identity = _identity(conn)
        self._stage_variables = None if api.stage_variables is None else dict(api.stage_variables)
        # The None placeholders fix the key order of the captures; build() overwrites them.
        context: dict[str, Any] = {
            "routeKey": None,
            "messageId": None,
            "eventType": "MESSAGE",
            "extendedRequestId": None,
            "requestTime": None,
            "messageDirection": "IN",
            "stage": api.stage,
            "connectedAt": conn.connected_at,
            "requestTimeEpoch": None,
            "identity": None,
            "requestId": None,
            "domainName": api.domain_name,
            "connectionId": conn.connection_id,
            "apiId": api.api_id,
        }
        self._context = context

    def build(
        self, route_key: str, body: str, request_id: str, message_id: str, now_ms: int
    ) -> dict[str, Any]:
        """Return the MESSAGE event for one inbound frame routed to ``route_key``."""
        context = self._context.copy()
        context["routeKey"] = route_key
        context["messageId"] = message_id
        context["extendedRequestId"] = request_id
        second = now_ms // 1000
        last = _last_request_time  # (second, its requestTime): one compare instead of a lookup
        if last[0] != second:
            last = _remember_request_time(second)
        context["requestTime"] = last[1]
        context["requestTimeEpoch"] = now_ms
        context["identity"] = self._identity.copy()
        context["requestId"] = request_id
        # Read live (they come last in the captures' key order, so appending keeps the order);
        # _add_connection_extras written out, as this runs once per message.
        conn = self._conn
        if conn.authorizer is not None:
            context["authorizer"] = dict(conn.authorizer)
        if conn.attributes is not None:
            context["attributes"] = dict(conn.attributes)
        if self._stage_variables is None:
            return {"requestContext": context, "body": body, "isBase64Encoded": False}
        return {
            "stageVariables": self._stage_variables.copy(),
            "requestContext": context,
            "body": body,
            "isBase64Encoded": False,
        }


def message_event(
    api: ApiContext,
    conn: ConnectionContext,
    *,
    route_key: str,
    body: str,
    request_id: str,
    message_id: str,
    now_ms: int,
) -> dict[str, Any]:
    """Build one MESSAGE event; use :class:`MessageEventFactory` on hot paths."""
    return MessageEventFactory(api, conn).build(route_key, body, request_id, message_id, now_ms)


def disconnect_event(
    api: ApiContext,
    conn: ConnectionContext,
    *,
    status_code: int,
    reason: str,
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    """Build the ``$disconnect`` event: the fixed header set AWS sends, close code and reason.

    ``Host`` is the API's domain name and ``X-Forwarded-For`` is empty, whatever the handshake
    said: so in every capture (aws-lambda-go and Powertools test events, 2024).
    """
    headers = {
        "Host": api.domain_name,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
    }
    if api.stage_variables is not None:
        event["stageVariables"] = dict(api.stage_variables)
    context: dict[str, Any] = {
        "routeKey": "$disconnect",
        "disconnectStatusCode": status_code,
        "eventType": "DISCONNECT",
        "extendedRequestId": request_id,
        "requestTime": clf_time(now_ms),
        "messageDirection": "IN",
        "disconnectReason": reason,
        "stage": api.stage,
        "connectedAt": conn.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": _identity(conn),
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": conn.connection_id,
        "apiId": api.api_id,
    }
    _add_connection_extras(context, conn)
    event["requestContext"] = context
    event["isBase64Encoded"] = False
    return event

"""Presence on the wire, without I/O: the hubbub.v1 event frame and the Lambda event.

A presence *event* says that a member joined a room, left it, or changed its presence data::

    {"hubbub": "presence", "room": "lobby", "action": "join" | "leave" | "update",
     "member": {"connectionId": "...", "user": "ann" | null, "data": <JSON> | null,
                "joinedAt": <epoch ms>}}

An ``update`` that follows a resumed session (the same client on a new connection, see
docs/recovery.md) also carries ``"previousConnectionId"``. Recovery-enabled members of the room
receive the frame; a configured route (``[presence] route``) receives the Lambda event built by
:func:`presence_event`, whose ``body`` is the same object without the ``"hubbub"`` key.
"""

from __future__ import annotations

from typing import Any

import orjson

from hubbub.aws.events import ApiContext, clf_time

ACTIONS = ("join", "leave", "update")


def event_body(
    room: str, action: str, member: dict[str, Any], previous: str | None = None
) -> dict[str, Any]:
    """The event as a JSON object (shared by the frame and the Lambda event)."""
    body: dict[str, Any] = {"room": room, "action": action, "member": member}
    if previous is not None:
        body["previousConnectionId"] = previous
    return body


def presence_frame(body: dict[str, Any]) -> bytes:
    """The hubbub.v1 frame sent to recovery-enabled members of the room."""
    return orjson.dumps({"hubbub": "presence", **body})


def presence_event(
    api: ApiContext, route_key: str, body: dict[str, Any], *, request_id: str, now_ms: int
) -> dict[str, Any]:
    """The Lambda event of a presence route: shaped like a MESSAGE event of the member's
    connection (``requestContext.connectionId`` is the member's), ``eventType`` ``PRESENCE``.

    The connection may be gone already (a leave), so the event has no ``identity`` of a live
    socket and a handler must expect PostToConnection to answer 410 for it.
    """
    member = body["member"]
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": "PRESENCE",
        "extendedRequestId": request_id,
        "requestTime": clf_time(now_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "requestTimeEpoch": now_ms,
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": member["connectionId"],
        "apiId": api.api_id,
    }
    event: dict[str, Any] = {
        "requestContext": context,
        "body": orjson.dumps(body).decode(),
        "isBase64Encoded": False,
    }
    if api.stage_variables is not None:
        event["stageVariables"] = dict(api.stage_variables)
    return event

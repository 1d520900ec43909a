"""Handlers of the presence tests: join with presence, read it back (async and sync facade),
and record the events of the ``$presence`` route."""

from __future__ import annotations

import json
from typing import Any

EVENTS: list[dict[str, Any]] = []


async def join(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = json.loads(event["body"])
    await context.gateway.rooms.join(
        body["room"],
        event["requestContext"]["connectionId"],
        presence=body.get("presence"),
        data=body.get("data"),
    )
    return {"statusCode": 200}


async def who(event: dict[str, Any], context: Any) -> dict[str, Any]:
    room = json.loads(event["body"])["room"]
    return {"statusCode": 200, "body": json.dumps(await context.gateway.rooms.presence(room))}


def who_sync(event: dict[str, Any], context: Any) -> dict[str, Any]:
    room = json.loads(event["body"])["room"]
    summary = context.gateway.rooms.presence(room, summary=True)
    return {"statusCode": 200, "body": json.dumps(summary)}


def on_presence(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(event)
    return {"statusCode": 200}

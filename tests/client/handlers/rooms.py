"""Handlers for the recovery tests (run in-process by a real gateway).

``GATE``, when set, holds every ``$connect`` until the test opens it: a client that lost its
connection cannot come back before the test has published what it should miss.
"""

from __future__ import annotations

import asyncio
from typing import Any

GATE: asyncio.Event | None = None
CONNECTED: list[str] = []
DISCONNECTED: list[str] = []
# (body, whether the sender was a member of room "r" when the message was handled)
RECEIVED: list[tuple[str, bool]] = []


def reset() -> None:
    global GATE
    GATE = None
    CONNECTED.clear()
    DISCONNECTED.clear()
    RECEIVED.clear()


async def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if GATE is not None:
        await GATE.wait()
    CONNECTED.append(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


async def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The gateway saves a recovery session before it runs $disconnect: seeing the id here means
    # a resume can find it.
    DISCONNECTED.append(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


async def default(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Records the body and whether the sender is in room "r" right now, and echoes the body."""
    cid = event["requestContext"]["connectionId"]
    members = await context.gateway.rooms.members("r")
    RECEIVED.append((event["body"], cid in members))
    return {"statusCode": 200, "body": event["body"]}

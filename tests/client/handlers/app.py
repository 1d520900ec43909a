"""Lambda-style handlers for the client tests (run in-process by a real gateway).

``async def`` handlers without an ``await`` run in the order the messages arrived, so ``RECEIVED``
is the order the gateway got them in.
"""

from __future__ import annotations

from typing import Any

RECEIVED: list[str] = []
# Statuses $connect answers, consumed one per handshake; 200 once empty.
CONNECT_STATUSES: list[int] = []
CONNECTED: list[str] = []


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way route: records the body and sends it back."""
    RECEIVED.append(event["body"])
    return {"statusCode": 200, "body": event["body"]}


async def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect: answers the next status of CONNECT_STATUSES (200 when there is none)."""
    status = CONNECT_STATUSES.pop(0) if CONNECT_STATUSES else 200
    if status == 200:
        CONNECTED.append(event["requestContext"]["connectionId"])
    return {"statusCode": status}

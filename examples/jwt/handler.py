"""Answers who the connection belongs to: what the JWT authorizer put in the event."""

from __future__ import annotations

import json
from typing import Any


async def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    authorizer = event["requestContext"].get("authorizer") or {}
    return {
        "statusCode": 200,
        "body": json.dumps(
            {"type": "whoami", "principalId": authorizer.get("principalId"), "claims": authorizer}
        ),
    }

"""A REQUEST authorizer written exactly as for AWS (copied from the AWS-DG example shape)."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = event.get("headers") or {}
    query = event.get("queryStringParameters") or {}
    token = headers.get("Authorization") or query.get("token")
    if token == "boom":
        raise ValueError("authorizer bug")
    if token not in ("allow", "deny", "badctx"):
        raise Exception("Unauthorized")
    effect = "Deny" if token == "deny" else "Allow"
    context_value: Any = {"nested": "no"} if token == "badctx" else "gold"
    return {
        "principalId": "user-42",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
            ],
        },
        "context": {"tier": context_value, "score": 7, "admin": False},
    }


def slow_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``handler``, but a token starting with "slow" blocks its thread for 10 s first."""
    import time

    headers = event.get("headers") or {}
    if (headers.get("Authorization") or "").startswith("slow"):
        time.sleep(10)
    return handler({**event, "headers": {**headers, "Authorization": "allow"}}, context)

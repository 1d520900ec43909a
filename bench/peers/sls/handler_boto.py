"""The seed's pattern: post the reply back with boto3's management API client."""

from __future__ import annotations

import os
from typing import Any

import boto3

_client: Any = None


def echo_boto(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _client
    ctx = event["requestContext"]
    if _client is None:
        endpoint = os.environ.get("WEBSOCKET_ENDPOINT") or (
            f"https://{ctx['domainName']}/{ctx['stage']}"
        )
        _client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    _client.post_to_connection(ConnectionId=ctx["connectionId"], Data=event["body"].encode())
    return {"statusCode": 200}

"""Lambda-style handlers used by the gateway tests. Events are recorded in EVENTS."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

EVENTS: list[dict[str, Any]] = []
CONTEXTS: list[dict[str, Any]] = []
CONNECT_RESULT: dict[str, Any] = {"statusCode": 200}
CONNECT_GATE = asyncio.Event()  # gated_connect waits for it: tests put a fresh one in
_lock = threading.Lock()


def _record(event: dict[str, Any]) -> None:
    with _lock:
        EVENTS.append(event)


def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Plain def handler: records every event; $connect answers CONNECT_RESULT."""
    _record(event)
    CONTEXTS.append(
        {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "remaining": context.get_remaining_time_in_millis(),
            "thread": threading.current_thread().name,
        }
    )
    if event["requestContext"]["routeKey"] == "$connect":
        return CONNECT_RESULT
    return {"statusCode": 200}


async def gated_connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect that records, then accepts once the test sets CONNECT_GATE."""
    _record(event)
    await CONNECT_GATE.wait()
    return {"statusCode": 200}


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way route: returns the body."""
    _record(event)
    return {"statusCode": 200, "body": event["body"]}


def boom(event: dict[str, Any], context: Any) -> None:
    _record(event)
    raise RuntimeError("handler failure")


def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Blocks its thread (as a slow boto3 call would)."""
    _record(event)
    body = json.loads(event["body"])
    time.sleep(float(body.get("seconds", 1)))
    return {"statusCode": 200, "body": "slow done"}


async def async_slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record(event)
    await asyncio.sleep(json.loads(event["body"]).get("seconds", 1))
    return {"statusCode": 200, "body": "async slow done"}


def post_self(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Posts back through the real boto3 client (the seed's pattern)."""
    import boto3

    _record(event)
    rc = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=os.environ["WEBSOCKET_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        client.post_to_connection(
            ConnectionId=rc["connectionId"], Data=b"posted:" + event.get("body", "").encode()
        )
    except client.exceptions.GoneException:
        CONTEXTS.append({"gone": rc["connectionId"], "route": rc["routeKey"]})
    return {"statusCode": 200}


async def in_process(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Async handler using the in-process management API."""
    _record(event)
    rc = event["requestContext"]
    await context.gateway.connections.post(rc["connectionId"], "in-process:" + event["body"])
    info = await context.gateway.connections.get(rc["connectionId"])
    await context.gateway.connections.post(
        rc["connectionId"], json.dumps({"sourceIp": info["sourceIp"]})
    )
    return {"statusCode": 200}


def sync_in_process(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Plain def handler using the blocking facade of the in-process API."""
    _record(event)
    rc = event["requestContext"]
    context.gateway.connections.post(rc["connectionId"], "sync-in-process")
    return {"statusCode": 200}


def bad_result(event: dict[str, Any], context: Any) -> object:
    _record(event)
    return 42


def env(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way: reports what a Lambda would read from its environment."""
    keys = ["AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "ROUTE_ONLY", "GLOBAL_VAR"]
    return {"statusCode": 200, "body": json.dumps({k: os.environ.get(k) for k in keys})}


def post_self_default_session(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Unchanged AWS style: default boto3 session, no explicit credentials or region."""
    import boto3

    rc = event["requestContext"]
    client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["WEBSOCKET_ENDPOINT"])
    client.post_to_connection(
        ConnectionId=rc["connectionId"], Data=b"posted with the default session"
    )
    return {"statusCode": 200}


async def room_join(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = json.loads(event["body"])
    await context.gateway.rooms.join(body["room"], event["requestContext"]["connectionId"])
    return {"statusCode": 200}


async def room_say(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = json.loads(event["body"])
    message = json.dumps({"room": body["room"], "text": body["text"]})
    await context.gateway.rooms.send(
        body["room"], message, exclude=event["requestContext"]["connectionId"]
    )
    return {"statusCode": 200}


def record_echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Plain def two-way route."""
    _record(event)
    return {"statusCode": 200, "body": event["body"]}

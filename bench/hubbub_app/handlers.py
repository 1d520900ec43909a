"""Handlers for the benchmark's hubbub runs (routes in hubbub.toml next to this file).

- ``echo``: an ``async def`` two-way route handler returning the body (the routed scenario);
- ``echo_boto``: the seed's pattern, a plain ``def`` handler posting back with boto3's
  ``post_to_connection`` (run in hubbub's handler thread pool);
- ``whoami``: answers the caller's connection id, so members can join a room over the
  management API (``PUT /{stage}/@rooms/{room}/connections/{id}``);
- ``publish``: sends the message body to the room through ``context.gateway`` (in-process
  management API);
- ``connect`` / ``connect_async``: ``$connect`` handlers, Lambda style and ``async``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

ROOM = "bench"
_client: Any = None


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


async def connect_async(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


async def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}


async def publish(event: dict[str, Any], context: Any) -> dict[str, Any]:
    await context.gateway.rooms.send(ROOM, event["body"])
    return {"statusCode": 200}


def echo_boto(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Unchanged AWS code: the management client is created once per container and reused."""
    global _client
    ctx = event["requestContext"]
    if _client is None:
        endpoint = os.environ.get("WEBSOCKET_ENDPOINT") or (
            f"https://{ctx['domainName']}/{ctx['stage']}"
        )
        _client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    _client.post_to_connection(ConnectionId=ctx["connectionId"], Data=event["body"].encode())
    return {"statusCode": 200}


async def presence_join(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The presence scenario (bench/presence.py): join the body's room, with presence when it
    says so (``{"room": r, "presence": true, "data": {...}}``)."""
    body = json.loads(event["body"])
    await context.gateway.rooms.join(
        body["room"],
        event["requestContext"]["connectionId"],
        presence=body.get("presence", False),
        data=body.get("data"),
    )
    return {"statusCode": 200, "body": "ok"}


async def presence_leave(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = json.loads(event["body"])
    await context.gateway.rooms.leave(body["room"], event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": "ok"}

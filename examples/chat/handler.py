"""A chat room as an AWS API Gateway WebSocket API + Lambda handler.

This file is written exactly as it would be deployed to AWS Lambda (Python 3.11 runtime, handler
``handler.handler``) behind a WebSocket API whose route selection expression is
``$request.body.action``. hubbub runs it unchanged.

Routes:
    $connect      remember the connection id
    $disconnect   forget it
    sendMessage   {"action": "sendMessage", "message": "hi"} -> broadcast to everyone
    $default      anything else -> a short help message back to the caller

Frames sent to browsers:
    {"action": "message", "from": "<connection id>", "message": "<text>", "sentAt": <epoch ms>}
    {"action": "help", "message": "<text>", "connectionId": "<the caller's id>"}
    (the page sends {"action": "hello"} on open; $default's answer tells it its own id)

The management API endpoint is ``https://{domainName}/{stage}`` from the event, as on AWS (on
hubbub, domainName is its HTTPS management listener), unless ``WEBSOCKET_ENDPOINT`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import boto3

logger = logging.getLogger()
logger.setLevel(logging.INFO)

# ---------------------------------------------------------------------------------------------
# Connection table: the DynamoDB stand-in.
# On AWS this would be a DynamoDB table keyed by connectionId (boto3.resource("dynamodb")).
# Here it is one small SQLite table so the example needs no cloud service. Several handler
# invocations run at once (each in its own thread or process), so every call opens its own short
# connection with a busy timeout instead of sharing one.
# ---------------------------------------------------------------------------------------------
DEFAULT_DB = str(Path(__file__).with_name("chat.sqlite3"))


def _db_path() -> str:
    # Read per call, not at import: the table's location is configuration, like a table name.
    return os.environ.get("CHAT_DB") or DEFAULT_DB


def _query(sql: str, params: tuple[str, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(_db_path(), timeout=10)
    try:
        with conn:  # one transaction: committed on success, rolled back on error
            conn.execute("CREATE TABLE IF NOT EXISTS connections (connection_id TEXT PRIMARY KEY)")
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def save_connection(connection_id: str) -> None:
    _query("INSERT OR IGNORE INTO connections (connection_id) VALUES (?)", (connection_id,))


def delete_connection(connection_id: str) -> None:
    _query("DELETE FROM connections WHERE connection_id = ?", (connection_id,))


def all_connections() -> list[str]:
    return [row[0] for row in _query("SELECT connection_id FROM connections")]


# ---------------------------------------------------------------------------------------------
# Management API client: created once per Lambda container (process) and reused, as usual.
# ---------------------------------------------------------------------------------------------
_client: Any = None


def management_client(event: dict[str, Any]) -> Any:
    global _client
    if _client is None:
        ctx = event["requestContext"]
        endpoint = os.environ.get("WEBSOCKET_ENDPOINT") or (
            f"https://{ctx['domainName']}/{ctx['stage']}"
        )
        _client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    return _client


def send(event: dict[str, Any], connection_id: str, payload: dict[str, Any]) -> bool:
    """Post one frame; False (and the id forgotten) if that connection is gone (410)."""
    client = management_client(event)
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=json.dumps(payload).encode())
    except client.exceptions.GoneException:
        logger.info("connection %s is gone, removing it", connection_id)
        delete_connection(connection_id)
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------
HELP = 'Send {"action": "sendMessage", "message": "your text"} to talk to everyone here.'


def on_connect(event: dict[str, Any]) -> None:
    save_connection(event["requestContext"]["connectionId"])


def on_disconnect(event: dict[str, Any]) -> None:
    delete_connection(event["requestContext"]["connectionId"])


def on_send_message(event: dict[str, Any]) -> None:
    sender = event["requestContext"]["connectionId"]
    try:
        text = str(json.loads(event.get("body") or "{}").get("message", "")).strip()
    except (ValueError, AttributeError):
        text = ""
    if not text:
        on_default(event)
        return
    payload = {
        "action": "message",
        "from": sender,
        "message": text[:2000],
        "sentAt": event["requestContext"].get("requestTimeEpoch", int(time.time() * 1000)),
    }
    recipients = all_connections()
    delivered = sum(send(event, connection_id, payload) for connection_id in recipients)
    logger.info("message from %s delivered to %d/%d", sender, delivered, len(recipients))


def on_default(event: dict[str, Any]) -> None:
    caller = event["requestContext"]["connectionId"]
    send(event, caller, {"action": "help", "message": HELP, "connectionId": caller})


ROUTES = {
    "$connect": on_connect,
    "$disconnect": on_disconnect,
    "sendMessage": on_send_message,
    "$default": on_default,
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    route = event["requestContext"]["routeKey"]
    logger.info("%s %s", route, event["requestContext"]["connectionId"])
    action = ROUTES.get(route)
    if action is None:
        logger.warning("no handler for route %s", route)
        return {"statusCode": 400}
    action(event)
    return {"statusCode": 200}

"""Handlers calling the management API through boto3, for the in-process tests.

``manage`` is a two-way route: the message says which operation to run against which endpoint,
the reply says what boto3 returned or raised.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

_clients: dict[str, Any] = {}
_seed_clients: dict[str, Any] = {}


def _client(endpoint: str) -> Any:
    # Created once per endpoint and reused, as a Lambda container does. A session of its own:
    # boto3's default session keeps the credentials it found first, and each test's gateway
    # hands its handlers another execution role.
    if endpoint not in _clients:
        session = boto3.session.Session()
        _clients[endpoint] = session.client("apigatewaymanagementapi", endpoint_url=endpoint)
    return _clients[endpoint]


def manage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rc = event["requestContext"]
    body = json.loads(event["body"])
    endpoint = body.get("endpoint") or f"https://{rc['domainName']}/{rc['stage']}"
    client = _client(endpoint)
    target = body.get("target") or rc["connectionId"]
    try:
        if body["op"] == "post":
            client.post_to_connection(ConnectionId=target, Data=body["data"].encode())
            result: Any = None
        elif body["op"] == "get":
            info = client.get_connection(ConnectionId=target)
            result = {"identity": info["Identity"], "status": _status(info)}
        else:
            result = _status(client.delete_connection(ConnectionId=target))
    except client.exceptions.ClientError as exc:
        return _reply({"error": exc.response["Error"]["Code"], "status": _status(exc.response)})
    return _reply({"result": result})


_hosts: dict[str, str] = {}


def remember_host(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect: keep the handshake's Host header, as handlers keep it in a table on AWS."""
    _hosts[event["requestContext"]["connectionId"]] = event["headers"]["Host"]
    return {"statusCode": 200}


def post_via_host(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Post back through https://{Host}/{stage}: on AWS Host equals domainName."""
    rc = event["requestContext"]
    endpoint = f"https://{_hosts[rc['connectionId']]}/{rc['stage']}"
    _client(endpoint).post_to_connection(ConnectionId=rc["connectionId"], Data=b"via host")
    return {"statusCode": 200}


def post_raw(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Post the message's ``hex`` bytes back through boto3, then ``"after"``."""
    rc = event["requestContext"]
    client = _client(f"https://{rc['domainName']}/{rc['stage']}")
    data = bytes.fromhex(json.loads(event["body"])["hex"])
    client.post_to_connection(ConnectionId=rc["connectionId"], Data=data)
    client.post_to_connection(ConnectionId=rc["connectionId"], Data=b"after")
    return {"statusCode": 200}


def seed(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The seed's pattern, unchanged: WEBSOCKET_ENDPOINT or https://{domainName}/{stage}."""
    rc = event["requestContext"]
    endpoint = os.environ.get("WEBSOCKET_ENDPOINT") or f"https://{rc['domainName']}/{rc['stage']}"
    if endpoint not in _seed_clients:
        _seed_clients[endpoint] = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    _seed_clients[endpoint].post_to_connection(ConnectionId=rc["connectionId"], Data=event["body"])
    return {"statusCode": 200}


async def blocking_on_the_loop(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An async def handler calling boto3 synchronously: it would stall the event loop."""
    rc = event["requestContext"]
    client = _client(f"https://{rc['domainName']}/{rc['stage']}")
    client.post_to_connection(ConnectionId=rc["connectionId"], Data=b"never")
    return {"statusCode": 200}


def _status(response: dict[str, Any]) -> int:
    status: int = response["ResponseMetadata"]["HTTPStatusCode"]
    return status


def _reply(value: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(value)}

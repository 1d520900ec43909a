"""Handlers for the fuzz-found bug tests (tests/fuzz/test_fuzz_bugs.py)."""

from __future__ import annotations

from typing import Any

EVENTS: list[dict[str, Any]] = []


async def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(event)
    return {"statusCode": 200}


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


async def default(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": "D" + event["body"]}

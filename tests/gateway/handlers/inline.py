"""``async def`` handlers without ``await``, which the gateway runs inline (no task), and one
that awaits, to hold a concurrency slot while a test looks."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import sys
from typing import Any

# For ``hold``; reset() by each test (asyncio events belong to the test's event loop).
STARTED: asyncio.Event | None = None
RELEASE: asyncio.Event | None = None


def reset() -> None:
    global STARTED, RELEASE
    STARTED, RELEASE = asyncio.Event(), asyncio.Event()
    CONNECT_RESULT.clear()
    CONNECT_RESULT["statusCode"] = 200
    DISCONNECTS.clear()


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


async def describe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way: what the handler sees of its context and environment."""
    seen = {
        name: getattr(context, name)
        for name in (
            "aws_request_id",
            "function_name",
            "function_version",
            "invoked_function_arn",
            "memory_limit_in_mb",
            "log_group_name",
            "log_stream_name",
            "identity",
            "client_context",
        )
    }
    seen["remaining"] = context.get_remaining_time_in_millis()
    seen["requestId"] = event["requestContext"]["requestId"]
    names = (
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "ROUTE_ONLY",
    )
    seen["environ"] = {k: os.environ.get(k) for k in names}
    return {"statusCode": 200, "body": json.dumps(seen)}


async def boom(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("inline failure")


async def cancels(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise asyncio.CancelledError


async def times_out(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise TimeoutError


async def bad_result(event: dict[str, Any], context: Any) -> object:
    return 42


async def hold(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Awaits (so it runs in a task): holds its slot until the test sets RELEASE."""
    assert STARTED is not None
    assert RELEASE is not None
    STARTED.set()
    await RELEASE.wait()
    return {"statusCode": 200, "body": "released"}


async def lone_surrogate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": "half a pair: \ud800"}


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text for this")


async def unprintable_header(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {_Unprintable(): "x"}, "body": "b"}


async def unprintable_header_after_await(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The same, from a handler that awaits (so it runs in a task)."""
    await asyncio.sleep(0)
    return {"statusCode": 200, "headers": {_Unprintable(): "x"}, "body": "b"}


# -- $connect and $disconnect --------------------------------------------------------------------
CONNECT_RESULT: dict[str, Any] = {}  # what ``connect`` answers; set by each test
DISCONNECTS: list[tuple[str, str]] = []  # (routeKey, caller) of each ``disconnect``


def _caller() -> str:
    """The function that awaited the handler: ``invoke_inline`` when it ran inline, the
    invoker's ``_run`` otherwise."""
    return sys._getframe(2).f_code.co_name


async def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect: CONNECT_RESULT, with the caller's name in an X-Caller header."""
    headers = {**CONNECT_RESULT.get("headers", {}), "X-Caller": _caller()}
    return {**CONNECT_RESULT, "headers": headers}


async def disconnect(event: dict[str, Any], context: Any) -> None:
    DISCONNECTS.append((event["requestContext"]["routeKey"], _caller()))


async def cancels_after_await(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The same as ``cancels`` from a handler that awaits (so it runs in a task)."""
    await asyncio.sleep(0)
    raise asyncio.CancelledError


async def sleeps(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Awaits longer than any test's handler timeout."""
    await asyncio.sleep(30)
    return {"statusCode": 200}


REMEMBERED: contextvars.ContextVar[str] = contextvars.ContextVar("inline_remembered", default="")


async def remember(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way: the body of this connection's previous ``remember`` message (a context var)."""
    previous = REMEMBERED.get()
    REMEMBERED.set(event["body"])
    return {"statusCode": 200, "body": previous or "(none)"}


async def result(event: dict[str, Any], context: Any) -> object:
    """Two-way: returns the message's ``result`` as it is (tests/gateway/test_inline_results.py)."""
    return json.loads(event["body"])["result"]

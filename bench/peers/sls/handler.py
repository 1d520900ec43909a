"""The Lambda handlers serverless-offline runs (the same code hubbub runs in bench/hubbub_app).

boto3 is imported only by handler_boto.py: serverless-offline starts one Python process per
concurrent invocation of a function, and importing boto3 in each ``$connect`` process would make
connection setup, not message handling, what is measured.
"""

from __future__ import annotations

from typing import Any


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way route: the body goes back to the caller as the route response."""
    return {"statusCode": 200, "body": event["body"]}

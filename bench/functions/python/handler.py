"""The Python function of the benchmark's isolation rows (bench/hubbub_app/hubbub-runtimes.toml):
the same file runs in hubbub's process (route ``pyecho``) and in its own process environments
through the Lambda Runtime API (route ``pyecho_process``, ``isolation = "process"``).

A plain ``def``, as Lambda's Python runtime calls it: both ways can run it unchanged.
"""

from __future__ import annotations

from typing import Any


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way route: the body goes back to the caller as the route response."""
    return {"statusCode": 200, "body": event["body"]}

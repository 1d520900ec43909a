"""Functions of an imported template whose runtime is not Python run through the Runtime API
(they used to be a config error)."""

from __future__ import annotations

import sys
from pathlib import Path

from hubbub.config import load_config
from hubbub.testing import run_gateway
from tests.runtimes.helpers import ask, connect, write

SERVERLESS = """
service: chat
provider:
  name: aws
  runtime: provided.al2023
  environment:
    GREETING: hello from the template
functions:
  hello:
    handler: handler.fn
    events:
      - websocket:
          route: hello
          routeResponseSelectionExpression: $default
"""
HANDLER = """
import os

def fn(event, context):
    return {"statusCode": 200, "body": os.environ["GREETING"] + " " + context.function_name}
"""


async def test_a_provided_function_of_a_serverless_yml(tmp_path: Path) -> None:
    write(tmp_path / "serverless.yml", SERVERLESS)
    write(tmp_path / "handler.py", HANDLER)
    write(
        tmp_path / "bootstrap",
        f"#!/bin/sh\nexec {sys.executable} -m awslambdaric $_HANDLER\n",
        executable=True,
    )
    config = load_config(
        tmp_path / "serverless.yml",
        env={},
        overrides={"server.port": 0, "management.port": 0, "management.tls": False},
    )
    function = config.routes["hello"].function
    assert function is not None
    assert function.process_kind == "provided"
    async with run_gateway(config) as gw, connect(gw.websocket_url) as ws:
        reply = await ask(ws, {"action": "hello"})
    assert reply == f"hello from the template {function.name or 'hello'}"

"""Python functions with isolation = "process": hubbub's own bootstrap, one process per
environment."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

from hubbub.config import load_config
from hubbub.testing import run_gateway
from tests.runtimes.helpers import TIMEOUT, ask, config, connect, write

HANDLER = """
import os, sys, json, time, subprocess
import helper

def handler(event, context):
    body = json.loads(event.get("body") or "{}")
    if body.get("sleep"):
        time.sleep(body["sleep"])
    if body.get("crash"):
        os._exit(3)
    if body.get("fail"):
        raise ValueError("bad input")
    print("handling", context.aws_request_id)
    return {"statusCode": 200, "body": json.dumps({
        "pid": os.getpid(),
        "who": helper.WHO,
        "cwd": os.getcwd(),
        "name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "handler": os.environ["_HANDLER"],
        "root": os.environ["LAMBDA_TASK_ROOT"],
        "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "request": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "arn": context.invoked_function_arn,
        "hubbub": "hubbub" in sys.modules,
        "mine": os.environ.get("MINE"),
        "exec": os.environ.get("AWS_EXECUTION_ENV"),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "child_trace": subprocess.run(
            ["printenv", "_X_AMZN_TRACE_ID"], capture_output=True, text=True
        ).stdout.strip(),
    })}
"""


def _function(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    write(tmp_path / "fn" / "helper.py", "WHO = 'isolated'\n")


async def test_a_python_function_runs_in_its_own_process(tmp_path: Path) -> None:
    _function(tmp_path)
    cfg = config(
        tmp_path,
        {
            "go": """
                handler = "app.handler"
                code = "fn"
                isolation = "process"
                runtime = "python3.12"
                route_response = true
                timeout = 10
                environment = { MINE = "yes" }
            """
        },
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        first = await ask(ws, {"action": "go"})
        second = await ask(ws, {"action": "go"})
    assert first["pid"] != os.getpid()
    assert first["pid"] == second["pid"]  # warm: the same environment again
    assert first["request"] != second["request"]
    assert first["who"] == "isolated"
    assert first["cwd"] == str((tmp_path / "fn").resolve())
    assert first["root"] == first["cwd"]
    assert first["name"] == "hubbub-dev-go"
    assert first["handler"] == "app.handler"
    assert first["api"].startswith("127.0.0.1:")
    assert 0 < first["remaining"] <= 10_000
    assert first["arn"].endswith(":function:hubbub-dev-go")
    assert first["hubbub"] is False
    assert first["mine"] == "yes"
    assert first["exec"] == "AWS_Lambda_python3.12"
    # Lambda-Runtime-Trace-Id, fresh per invocation, for the handler and its child processes.
    trace = r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0"
    assert re.fullmatch(trace, first["trace"])
    assert first["trace"] != second["trace"]
    assert (first["child_trace"], second["child_trace"]) == (first["trace"], second["trace"])


SENDER = """
import boto3

def handler(event, context):
    ctx = event["requestContext"]
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"https://{ctx['domainName']}/{ctx['stage']}",
    )
    data = b"echo: " + event["body"].encode()
    api.post_to_connection(ConnectionId=ctx["connectionId"], Data=data)
    return {"statusCode": 200}
"""


async def test_an_isolated_function_calls_the_management_api_with_boto3(tmp_path: Path) -> None:
    """Unchanged AWS code: the endpoint from the event, hubbub's CA trusted through
    AWS_CA_BUNDLE, the execution role's credentials."""
    write(tmp_path / "fn" / "app.py", SENDER)
    state = json.dumps(str(tmp_path / "state"))
    (tmp_path / "hubbub.toml").write_text(
        f"""
[server]
port = 0
[management]
port = 0
tls_port = 0
state_dir = {state}
[routes."$default"]
handler = "app.handler"
code = "fn"
isolation = "process"
"""
    )
    cfg = load_config(tmp_path / "hubbub.toml", env={})
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "echo: hi"

"""`hubbub serve` as a real process: its functions' processes never outlive it, also when it is
killed with SIGKILL, and a SIGTERM drains them (the invocation in flight finishes, its output is
logged)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import eventually
from tests.runtimes.helpers import TIMEOUT, ask, connect, write, write_config

HUBBUB = [sys.executable, "-m", "hubbub.cli"]

HANDLER = """
import json, os, time
from pathlib import Path

def handler(event, context):
    body = json.loads(event.get("body") or "{}")
    if body.get("sleep"):
        Path("started").write_text(context.aws_request_id)
        time.sleep(body["sleep"])
        print("finished", context.aws_request_id)
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
"""
# A custom runtime whose long poll runs in a child of the bootstrap (curl under bash).
SHELL_BOOTSTRAP = """
#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -D "$HEADERS" "$API/invocation/next" >/dev/null
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS "$API/invocation/$ID/response" \\
    -d "{\\"statusCode\\": 200, \\"body\\": \\"$$\\"}" >/dev/null
done
"""


def _processes_under(folder: Path) -> list[int]:
    """Live processes whose working directory is inside ``folder`` (the functions' code roots)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and cwd.is_relative_to(folder):
            found.append(int(entry.name))
    return found


class Serve:
    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*HUBBUB, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ws_url = self.proc.stdout.readline().split()[2]


def _project(tmp_path: Path) -> Path:
    write(tmp_path / "functions" / "py" / "app.py", HANDLER)
    write(tmp_path / "functions" / "sh" / "bootstrap", SHELL_BOOTSTRAP, executable=True)
    return write_config(
        tmp_path,
        {
            "py": """
                handler = "app.handler"
                code = "functions/py"
                isolation = "process"
                route_response = true
            """,
            "sh": """
                handler = "function.handler"
                code = "functions/sh"
                runtime = "provided.al2023"
                route_response = true
            """,
        },
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
async def test_kill_9_of_hubbub_leaves_no_function_process(tmp_path: Path) -> None:
    server = Serve(_project(tmp_path))
    functions = tmp_path / "functions"
    try:
        async with connect(server.ws_url) as ws:
            py = await ask(ws, {"action": "py"})
            sh = await ask(ws, {"action": "sh"})
            # Both environments now wait in GET .../next for their next event.
            assert {py["pid"], sh} <= set(_processes_under(functions))
            await eventually(  # python, bash and its curl waiting for the next event
                lambda: len(_processes_under(functions)) >= 3, TIMEOUT, "three processes"
            )
            server.proc.kill()
            server.proc.wait(timeout=TIMEOUT)
    except BaseException:
        server.proc.kill()
        raise
    finally:
        server.proc.communicate(timeout=TIMEOUT)
    await eventually(lambda: not _processes_under(functions), TIMEOUT, "no process left")


async def test_sigterm_drains_the_environments(tmp_path: Path) -> None:
    server = Serve(_project(tmp_path))
    functions = tmp_path / "functions"
    started = functions / "py" / "started"
    try:
        async with connect(server.ws_url) as ws:
            await ws.send(json.dumps({"action": "py", "sleep": 1}))
            await eventually(started.exists, TIMEOUT, "the invocation running")
            server.proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(server.proc.communicate, timeout=TIMEOUT * 2)
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            server.proc.communicate()
    assert server.proc.returncode == 0
    request_id = started.read_text()
    finished = [line for line in err.splitlines() if f"finished {request_id}" in line]
    assert finished, err  # the invocation in flight ran to its end, its output logged
    assert "hubbub.function" in finished[0]
    assert f"requestId={request_id}" in finished[0]
    assert not _processes_under(functions)

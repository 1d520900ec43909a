"""The command line, run as a real process: check, serve, signals, log formats."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import websockets

from tests.helpers import eventually

HUBBUB = [sys.executable, "-m", "hubbub.cli"]

HANDLER = """
import json, os
def handler(event, context):
    rc = event["requestContext"]
    with open(os.environ["EVENTS_FILE"], "a") as f:
        f.write(json.dumps([rc["routeKey"], rc.get("disconnectStatusCode"),
                            rc.get("disconnectReason")]) + "\\n")
    return {"statusCode": 200}
"""


def _project(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "app.py").write_text(HANDLER)
    config = tmp_path / "hubbub.toml"
    config.write_text(
        f"""
[server]
port = 0
[management]
port = 0
tls_port = 0
state_dir = "{tmp_path / "state"}"
[environment]
EVENTS_FILE = "{tmp_path / "events.jsonl"}"
[routes."$connect"]
handler = "app.handler"
[routes."$disconnect"]
handler = "app.handler"
[routes."$default"]
handler = "app.handler"
{extra}
"""
    )
    return config


def test_check_prints_the_resolved_routes(tmp_path: Path) -> None:
    out = subprocess.run(
        [*HUBBUB, "check", "--config", str(_project(tmp_path))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "$connect" in out
    assert "app.handler" in out
    assert "$request.body.action" in out


def test_check_names_the_bad_key_and_fails(tmp_path: Path) -> None:
    config = _project(tmp_path, "[limits]\nidle_timeout = 'soon'\n")
    result = subprocess.run(
        [*HUBBUB, "check", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "limits.idle_timeout" in result.stderr


def test_check_reports_a_missing_handler_module(tmp_path: Path) -> None:
    config = _project(tmp_path, '[routes."x"]\nhandler = "missing.fn"\n')
    result = subprocess.run(
        [*HUBBUB, "check", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert 'routes."x".handler' in result.stderr


def test_serve_refuses_open_management_without_auth(tmp_path: Path) -> None:
    config = _project(tmp_path)
    result = subprocess.run(
        [*HUBBUB, "serve", "--config", str(config), "--management-host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "management.auth" in result.stderr
    assert "loopback" in result.stderr


class Server:
    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*HUBBUB, "serve", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ws_url = self.proc.stdout.readline().split()[2]
        self.api_url = self.proc.stdout.readline().split()[2]

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


async def test_serve_prints_one_url_per_listener_and_drains_on_sigterm(tmp_path: Path) -> None:
    server = Server(_project(tmp_path))
    try:
        assert server.ws_url.startswith("ws://127.0.0.1:")
        assert server.ws_url.endswith("/dev")
        assert server.api_url.startswith("http://127.0.0.1:")
        clients = [await websockets.connect(server.ws_url) for _ in range(5)]
    finally:
        code, _ = await asyncio.to_thread(server.stop)
    assert code == 0
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e for e in events if e[0] == "$disconnect"] == [["$disconnect", 1001, "Going away"]] * 5
    for ws in clients:
        await ws.close()


async def test_json_log_lines(tmp_path: Path) -> None:
    server = Server(_project(tmp_path), "--log-format", "json")
    try:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send("hello")
            events = tmp_path / "events.jsonl"
            await eventually(lambda: events.exists() and len(events.read_text().splitlines()) >= 2)
    finally:
        _, err = await asyncio.to_thread(server.stop)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = {line["message"] for line in lines}
    assert {"connect", "invoke", "disconnect"} <= messages
    invoke = next(
        line for line in lines if line["message"] == "invoke" and line["route"] == "$default"
    )
    assert invoke["status"] == 200
    assert invoke["latency_ms"] >= 0
    assert invoke["connectionId"]


async def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    config = _project(tmp_path)
    (tmp_path / "slow.py").write_text(
        "import time\ndef handler(event, context):\n    time.sleep(30)\n"
    )
    text = config.read_text().replace(
        '[routes."$disconnect"]\nhandler = "app.handler"',
        '[routes."$disconnect"]\nhandler = "slow.handler"',
    )
    config.write_text(text + "\n[limits]\nhandler_timeout = 60\n")
    server = Server(config)
    ws = await websockets.connect(server.ws_url)
    server.proc.send_signal(signal.SIGTERM)
    await ws.wait_closed()  # the drain has begun; its $disconnect now sleeps for 30 s
    server.proc.send_signal(signal.SIGINT)
    await asyncio.to_thread(server.proc.communicate, timeout=10)
    assert server.proc.returncode == 1

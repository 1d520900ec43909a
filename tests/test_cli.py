"""The command line, run as a real process: check, serve, signals, log formats."""

from __future__ import annotations

import asyncio
import json
import os
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


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HUBBUB, "check", "--config", str(config)], capture_output=True, text=True, timeout=60
    )


def test_check_prints_what_serve_would_run(tmp_path: Path) -> None:
    result = _check(_project(tmp_path, '[authorizer]\nhandler = "app.handler"\n'))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "listeners:" in lines
    assert any(line.split()[:2] == ["websocket", "ws://127.0.0.1:<any"] for line in lines)
    assert any(line.split()[:1] == ["https-management"] for line in lines)
    assert "store: memory://" in lines
    assert "authorizer: python app.handler  (no identity source)" in lines


def test_check_reports_a_handler_that_fails_at_import_with_its_route_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "boom.py").write_text("import os\n\nraise RuntimeError('no table')\n")
    (tmp_path / "broken.py").write_text("def handler(event, context)\n    pass\n")
    config = _project(
        tmp_path,
        '[routes."send"]\nhandler = "boom.handler"\n',
    )
    result = _check(config)
    assert result.returncode == 2
    assert result.stderr == (
        f'hubbub: handler error: {config}: routes."send".handler: importing boom.py failed at '
        f"{tmp_path / 'boom.py'}:3: RuntimeError: no table\n"
    )
    config.write_text(config.read_text().replace("boom.handler", "broken.handler"))
    result = _check(config)
    assert result.returncode == 2
    assert result.stderr.startswith("hubbub: handler error: ")
    assert f"broken.py failed at {tmp_path / 'broken.py'}:1: SyntaxError: " in result.stderr


def test_check_refuses_what_serve_refuses(tmp_path: Path) -> None:
    bad = {
        '[store]\nurl = "postgres://x"\n': "store.url: unknown scheme in 'postgres://x'",
        '[history]\nurl = "ftp://x"\n': "history.url: must be",
        '[static]\ndir = "nowhere"\n': "static.dir: ",
        '[authorizer]\nhandler = "missing.handler"\n': "authorizer.handler: no module",
    }
    for extra, message in bad.items():
        result = _check(_project(tmp_path, extra))
        assert result.returncode == 2, extra
        assert message in result.stderr, (extra, result.stderr)
        assert str(tmp_path / "hubbub.toml") in result.stderr
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        history = f'[history]\nurl = "sqlite:///{tmp_path}/ro/history.db"\n'
        result = _check(_project(tmp_path, history))
        if os.geteuid() != 0:  # root writes anywhere
            assert result.returncode == 2
            assert "history.url: cannot create" in result.stderr
    finally:
        (tmp_path / "ro").chmod(0o700)


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


async def test_two_gateways_on_one_machine_do_not_collide(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = Server(_project(first_dir), "--port", "0", "--management-port", "0")
    try:
        second = Server(_project(second_dir), "--port", "0", "--management-port", "0")
        try:
            for server in (first, second):
                async with websockets.connect(server.ws_url) as ws:
                    await ws.send("hello")
        finally:
            code, err = await asyncio.to_thread(second.stop)
            assert code == 0, err
    finally:
        code, err = await asyncio.to_thread(first.stop)
        assert code == 0, err


def test_a_port_in_use_names_the_listener_its_key_and_flag(tmp_path: Path) -> None:
    import socket

    config = _project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for flag, listener, key in (
            ("--port", "WebSocket listener", "server.port"),
            ("--management-port", "management API", "management.port"),
            ("--management-tls-port", "HTTPS management API", "management.tls_port"),
        ):
            result = subprocess.run(
                [*HUBBUB, "serve", "--config", str(config), flag, str(port)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1
            expected = (
                f"hubbub: cannot listen on 127.0.0.1:{port} for the {listener} ({key}, {flag}): "
                "address already in use\n"
            )
            assert expected in result.stderr, result.stderr
            assert "gateway stopped" not in result.stderr
            assert "Traceback" not in result.stderr


def test_check_accepts_sentinel_and_cluster_store_urls_with_workers(tmp_path: Path) -> None:
    for url in (
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2",
        "redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7001",
    ):
        config = _project(tmp_path, f'[store]\nurl = "{url}"\n')
        config.write_text(config.read_text().replace("[server]\n", "[server]\nworkers = 2\n"))
        result = _check(config)
        assert result.returncode == 0, result.stderr
        assert f"store: {url}  workers=2" in result.stdout.splitlines()


def test_check_names_a_malformed_sentinel_or_cluster_url(tmp_path: Path) -> None:
    bad = {
        '[store]\nurl = "redis+sentinel://10.0.0.1:26379"\n': "store.url: ",
        '[store]\nurl = "redis+cluster://10.0.0.1:port"\n': "store.url: ",
        '[store]\nurl = "redis+cluster://10.0.0.1:7000/3"\n': "database 0 only",
        '[history]\nurl = "redis+sentinel:///mymaster"\n': "history.url: ",
    }
    for extra, message in bad.items():
        result = _check(_project(tmp_path, extra))
        assert result.returncode == 2, extra
        assert message in result.stderr, (extra, result.stderr)

"""Hot reload ([server] reload = true, hubbub serve --reload): a change to a function's files
reloads that function only; clients stay connected and get the new handler's reply."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

from hubbub.gateway.app import Gateway
from hubbub.testing import run_gateway
from tests.helpers import eventually
from tests.runtimes.test_provided import SHELL_BOOTSTRAP
from tests.store.redis_server import delete_prefix, unique_prefix

# Generous: the machine running the tests may be busy; a reload takes about a second.
RELOAD_TIMEOUT = 60.0

REPLY = """\
import json

def reply(event, context):
    return {{"statusCode": 200, "body": json.dumps({{"reply": {value!r}}})}}
"""


def _reply_handler(path: Path, value: str) -> None:
    path.write_text(REPLY.format(value=value))


def _config(**routes: str) -> dict[str, Any]:
    """Routes chosen by the message's "action", each answering on the socket."""
    return {
        "server": {"reload": True},
        "api": {"route_selection_expression": "$request.body.action"},
        "routes": {
            key: {"handler": handler, "route_response": True} for key, handler in routes.items()
        },
    }


async def _ask(ws: Any, action: str) -> Any:
    await ws.send(json.dumps({"action": action}))
    return json.loads(await asyncio.wait_for(ws.recv(), RELOAD_TIMEOUT))["reply"]


def _reload_lines(caplog: pytest.LogCaptureFixture, route: str) -> list[dict[str, Any]]:
    return [
        {"message": r.getMessage(), "level": r.levelname, **getattr(r, "fields", {})}
        for r in caplog.records
        if r.name == "hubbub.reload" and getattr(r, "fields", {}).get("route") == route
    ]


async def _reloads(
    caplog: pytest.LogCaptureFixture, route: str, count: int, status: str
) -> dict[str, Any]:
    """Wait for ``route``'s ``count``-th reload line, and check its status."""

    def seen() -> list[dict[str, Any]]:
        return _reload_lines(caplog, route)[count - 1 :]

    line: dict[str, Any] = (await eventually(seen, RELOAD_TIMEOUT, f"reload #{count} of {route}"))[
        0
    ]
    assert line["status"] == status, line
    return line


@pytest.fixture
def reload_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="hubbub.reload")
    return caplog


async def test_an_edit_reloads_the_handler_and_the_socket_stays_open(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    handler = tmp_path / "chat.py"
    _reply_handler(handler, "one")
    async with (
        run_gateway(_config(say="chat.reply"), base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        assert await _ask(ws, "say") == "one"
        _reply_handler(handler, "second")
        line = await _reloads(reload_log, "say", 1, "ok")
        assert line["files"] == "chat.py"
        assert line["function"] == gw.routes["say"].integration.name
        assert await _ask(ws, "say") == "second"
        assert len(gw.hub.connections) == 1  # the same connection, never reconnected


async def test_a_broken_edit_keeps_the_old_handler_and_a_fixed_one_reloads(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    handler = tmp_path / "chat.py"
    _reply_handler(handler, "one")
    async with (
        run_gateway(_config(say="chat.reply"), base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        handler.write_text("import json\n\ndef reply(event, context)\n    return 1\n")
        line = await _reloads(reload_log, "say", 1, "failed")
        assert line["level"] == "ERROR"
        assert line["at"] == f"{handler}:3"
        assert line["error"].startswith("SyntaxError")
        assert await _ask(ws, "say") == "one"

        handler.write_text("import no_such_module_here\n" + REPLY.format(value="unused"))
        line = await _reloads(reload_log, "say", 2, "failed")
        assert line["at"] == f"{handler}:1"
        assert "ModuleNotFoundError" in line["error"]
        assert await _ask(ws, "say") == "one"

        handler.write_text(REPLY.format(value="x").replace("def reply", "def renamed"))
        line = await _reloads(reload_log, "say", 3, "failed")
        assert "no function 'reply'" in line["error"]
        assert await _ask(ws, "say") == "one"

        _reply_handler(handler, "fixed")
        await _reloads(reload_log, "say", 4, "ok")
        assert await _ask(ws, "say") == "fixed"


async def test_only_the_function_whose_files_changed_reloads(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    _reply_handler(tmp_path / "first.py", "first")
    _reply_handler(tmp_path / "second.py", "second")
    async with (
        run_gateway(_config(a="first.reply", b="second.reply"), base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        assert gw.reloader is not None
        before = gw.routes["a"]
        _reply_handler(tmp_path / "second.py", "second, edited")
        await _reloads(reload_log, "b", 1, "ok")
        await eventually(lambda: gw.reloader and gw.reloader.batches == 1, RELOAD_TIMEOUT)
        assert _reload_lines(reload_log, "a") == []
        assert gw.routes["a"] is before
        assert await _ask(ws, "a") == "first"
        assert await _ask(ws, "b") == "second, edited"


async def test_a_changed_sibling_module_is_imported_anew(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "words_for_reload.py").write_text("WORD = 'old'\n")
    (tmp_path / "chat.py").write_text(
        "import json, words_for_reload\n"
        "def reply(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps({'reply': words_for_reload.WORD})}\n"
    )
    async with (
        run_gateway(_config(say="chat.reply"), base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        assert await _ask(ws, "say") == "old"
        (tmp_path / "words_for_reload.py").write_text("WORD = 'brand new'\n")
        line = await _reloads(reload_log, "say", 1, "ok")
        assert line["files"] == "words_for_reload.py"
        assert await _ask(ws, "say") == "brand new"


SLOW = """\
import asyncio, json, os

async def reply(event, context):
    gate = os.environ["GATE"]
    while not os.path.exists(gate):
        await asyncio.sleep(0.02)
    return {{"statusCode": 200, "body": json.dumps({{"reply": {value!r}}})}}
"""


async def test_invocations_in_flight_finish_on_the_old_handler(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    gate = tmp_path / "gate"
    (code / "slow.py").write_text(SLOW.format(value="old"))
    config = _config(say="slow.reply")
    config["environment"] = {"GATE": str(gate)}
    async with (
        run_gateway(config, base_dir=code) as gw,
        websockets.connect(gw.websocket_url) as first,
        websockets.connect(gw.websocket_url) as second,
    ):
        await first.send(json.dumps({"action": "say"}))  # waits for the gate
        await eventually(lambda: gw.invoker and gw.invoker.in_flight == 1, RELOAD_TIMEOUT)
        (code / "slow.py").write_text(SLOW.format(value="new").replace("while not", "if not"))
        await _reloads(reload_log, "say", 1, "ok")
        await second.send(json.dumps({"action": "say"}))
        assert json.loads(await asyncio.wait_for(second.recv(), RELOAD_TIMEOUT)) == {"reply": "new"}
        gate.touch()
        assert json.loads(await asyncio.wait_for(first.recv(), RELOAD_TIMEOUT)) == {"reply": "old"}


async def test_a_function_with_its_own_code_root_reloads(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    for name in ("one", "two"):
        root = tmp_path / "functions" / name
        root.mkdir(parents=True)
        (root / "helper.py").write_text(f"WHO = {name!r}\n")
        (root / "app.py").write_text(
            "import json, helper\n"
            "def handler(event, context):\n"
            "    return {'statusCode': 200, 'body': json.dumps({'reply': helper.WHO})}\n"
        )
    config = _config()
    config["routes"] = {
        name: {"handler": "app.handler", "code": f"functions/{name}", "route_response": True}
        for name in ("one", "two")
    }
    async with (
        run_gateway(config, base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        (tmp_path / "functions/two/helper.py").write_text("WHO = 'two, edited'\n")
        line = await _reloads(reload_log, "two", 1, "ok")
        assert line["files"] == "functions/two/helper.py"
        assert await _ask(ws, "two") == "two, edited"
        assert await _ask(ws, "one") == "one"
        assert _reload_lines(reload_log, "one") == []


async def test_without_reload_nothing_is_watched(tmp_path: Path) -> None:
    _reply_handler(tmp_path / "chat.py", "one")
    config = _config(say="chat.reply")
    config["server"] = {}
    gw: Gateway
    async with run_gateway(config, base_dir=tmp_path) as gw:
        assert gw.reloader is None


def _serve(tmp_path: Path, *flags: str, config: str = "") -> subprocess.Popen[str]:
    """``hubbub serve --reload`` on chat.reply (route "say"); stderr carries the log."""
    (tmp_path / "hubbub.toml").write_text(
        f"""
[server]
port = 0
[management]
port = 0
tls_port = 0
state_dir = "{tmp_path / "state"}"
[api]
route_selection_expression = "$request.body.action"
[routes.say]
handler = "chat.reply"
route_response = true
{config}
"""
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubbub.cli",
            "serve",
            "--reload",
            "--config",
            "hubbub.toml",
            *flags,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _websocket_url(proc: subprocess.Popen[str]) -> str:
    """The URL ``hubbub serve`` prints first; if it exits instead, what it said on stderr."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    line = proc.stdout.readline()
    if not line.startswith("hubbub: websocket"):
        proc.wait(30)
        raise AssertionError(f"no websocket line: {line!r}; stderr:\n{proc.stderr.read()}")
    return line.split()[2]


async def _log_line(proc: subprocess.Popen[str], text: str) -> str:
    """The next line of ``proc``'s log that holds ``text``."""
    assert proc.stderr is not None
    line = ""
    while text not in line:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), RELOAD_TIMEOUT)
        assert line, f"hubbub exited before logging {text!r}"
    return line


async def _stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    await asyncio.to_thread(proc.communicate, timeout=30)
    return proc.returncode


async def test_hubbub_serve_reload_reloads_with_the_socket_open(tmp_path: Path) -> None:
    _reply_handler(tmp_path / "chat.py", "one")
    proc = _serve(tmp_path)
    try:
        ws_url = _websocket_url(proc)
        async with websockets.connect(ws_url) as ws:
            assert await _ask(ws, "say") == "one"
            _reply_handler(tmp_path / "chat.py", "after the edit")
            line = await _log_line(proc, "reloaded")
            assert "route=say" in line
            assert "files=chat.py" in line
            assert "status=ok" in line
            assert await _ask(ws, "say") == "after the edit"
    finally:
        assert await _stop(proc) == 0


@pytest.mark.redis
async def test_every_worker_reloads_on_its_own(tmp_path: Path, redis_url: str) -> None:
    _reply_handler(tmp_path / "chat.py", "one")
    prefix = unique_prefix()
    proc = _serve(
        tmp_path,
        *("--workers", "2", "--store", redis_url),
        config=f'[store]\nkey_prefix = "{prefix}"',
    )
    try:
        ws_url = _websocket_url(proc)
        # Connections spread over both workers (one worker getting all 16: odds 2 in 65,536).
        clients = [await websockets.connect(ws_url) for _ in range(16)]
        _reply_handler(tmp_path / "chat.py", "edited")
        await _log_line(proc, "reloaded")
        await _log_line(proc, "reloaded")  # one line per worker
        for ws in clients:
            assert await _ask(ws, "say") == "edited"
            await ws.close()
    finally:
        assert await _stop(proc) == 0
        await delete_prefix(redis_url, prefix)


async def test_an_edit_of_the_same_size_within_the_same_second_reloads(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The .pyc written at the first import records the source's mtime in whole seconds and its
    # size: without dropping it, the reload would run the old code.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE
    handler = tmp_path / "chat.py"
    _reply_handler(handler, "one")
    second = 1_700_000_000 * 10**9
    os.utime(handler, ns=(second, second))
    async with (
        run_gateway(_config(say="chat.reply"), base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        assert await _ask(ws, "say") == "one"
        assert list((tmp_path / "__pycache__").glob("chat.*.pyc"))
        _reply_handler(handler, "two")
        os.utime(handler, ns=(second + 1000, second + 1000))
        await _reloads(reload_log, "say", 1, "ok")
        assert await _ask(ws, "say") == "two"


AUTHORIZER = """\
def handler(event, context):
    if {refuse}:
        raise Exception("Unauthorized")
    arn = event["methodArn"]
    statement = {{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}}
    return {{"principalId": "u", "policyDocument": {{"Version": "2012-10-17",
                                                  "Statement": [statement]}}}}
"""


async def test_the_authorizer_reloads_and_connected_clients_stay(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "auth.py").write_text(AUTHORIZER.format(refuse=False))
    _reply_handler(tmp_path / "chat.py", "one")
    config = _config(say="chat.reply")
    config["authorizer"] = {
        "handler": "auth.handler",
        "identity_source": ["route.request.querystring.t"],
    }
    async with (
        run_gateway(config, base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url + "?t=x") as ws,
    ):
        (tmp_path / "auth.py").write_text(AUTHORIZER.format(refuse="'refused' != ''"))
        line = await _reloads(reload_log, "$authorizer", 1, "ok")
        assert line["files"] == "auth.py"
        assert _reload_lines(reload_log, "say") == []
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(gw.websocket_url + "?t=x")
        assert refused.value.response.status_code == 401
        assert await _ask(ws, "say") == "one"


PROCESS = """\
import json, os, pathlib, time

def handler(event, context):
    pathlib.Path(os.environ["GATE"] + ".running").touch()
    while not os.path.exists(os.environ["GATE"]):
        time.sleep(0.02)
    return {{"statusCode": 200, "body": json.dumps({{"reply": {value!r}, "pid": os.getpid()}})}}
"""


async def test_a_process_function_reloads_once_its_invocation_in_flight_finishes(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    gate = tmp_path / "gate"  # outside the code root: creating it is no change of the function
    (code / "app.py").write_text(PROCESS.format(value="old"))
    config = _config()
    config["routes"] = {
        "say": {
            "handler": "app.handler",
            "code": "fn",
            "isolation": "process",
            "route_response": True,
            "timeout": RELOAD_TIMEOUT,
        }
    }
    config["environment"] = {"GATE": str(gate)}
    async with (
        run_gateway(config, base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as first,
        websockets.connect(gw.websocket_url) as second,
    ):
        pool = gw.routes["say"].integration.pool  # type: ignore[attr-defined]
        await first.send(json.dumps({"action": "say"}))  # its environment waits for the gate
        running = tmp_path / "gate.running"
        await eventually(running.exists, RELOAD_TIMEOUT, "the first invocation to run")
        [old_pid] = pool.pids

        (code / "app.py").write_text("def handler(event, context)\n    return 1\n")
        line = await _reloads(reload_log, "say", 1, "failed")
        assert line["error"].startswith("Runtime.UserCodeSyntaxError"), line
        assert pool.pids == [old_pid]  # nothing replaced

        (code / "app.py").write_text(PROCESS.format(value="new"))
        await _reloads(reload_log, "say", 2, "ok")
        gate.touch()  # from now on handlers answer at once
        await second.send(json.dumps({"action": "say"}))
        new = json.loads(await asyncio.wait_for(second.recv(), RELOAD_TIMEOUT))
        old = json.loads(await asyncio.wait_for(first.recv(), RELOAD_TIMEOUT))
        assert old == {"reply": "old", "pid": old_pid}  # finished where it started
        assert new["reply"] == "new"
        assert new["pid"] != old_pid
        # The old environment ends once its invocation is done; the new one serves both.
        await eventually(lambda: old_pid not in pool.pids, RELOAD_TIMEOUT, "the old one to end")
        assert (await _ask(first, "say")) == "new"


PRESENCE = """\
import os

def on_presence(event, context):
    with open(os.environ["SEEN"], "a") as seen:
        seen.write({version!r} + "\\n")
    return {{"statusCode": 200}}
"""


async def test_the_presence_route_reloads(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    seen = tmp_path / "seen.txt"
    seen.touch()
    (tmp_path / "pres.py").write_text(PRESENCE.format(version="v1"))
    config = _config()
    config["routes"] = {"$presence": {"handler": "pres.on_presence"}}
    config["presence"] = {"route": "$presence"}
    config["environment"] = {"SEEN": str(seen)}
    async with (
        run_gateway(config, base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url),
    ):
        [first] = list(gw.hub.connections)
        await gw.rooms.join("a", first, presence=True)
        await eventually(lambda: seen.read_text() == "v1\n", RELOAD_TIMEOUT, "the join event")
        (tmp_path / "pres.py").write_text(PRESENCE.format(version="v2"))
        await _reloads(reload_log, "$presence", 1, "ok")
        await gw.rooms.join("b", first, presence=True)
        await eventually(
            lambda: seen.read_text() == "v1\nv2\n", RELOAD_TIMEOUT, "the reloaded route's event"
        )


SHELL = r"""
function handler () {{
  echo '{{"statusCode": 200, "body": "{{\"reply\": \"{value}\"}}"}}'
}}
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tutorial's bootstrap uses curl")
async def test_a_provided_function_reloads_when_any_file_of_its_code_root_changes(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "sh"
    code.mkdir()
    (code / "bootstrap").write_text(SHELL_BOOTSTRAP.lstrip())
    (code / "bootstrap").chmod(0o755)
    (code / "function.sh").write_text(SHELL.format(value="bash one"))
    config = _config()
    config["routes"] = {
        "say": {
            "handler": "function.handler",
            "runtime": "provided.al2023",
            "code": "sh",
            "route_response": True,
        }
    }
    async with (
        run_gateway(config, base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        assert await _ask(ws, "say") == "bash one"
        (code / "function.sh").write_text("exit 3\n")  # sourced at init: the runtime exits
        line = await _reloads(reload_log, "say", 1, "failed")
        assert line["error"].startswith("Runtime.ExitError"), line
        assert await _ask(ws, "say") == "bash one"
        (code / "function.sh").write_text(SHELL.format(value="bash two"))
        line = await _reloads(reload_log, "say", 2, "ok")
        assert line["files"] == "sh/function.sh"
        assert await _ask(ws, "say") == "bash two"


NODE = """\
exports.handler = async (event) => ({{
  statusCode: 200,
  body: JSON.stringify({{ reply: {value!r} }}),
}});
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_a_node_function_reloads_and_a_syntax_error_keeps_the_old_one(
    tmp_path: Path, reload_log: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "js"
    code.mkdir()
    (code / "index.js").write_text(NODE.format(value="node one"))
    config = _config()
    config["routes"] = {
        "say": {
            "handler": "index.handler",
            "runtime": "nodejs20.x",
            "code": "js",
            "route_response": True,
        }
    }
    async with (
        run_gateway(config, base_dir=tmp_path) as gw,
        websockets.connect(gw.websocket_url) as ws,
    ):
        assert await _ask(ws, "say") == "node one"
        (code / "index.js").write_text("exports.handler = async (event) => {\n")
        line = await _reloads(reload_log, "say", 1, "failed")
        assert "Runtime.UserCodeSyntaxError" in line["error"], line
        assert await _ask(ws, "say") == "node one"
        (code / "index.js").write_text(NODE.format(value="node two"))
        line = await _reloads(reload_log, "say", 2, "ok")
        assert line["files"] == "js/index.js"
        assert await _ask(ws, "say") == "node two"

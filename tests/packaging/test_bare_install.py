"""What users install: the sdist and wheel built from this tree, installed with no extras.

A dev extra can hide a missing runtime dependency (PyJWT[crypto] once hid cryptography), so this
test builds the package, installs the wheel alone into a fresh virtualenv (at the versions
constraints.txt pins, so it is the same set every day), and runs the installed ``hubbub`` on the
chat example: ``check``, then ``serve`` through a WebSocket handshake and routed messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import websockets

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat"

ECHO = """
def handler(event, context):
    return {"statusCode": 200, "body": "echo: " + event["body"]}
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the build backend is the pinned setuptools of this environment, not whatever
    # the registry serves today (plain `python -m build` works the same way, isolated).
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def bare(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and its declared dependencies, nothing else."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next(dist.glob("hubbub-*.whl"))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    constraints = ["--constraint", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, "install", *constraints, str(wheel)], check=True)
    return venv


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The installed hubbub's environment: its own HOME (the local CA), no test variables."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "CHAT_DB": str(tmp_path / "chat.sqlite3"),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_the_sdist_and_the_wheel_carry_the_licence_and_the_metadata(dist: Path) -> None:
    wheel = next(dist.glob("hubbub-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # static/hubbub.js is a symlink to clients/js/hubbub.js in the tree: the wheel has the file.
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read("hubbub/static/hubbub.js") == (ROOT / "clients/js/hubbub.js").read_bytes()
    assert "hubbub/py.typed" in names
    assert "License-Expression: MIT" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata
    sdist = next(dist.glob("hubbub-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/LICENSE") for n in tar.getnames())


def test_no_extra_is_installed(bare: Path) -> None:
    # The point of the bare install: none of these may be what makes the tests below pass.
    for optional in ("redis", "jwt", "uvloop", "pytest"):
        probe = f"import importlib.util as u, sys; sys.exit(u.find_spec({optional!r}) is not None)"
        result = subprocess.run([str(bare / "bin" / "python"), "-c", probe])
        assert result.returncode == 0, f"{optional} is installed in the bare virtualenv"
    subprocess.run([str(bare / "bin" / "python"), "-m", "pip", "check"], check=True)


def test_hubbub_check_passes_on_the_chat_example(bare: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(bare / "bin" / "hubbub"), "check", "--config", str(CHAT / "hubbub.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "  sendMessage      python handler.handler  timeout=29s" in result.stdout.splitlines()


class Served:
    """``hubbub serve`` from the bare virtualenv, its listener lines read from stdout."""

    def __init__(self, bare: Path, config: Path, env: dict[str, str]) -> None:
        ports = ["--port", "0", "--management-port", "0"]
        self.proc = subprocess.Popen(
            [str(bare / "bin" / "hubbub"), "serve", "--config", str(config), *ports],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if not line.startswith("hubbub: websocket"):
            self.proc.kill()
            pytest.fail(f"hubbub serve did not start: {line}{self.proc.stderr.read()}")
        self.ws_url = line.split()[2]

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


async def _frame(ws: websockets.ClientConnection) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(ws.recv(), 15))  # type: ignore[no-any-return]


async def test_hubbub_serve_runs_the_chat_example(
    bare: Path, env: dict[str, str], tmp_path: Path
) -> None:
    chat = tmp_path / "chat"
    shutil.copytree(CHAT, chat, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    server = await asyncio.to_thread(Served, bare, chat / "hubbub.toml", env)
    try:
        async with websockets.connect(server.ws_url) as a, websockets.connect(server.ws_url) as b:
            # $default: the handler answers through boto3 at https://{domainName}/{stage}.
            await a.send(json.dumps({"action": "hello"}))
            help_frame = await _frame(a)
            assert help_frame["action"] == "help"
            # sendMessage: a broadcast to every stored connection.
            await a.send(json.dumps({"action": "sendMessage", "message": "from a bare install"}))
            for ws in (a, b):
                frame = await _frame(ws)
                assert frame["action"] == "message"
                assert frame["message"] == "from a bare install"
    finally:
        err = await asyncio.to_thread(server.stop)
    assert "Traceback" not in err


async def test_hubbub_serve_answers_with_a_route_response(
    bare: Path, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "echo.py").write_text(ECHO)
    config = tmp_path / "hubbub.toml"
    config.write_text('[routes."echo"]\nhandler = "echo.handler"\nroute_response = true\n')
    server = await asyncio.to_thread(Served, bare, config, env)
    try:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send('{"action": "echo", "n": 1}')
            assert await asyncio.wait_for(ws.recv(), 15) == 'echo: {"action": "echo", "n": 1}'
    finally:
        await asyncio.to_thread(server.stop)


NODE_ECHO = """\
exports.handler = async (event) => ({ statusCode: 200, body: 'node: ' + event.body });
"""
ISOLATED_ECHO = """\
def handler(event, context):
    return {"statusCode": 200, "body": "isolated: " + event["body"]}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_functions_in_their_own_processes_run_from_the_wheel(
    bare: Path, env: dict[str, str], tmp_path: Path
) -> None:
    # The Node.js bootstrap and the Python one are package data of the wheel, not of the tree.
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "index.js").write_text(NODE_ECHO)
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "app.py").write_text(ISOLATED_ECHO)
    config = tmp_path / "hubbub.toml"
    config.write_text(
        '[routes."node"]\nhandler = "index.handler"\nruntime = "nodejs20.x"\ncode = "js"\n'
        "route_response = true\n"
        '[routes."py"]\nhandler = "app.handler"\ncode = "py"\nisolation = "process"\n'
        "route_response = true\n"
    )
    server = await asyncio.to_thread(Served, bare, config, env)
    try:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send('{"action": "node"}')
            assert await asyncio.wait_for(ws.recv(), 30) == 'node: {"action": "node"}'
            await ws.send('{"action": "py"}')
            assert await asyncio.wait_for(ws.recv(), 30) == 'isolated: {"action": "py"}'
    finally:
        err = await asyncio.to_thread(server.stop)
    assert "Traceback" not in err

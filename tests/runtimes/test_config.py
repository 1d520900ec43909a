"""Route and authorizer keys of process-run functions: runtime, isolation, reserved_concurrency,
and the config errors naming the key (and, from the CLI, the file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hubbub.config import load_config
from hubbub.errors import ConfigError
from hubbub.runtimes import launch
from tests.runtimes.helpers import write, write_config


def _load(tmp_path: Path, body: str) -> object:
    (tmp_path / "fn").mkdir(exist_ok=True)
    return load_config(write_config(tmp_path, {"go": 'handler = "app.handler"\n' + body}), env={})


def _error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'runtime = "ruby3.3"\ncode = "fn"',
            "routes.\"go\".runtime: hubbub does not run 'ruby3.3' functions; it runs python3.x, ",
        ),
        (
            'runtime = "go1.x"\ncode = "fn"',
            "(go1.x functions run as provided.al2023)",
        ),
        ('runtime = "python2.7"\ncode = "fn"', 'routes."go".runtime: unknown Python runtime'),
        (
            'runtime = "provided.al2023"\ncode = "fn"',
            'routes."go".code: provided.al2023 functions start ',
        ),
        (
            'isolation = "container"\ncode = "fn"',
            'routes."go".isolation: must be "inprocess" or "process", got \'container\'',
        ),
        (
            'runtime = "provided.al2"\nisolation = "inprocess"\ncode = "fn"',
            'routes."go".isolation: provided.al2 functions run in their own processes',
        ),
        ('isolation = "process"\nreserved_concurrency = 0', "must be at least 1"),
        (
            "reserved_concurrency = 2",
            'routes."go".reserved_concurrency: applies to functions in their own processes',
        ),
    ],
)
def test_config_errors(tmp_path: Path, body: str, message: str) -> None:
    assert message in _error(tmp_path, body)


def test_a_bootstrap_that_is_not_executable(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "bootstrap", "#!/bin/sh\n")
    message = _error(tmp_path, 'runtime = "provided.al2023"\ncode = "fn"')
    assert message.startswith('routes."go".code: ')
    assert "is not executable (chmod +x" in message


def test_node_must_be_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    message = _error(tmp_path, 'runtime = "nodejs20.x"\ncode = "fn"')
    assert message.startswith('routes."go".runtime: nodejs20.x functions need Node.js: no `node`')


def test_the_keys_reach_the_function(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "bootstrap", "#!/bin/sh\n", executable=True)
    config = _load(tmp_path, 'runtime = "provided.al2023"\ncode = "fn"\nreserved_concurrency = 7')
    function = config.routes["go"].function  # type: ignore[attr-defined]
    assert (function.runtime, function.reserved_concurrency, function.process_kind) == (
        "provided.al2023",
        7,
        "provided",
    )
    python = _load(tmp_path, 'runtime = "python3.12"\ncode = "fn"\nisolation = "process"')
    assert python.routes["go"].function.process_kind == "python"  # type: ignore[attr-defined]
    inprocess = _load(tmp_path, 'runtime = "python3.12"\ncode = "fn"')
    assert inprocess.routes["go"].function.process_kind is None  # type: ignore[attr-defined]


def test_the_authorizer_takes_the_same_keys(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    config = tmp_path / "hubbub.toml"
    config.write_text(
        '[authorizer]\nhandler = "auth.handler"\ncode = "fn"\nisolation = "process"\n'
        "reserved_concurrency = 3\n"
        '[routes."$default"]\nhandler = "auth.handler"\ncode = "fn"\n'
    )
    auth = load_config(config, env={}).authorizer
    assert auth is not None
    assert auth.function is not None
    assert (auth.function.process_kind, auth.function.reserved_concurrency) == ("python", 3)


def test_the_cli_names_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    config = write_config(
        tmp_path, {"go": 'handler = "x.handler"\nruntime = "provided.al2"\ncode = "fn"'}
    )
    result = subprocess.run(
        [sys.executable, "-m", "hubbub.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert 'routes."go".code' in result.stderr
    assert "bootstrap" in result.stderr


def test_launch_commands(tmp_path: Path) -> None:
    assert launch.command("provided", tmp_path) == [str(tmp_path / "bootstrap")]
    assert launch.command("python", tmp_path) == [sys.executable, str(launch.PYTHON_BOOTSTRAP)]
    node = launch.command("node", tmp_path)
    assert node[-1] == str(launch.NODE_BOOTSTRAP)
    assert launch.NODE_BOOTSTRAP.name == "bootstrap.js"
    assert launch.runtime_kind("nodejs22.x", "") == "node"
    assert launch.runtime_kind("python3.13", "") is None


def test_check_says_which_routes_run_in_their_own_processes(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "bootstrap", "#!/bin/sh\n", executable=True)
    write(tmp_path / "fn" / "app.py", "def handler(event, context):\n    return None\n")
    config = write_config(
        tmp_path,
        {
            "custom": 'handler = "x.handler"\nruntime = "provided.al2023"\ncode = "fn"\n'
            "reserved_concurrency = 2",
            "isolated": 'handler = "app.handler"\ncode = "fn"\nisolation = "process"',
            "inside": 'handler = "app.handler"\ncode = "fn"',
        },
    )
    result = subprocess.run(
        [sys.executable, "-m", "hubbub.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if "timeout=" in line}
    assert lines["custom"].endswith("(provided.al2023 in its own processes, up to 2)")
    assert lines["isolated"].endswith("(python in its own processes, up to 4)")
    assert lines["inside"].endswith("timeout=29s")
    # The second column says what runs the handler.
    assert [lines[k].split()[1] for k in ("custom", "isolated", "inside")] == [
        "provided",
        "python",
        "python",
    ]

"""Every command the examples' READMEs and config comments give works as written, from the
repository root, after the README's first command (`python3 dev.py chat`, which makes .venv)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# dev.py runs .venv's hubbub; the tests run inside .venv, so its python is this one.
VENV_BIN = Path(sys.executable).parent


def _documented_lines() -> list[tuple[Path, str]]:
    lines = []
    for path in sorted(EXAMPLES.glob("*/*")):
        if path.suffix in {".md", ".toml", ".py"} and path.is_file():
            lines += [(path, line) for line in path.read_text().splitlines()]
    return lines


SERVE = re.compile(r"python3 dev\.py serve --config ([^\s`,]+)")


def test_commands_name_the_venv_or_dev_py_never_a_bare_hubbub() -> None:
    # `hubbub` is on no PATH after the README's first command: only .venv/bin has it.
    bare = re.compile(r"(^|[`#]\s*|\s{2,})(hubbub (serve|check)|python3 examples/)")
    offenders = [
        f"{p.relative_to(ROOT)}: {line.strip()}"
        for p, line in _documented_lines()
        if bare.search(line)
    ]
    assert offenders == []


def _served_configs() -> list[str]:
    found = {m.group(1) for _, line in _documented_lines() if (m := SERVE.search(line.strip()))}
    return sorted(found)


def test_every_documented_serve_command_names_a_config_that_exists() -> None:
    configs = _served_configs()
    assert "examples/rooms/hubbub.toml" in configs
    for config in configs:
        assert (ROOT / config).is_file(), config


MOVED_PORTS = ("--port", "0", "--management-port", "0")


@pytest.mark.parametrize("config", _served_configs())
def test_documented_serve_commands_start(config: str, tmp_path: Path) -> None:
    # As written, with only the ports moved so that it runs beside anything else on this machine.
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "serve", "--config", config, *MOVED_PORTS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": str(VENV_BIN), "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)},
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("hubbub: websocket  ws://127.0.0.1:"), line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_the_jwt_example_token_command_runs_as_written() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "examples/jwt/make_token.py", "alice"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "token=" in result.stdout

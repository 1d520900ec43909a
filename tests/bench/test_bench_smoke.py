"""The benchmark harness runs end to end: a tiny routed run against hubbub and bare aiohttp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("picows", reason="the bench extra (picows) is not installed")
pytest.importorskip("uvloop", reason="the bench extra (uvloop) is not installed")

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_routed_run_measures_hubbub_and_aiohttp(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--scenarios",
        "routed",
        "--peers",
        "hubbub,aiohttp",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
        "--connections",
        "5",
        "--out",
        str(tmp_path),
        "--no-install",
        "--no-docs",
        "--quiet-wait",
        "0",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    rows = {row["key"]: row for row in data["runs"][0]}
    assert set(rows) == {"hubbub", "aiohttp"}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["reason"])
        assert row["rate"] > 0, key
        assert row["server_us_per_msg"] > 0, key
    assert (tmp_path / "latest.md").read_text().count("hubbub") > 0


def _tiny_run(tmp_path: Path, scenario: str, peers: str, timeout: float) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "bench", "--scenarios", scenario, "--peers", peers]
    cmd += ["--warmup", "0.2", "--duration", "1", "--members", "20", "--out", str(tmp_path)]
    cmd += ["--no-install", "--no-docs", "--quiet-wait", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows: list[dict[str, Any]] = json.loads((tmp_path / "latest.json").read_text())["runs"][0]
    return rows


def test_handshakes_are_measured_interleaved_server_by_server(tmp_path: Path) -> None:
    rows = {row["key"]: row for row in _tiny_run(tmp_path, "connect", "hubbub,aiohttp", 90)}
    assert set(rows) == {"hubbub", "hubbub-async-connect", "aiohttp"}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["reason"])
        assert row["detail"]["interleaved"] is True, key
        assert row["rate"] > 0, key
        assert row["server_us_per_msg"] > 0, key
        assert row["errors"] == 0, key


def test_cross_node_is_measured_beside_one_node(tmp_path: Path) -> None:
    rows = {row["key"]: row for row in _tiny_run(tmp_path, "cross-node", "hubbub", 120)}
    assert set(rows) == {"hubbub-cluster", "hubbub"}
    for key, row in rows.items():
        assert row["scenario"] == "cross-node"
        assert row["status"] == "ok", (key, row["reason"])
        assert row["detail"]["interleaved"] is True, key
        assert row["detail"]["members"] == 20, key
        assert row["rate"] > 0, key


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_a_run_without_publish_leaves_the_work_tree_clean() -> None:
    before = _git_status()
    cmd = [sys.executable, "-m", "bench", "--quick", "--scenarios", "routed"]
    cmd += ["--peers", "aiohttp", "--warmup", "0.1", "--duration", "0.3", "--connections", "2"]
    cmd += ["--no-install", "--quiet-wait", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (ROOT / "bench" / "results" / "local" / "quick" / "latest.json").is_file()
    assert _git_status() == before

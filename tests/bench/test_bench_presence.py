"""The presence benchmark (bench/presence.py) runs end to end on a small room."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("picows", reason="the bench extra (picows) is not installed")

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_presence_run_reports_cpu_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "presence.json"
    cmd = [
        *(sys.executable, "-m", "bench.presence", "--members", "200", "--watchers", "5"),
        *("--churn", "5", "--rate", "40", "--duration", "1", "--out", str(out)),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=120, capture_output=True)
    result = json.loads(out.read_text())
    assert result["members"] == 200
    churn = result["churn"]
    assert churn["presence"]["joins_leaves"] > 10
    assert churn["presence"]["events_per_watcher"] >= churn["presence"]["joins_leaves"]
    assert churn["plain"]["events_per_watcher"] == 0  # no presence, no events
    assert result["bytes_per_member"]["presence"] is not None
    assert sum(result["client_errors"].values()) == 0

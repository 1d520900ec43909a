"""The benchmark's Lambda runtime rows (bench/runtime_rows.py): one Node.js file for hubbub and
serverless-offline, Python in-process and process-isolated, their goals, and a tiny run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import goals, runtime_rows
from bench.runner import Settings
from hubbub.config import load_config

ROOT = Path(__file__).resolve().parents[2]
NODE_FILE = ROOT / "bench" / "functions" / "node" / "handler.js"
TEMPLATE = ROOT / "bench" / "hubbub_app" / "hubbub-runtimes.toml"
SLS_NODE = ROOT / "bench" / "peers" / "sls_node"


def _exports(path: Path) -> set[str]:
    return set(re.findall(r"^exports\.(\w+) =", path.read_text(), re.MULTILINE))


def test_hubbub_and_serverless_offline_run_the_same_node_file() -> None:
    routes = tomllib.loads(TEMPLATE.read_text())["routes"]
    sls = yaml.safe_load((SLS_NODE / "serverless.yml").read_text())
    exported = _exports(NODE_FILE)
    for action in ("echo", "post"):
        route = routes[action]
        assert route["runtime"].startswith("nodejs")
        code = (TEMPLATE.parent / route["code"]).resolve()
        module, _, function = route["handler"].rpartition(".")
        assert (code / f"{module}.js") == NODE_FILE
        assert function in exported
        path, _, sls_function = sls["functions"][action]["handler"].rpartition(".")
        assert (SLS_NODE / f"{path}.js").resolve() == NODE_FILE
        assert sls_function == function
    assert routes["echo"]["route_response"] is True
    # serverless-offline's two-way route: the echo's return value is the route response.
    echo_event = sls["functions"]["echo"]["events"][0]["websocket"]
    assert echo_event["routeResponseSelectionExpression"] == "$default"
    assert "post" not in routes or "route_response" not in routes["post"]


def test_the_python_rows_run_one_file_in_process_and_isolated() -> None:
    routes = tomllib.loads(TEMPLATE.read_text())["routes"]
    inproc, isolated = routes["pyecho"], routes["pyecho_process"]
    assert "isolation" not in inproc
    assert isolated["isolation"] == "process"
    for key in ("code", "handler", "runtime", "route_response"):
        assert inproc[key] == isolated[key], key


def test_the_runtimes_config_loads() -> None:
    config = load_config(TEMPLATE)
    node = config.routes["echo"].function
    assert node is not None
    assert node.process_kind == "node"
    assert node.code.resolve() == NODE_FILE.parent
    assert node.reserved_concurrency == 2
    inproc, isolated = config.routes["pyecho"].function, config.routes["pyecho_process"].function
    assert inproc is not None
    assert isolated is not None
    assert inproc.process_kind is None
    assert isolated.process_kind == "python"


def test_the_node_packages_are_pinned_by_lock_files() -> None:
    for folder, wanted in (
        (NODE_FILE.parent, {"@aws-sdk/client-apigatewaymanagementapi"}),
        (SLS_NODE, {"serverless", "serverless-offline"}),
    ):
        lock = json.loads((folder / "package-lock.json").read_text())
        installed = {
            path.removeprefix("node_modules/"): entry["version"]
            for path, entry in lock["packages"].items()
            if path.count("node_modules/") == 1
        }
        for name in wanted:
            assert name in installed, (folder, name)
    sls_lock = json.loads((SLS_NODE / "package-lock.json").read_text())["packages"]
    # Serverless Framework v4 needs a login: the peer stays on v3.
    assert sls_lock["node_modules/serverless"]["version"].startswith("3.")


def _row(scenario: str, key: str, rate: float) -> dict[str, Any]:
    return {"scenario": scenario, "key": key, "status": "ok", "rate": rate}


def test_goals_compare_hubbub_with_serverless_offline_on_the_node_rows() -> None:
    run = [
        _row("node-echo", "hubbub-node", 9000.0),
        _row("node-echo", "sls-node", 2000.0),
        _row("node-post", "hubbub-node", 500.0),
        _row("node-post", "sls-node", 400.0),
        _row("python-isolation", "hubbub-python", 10000.0),
        _row("python-isolation", "hubbub-python-process", 2000.0),
    ]
    results = {g["scenario"]: g for g in goals.evaluate([run])}
    assert results["node-echo"]["median"] == pytest.approx(4.5)
    assert results["node-echo"]["pass"] is True
    assert results["node-post"]["median"] == pytest.approx(1.25)
    assert results["node-post"]["pass"] is False
    assert results["python-isolation"]["median"] == pytest.approx(0.2)
    assert results["python-isolation"]["pass"] is None  # reported, no target


def test_peers_select_the_rows() -> None:
    settings = Settings(peers=["hubbub"])
    names = ["node-echo", "node-post", "python-isolation"]
    assert runtime_rows.planned_steps(names, settings) == 4
    settings = Settings(peers=["sls-node"])
    assert runtime_rows.planned_steps(names, settings) == 2
    assert runtime_rows.planned_steps(names, Settings()) == 6


@pytest.mark.skipif(shutil.which("node") is None, reason="the Node.js rows need node")
@pytest.mark.skipif(shutil.which("npm") is None, reason="the harness installs with npm ci")
def test_tiny_run_of_hubbubs_runtime_rows(tmp_path: Path) -> None:
    """hubbub's side of every runtime row, 5 connections: the harness installs the Node
    function's packages itself (npm ci from its lock file)."""
    cmd = [sys.executable, "-m", "bench", "--scenarios", "node-echo,node-post,python-isolation"]
    cmd += ["--peers", "hubbub", "--warmup", "0.2", "--duration", "0.5", "--connections", "5"]
    cmd += ["--out", str(tmp_path), "--no-docs", "--quiet-wait", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    rows = {(row["scenario"], row["key"]): row for row in data["runs"][0]}
    assert set(rows) == {
        ("node-echo", "hubbub-node"),
        ("node-post", "hubbub-node"),
        ("python-isolation", "hubbub-python"),
        ("python-isolation", "hubbub-python-process"),
    }
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["reason"])
        assert row["rate"] > 0, key
        assert row["errors"] == 0, key
        assert row["server_us_per_msg"] > 0, key
    markdown = (tmp_path / "latest.md").read_text()
    assert "hubbub (Node.js, Runtime API)" in markdown
    assert 'hubbub, Python isolation = "process"' in markdown

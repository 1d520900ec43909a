"""The real AWS SDKs for JavaScript, as the repository pins them: v2 from
examples/seed-terraform/functions/chat/package-lock.json, v3 from
bench/functions/node/package-lock.json; ``npm ci`` once per checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SEED_FUNCTION = ROOT / "examples" / "seed-terraform" / "functions" / "chat"
BENCH_FUNCTION = ROOT / "bench" / "functions" / "node"


def seed_node_modules() -> Path:
    """The seed function's node_modules, installed from its lock when missing or stale (the
    test skips only when Node.js is absent; a failing ``npm ci`` fails it)."""
    return installed_node_modules(SEED_FUNCTION)


def bench_node_modules() -> Path:
    """The benchmark's Node.js function's node_modules (the JavaScript SDK v3's
    ``@aws-sdk/client-apigatewaymanagementapi`` as its lock pins it), installed likewise."""
    return installed_node_modules(BENCH_FUNCTION)


def installed_node_modules(folder: Path) -> Path:
    """``folder``'s node_modules after ``npm ci`` from its package-lock.json, run when they are
    missing or older than the lock (as ``python3 dev.py test`` runs it before the tests)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    modules = folder / "node_modules"
    installed = modules / ".package-lock.json"
    lock = folder / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            check=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    return modules

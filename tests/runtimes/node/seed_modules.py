"""The real AWS SDK for JavaScript v2, as the seed example pins it: ``npm ci`` from
examples/seed-terraform/functions/chat/package-lock.json, once per checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SEED_FUNCTION = ROOT / "examples" / "seed-terraform" / "functions" / "chat"


def seed_node_modules() -> Path:
    """The seed function's node_modules, installed from its lock when missing or stale (the
    test skips only when Node.js is absent; a failing ``npm ci`` fails it)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    modules = SEED_FUNCTION / "node_modules"
    installed = modules / ".package-lock.json"
    lock = SEED_FUNCTION / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=SEED_FUNCTION,
            check=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    return modules

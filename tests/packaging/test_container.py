"""deploy/Dockerfile builds an image that runs hubbub (only where a container engine answers)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    return docker if probe.returncode == 0 else None


def test_the_image_builds_and_runs_hubbub() -> None:
    docker = _engine()
    if docker is None:
        pytest.skip("no container engine answers `docker info` on this machine")
    tag = "hubbub-test:latest"
    subprocess.run(
        [docker, "build", "-f", str(ROOT / "deploy" / "Dockerfile"), "-t", tag, str(ROOT)],
        check=True,
        timeout=900,
    )
    version = subprocess.run(
        [docker, "run", "--rm", tag, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("hubbub ")


def test_the_deploy_files_name_what_exists() -> None:
    unit = (ROOT / "deploy" / "hubbub.service").read_text()
    assert "hubbub serve --config" in unit
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "python -m build --wheel" in dockerfile
    assert "/healthz" in dockerfile

"""What the setup scripts share: their progress lines and installing a Debian package (stdlib only).

``ensure_redis.py`` and ``ensure_browser.py`` import it as ``scripts.provision`` (run as scripts,
they first put the repository root on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["apt_install", "log"]

# Set once `apt-get update` ran in this process tree, so a second install does not repeat it.
_APT_UPDATED_ENV = "HUBBUB_APT_UPDATED"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _privilege_prefix() -> list[str] | None:
    """``[]`` as root, ``["sudo"]`` when sudo exists, else None (cannot install)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    return None


def apt_install(package: str) -> str | None:
    """Install a Debian package; return None on success or the reason it could not be done."""
    if not shutil.which("apt-get"):
        return "apt-get not found (not a Debian-like system)"
    prefix = _privilege_prefix()
    if prefix is None:
        return "not root and sudo is not available"
    env_cmd = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive"]
    steps: list[list[str]] = []
    if not os.environ.get(_APT_UPDATED_ENV):
        steps.append([*env_cmd, "apt-get", "update", "-q"])
    steps.append([*env_cmd, "apt-get", "install", "-y", "-q", package])
    for cmd in steps:
        log(" ".join(cmd))
        try:
            result = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL)
        except OSError as exc:
            return f"{cmd[0]}: {exc}"
        if result.returncode != 0:
            return f"`{' '.join(cmd)}` exited with {result.returncode}"
        if "update" in cmd:
            os.environ[_APT_UPDATED_ENV] = "1"
    return None

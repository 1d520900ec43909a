"""Find (or install from Debian) a Chromium binary for the browser tests.

Stdlib only, so it runs before the project's virtualenv exists. Browser tests drive the binary
through the ``playwright`` Python package with ``executable_path=``: nothing is ever downloaded
from anywhere but the Debian archive (no ``playwright install``).

Importable::

    from ensure_browser import ensure_chromium
    path = ensure_chromium()  # str, or None (with the reason printed)

or runnable: ``python3 scripts/ensure_browser.py`` prints the path (exit 1 when there is none).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.provision import apt_install, log

__all__ = ["CHROMIUM_ARGS", "ensure_chromium", "find_chromium"]

# Command-line switches the browser tests launch Chromium with: no sandbox (CI runs as root),
# no GPU, and no background traffic to Google services (the machine has no network anyway).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

_DEBIAN_CHROMIUM = "/usr/bin/chromium"
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Return the path of an installed Chromium/Chrome, or None. Installs nothing."""
    if os.access(_DEBIAN_CHROMIUM, os.X_OK):
        return _DEBIAN_CHROMIUM
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_version(path: str) -> str:
    """``Chromium 120.0.6099.224 built on Debian ...``, or "" if the binary does not answer."""
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def ensure_chromium() -> str | None:
    """Return a Chromium binary path, installing Debian's ``chromium`` package when possible.

    Returns None, after printing why, when there is no browser and none can be installed.
    """
    path = find_chromium()
    if path:
        return path
    log("chromium: not found, installing Debian's chromium package")
    reason = apt_install("chromium")
    if reason is None:
        path = find_chromium()
        if path:
            return path
        reason = "apt-get succeeded but no chromium binary appeared"
    log(f"chromium: unavailable ({reason}); browser tests cannot run")
    log("chromium: install it with `sudo apt-get install chromium` (Debian/Ubuntu)")
    return None


def main() -> int:
    path = ensure_chromium()
    if path is None:
        return 1
    print(path)
    version = chromium_version(path)
    if version:
        print(version, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

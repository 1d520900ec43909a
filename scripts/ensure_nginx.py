"""Find (or install from Debian) nginx for the trusted-proxy tests.

Stdlib only, like the other setup scripts. Importable (``ensure_nginx()`` returns the binary's path
or None, after printing why) or runnable (``python3 scripts/ensure_nginx.py`` prints the path).
The package only provides the binary here: the tests run their own nginx on a free port with a
config of their own, and installing it starts no service on a machine without systemd.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.provision import apt_install, log

__all__ = ["ensure_nginx", "find_nginx"]


def find_nginx() -> str | None:
    for path in ("/usr/sbin/nginx", shutil.which("nginx")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def ensure_nginx() -> str | None:
    path = find_nginx()
    if path:
        return path
    log("nginx: not found, installing Debian's nginx-light package")
    reason = apt_install("nginx-light")
    if reason is None:
        path = find_nginx()
        if path:
            return path
        reason = "apt-get succeeded but no nginx binary appeared"
    log(f"nginx: unavailable ({reason}); the trusted-proxy tests cannot run")
    return None


def main() -> int:
    path = ensure_nginx()
    if path is None:
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

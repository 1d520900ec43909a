"""Which functions run in their own processes, and the command that starts each one.

- ``provided.al2023`` / ``provided.al2`` / ``provided``: the ``bootstrap`` executable in the code
  root, as Lambda runs it (Go and Rust functions, shell scripts, ``python -m awslambdaric``).
- ``nodejs18.x`` … ``nodejs22.x``: ``node`` (from ``PATH``) with hubbub's Node.js bootstrap.
- ``python3.x`` with ``isolation = "process"``: the Python running hubbub with hubbub's own
  standard-library bootstrap (``python_bootstrap.py``), so a function gets its own interpreter,
  modules and ``sys.path`` while keeping the packages hubbub's environment has (boto3, as on
  Lambda).

Everything here is checked when the configuration loads, so a missing ``node`` or ``bootstrap``
is a config error naming the key, never a failure at the first invocation.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from hubbub.errors import ConfigError

HERE = Path(__file__).resolve().parent
NODE_BOOTSTRAP = HERE / "node" / "bootstrap.js"
PYTHON_BOOTSTRAP = HERE / "python_bootstrap.py"

ISOLATIONS = ("inprocess", "process")
# Environments one function may run at once when its route does not say (reserved_concurrency):
# enough for a chat's bursts, few enough that a laptop never starts dozens of Node processes.
DEFAULT_RESERVED_CONCURRENCY = 4

_NODE = re.compile(r"nodejs\d+\.x")
_PYTHON = re.compile(r"python3(\.\d+)?")
_PROVIDED = ("provided", "provided.al2", "provided.al2023")
SUPPORTED = "python3.x, nodejs18.x, nodejs20.x, nodejs22.x, provided.al2023, provided.al2"


def runtime_kind(runtime: str, isolation: str) -> str | None:
    """``"node"``, ``"python"`` or ``"provided"`` for a function that runs in its own processes;
    None for a Python function in hubbub's process (the default). ``isolation`` "" is the
    runtime's default: in-process for Python, a process for the others. Call after
    :func:`check`."""
    if runtime in _PROVIDED:
        return "provided"
    if _NODE.fullmatch(runtime):
        return "node"
    if isolation == "process":
        return "python"
    return None


def check(runtime: str, isolation: str, code: Path, prefix: str) -> None:
    """Raise a ConfigError naming ``{prefix}.runtime``, ``.isolation`` or ``.code`` when the
    function cannot run here (unknown runtime, no ``node``, no executable ``bootstrap``)."""
    if isolation and isolation not in ISOLATIONS:
        raise ConfigError(
            f"{prefix}.isolation", f'must be "inprocess" or "process", got {isolation!r}'
        )
    if not runtime or _PYTHON.fullmatch(runtime):
        return
    if runtime.startswith("python"):
        raise ConfigError(f"{prefix}.runtime", f"unknown Python runtime {runtime!r} (python3.x)")
    if isolation == "inprocess":  # only Python runs in hubbub's own process
        raise ConfigError(
            f"{prefix}.isolation", f'{runtime} functions run in their own processes: "process"'
        )
    if _NODE.fullmatch(runtime):
        if shutil.which("node") is None:
            raise ConfigError(
                f"{prefix}.runtime",
                f"{runtime} functions need Node.js: no `node` on PATH ({os.environ.get('PATH')})",
            )
        if not NODE_BOOTSTRAP.is_file():
            raise ConfigError(
                f"{prefix}.runtime", f"hubbub's Node.js bootstrap is missing ({NODE_BOOTSTRAP})"
            )
        return
    if runtime in _PROVIDED:
        bootstrap = code / "bootstrap"
        if not bootstrap.is_file():
            raise ConfigError(
                f"{prefix}.code",
                f"{runtime} functions start {bootstrap}, which does not exist (an executable "
                f"named bootstrap in the code root, as on Lambda)",
            )
        if not os.access(bootstrap, os.X_OK):
            raise ConfigError(
                f"{prefix}.code", f"{bootstrap} is not executable (chmod +x {bootstrap})"
            )
        return
    hint = " (go1.x functions run as provided.al2023)" if runtime.startswith("go") else ""
    raise ConfigError(
        f"{prefix}.runtime", f"hubbub does not run {runtime!r} functions{hint}; it runs {SUPPORTED}"
    )


def command(kind: str, code: Path) -> list[str]:
    """The argv that starts one execution environment of a ``kind`` function (see
    :func:`runtime_kind`); it runs with the code root as its working directory."""
    if kind == "provided":
        return [str(code / "bootstrap")]
    if kind == "node":
        node = shutil.which("node") or "node"
        return [node, str(NODE_BOOTSTRAP)]
    if kind == "python":
        return [sys.executable, str(PYTHON_BOOTSTRAP)]
    raise ValueError(f"no process runtime {kind!r}")

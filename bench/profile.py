"""Optional py-spy profiles of hubbub during measured windows (``python -m bench --profile``).

py-spy samples the server from outside (``--nonblocking``: it never pauses the process), writes
collapsed stacks, and :func:`summarize` turns them into the two lists that matter: where the time
is spent (self) and which calls it is spent under (inclusive).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, raw: Path) -> subprocess.Popen[bytes] | None:
    binary = py_spy()
    if binary is None:
        return None
    raw.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "250",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(raw),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int = 25) -> str:
    """Top functions by self and by inclusive samples, as text."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "(no samples)\n"
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    # "func (path/to/site-packages/pkg/mod.py:12)" -> "func (pkg/mod.py:12)"
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", "src/", "python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where}" if where else name

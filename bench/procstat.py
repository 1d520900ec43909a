"""Process accounting from /proc: CPU time and RSS of a process and all its descendants.

Server CPU per message is ``(utime + stime)`` of the server's whole process tree, read before and
after the measured window. Children that exited and were reaped in between moved their time into
the parent's ``cutime``/``cstime``, so those are counted too (once: a live child is counted on its
own, a reaped one only through its parent).
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads), [] when it is gone."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        out.extend(int(x) for x in text.split())
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant still alive."""
    seen: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        stack.extend(children(current))
    return seen


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after the last ")" is numeric.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, own + reaped children) of one process; 0.0 when gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of several process trees (e.g. two gateway nodes and Redis)."""
    return sum(cpu_seconds(p) for root in pids for p in tree(root))


def busy_seconds(cores: tuple[int, ...] = (0, 1)) -> float:
    """CPU seconds spent busy (not idle, not iowait) on ``cores`` since boot, by anything."""
    total = 0
    wanted = {f"cpu{c}" for c in cores}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            values = [int(v) for v in rest.split()]
            total += sum(values[:8]) - values[3] - values[4]
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return 0
    return int(text.split()[1]) * PAGE_SIZE


def tree_rss_bytes(pids: list[int]) -> int:
    """Resident memory of several process trees, summed (shared pages count once per process)."""
    return sum(rss_bytes(p) for root in pids for p in tree(root))


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns the new limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin(core: int) -> bool:
    """Pin the calling process (and what it starts later) to one core, when it exists."""
    if core not in os.sched_getaffinity(0) and core >= (os.cpu_count() or 1):
        return False
    try:
        os.sched_setaffinity(0, {core})
    except OSError:
        return False
    return True

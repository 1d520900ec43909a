"""What a handshake costs a server outside its user-space instructions: CPU split, context
switches and system calls per handshake.

    python -m bench.syscalls hubbub hubbub-async aiohttp   # /proc: user/sys CPU, switches
    python -m bench.syscalls hubbub aiohttp --strace       # system calls by name (strace -c)

The cycle is bench.instructions' ``--handshakes`` one (10 at a time, each closed by the client
right after the 101), the server pinned to core 0 and this process to core 1. After 300
handshakes of warm-up, N more (default 3000) are measured:

- without ``--strace``: the server's threads' utime/stime (/proc/<pid>/task/*/stat, in clock
  ticks: repeat and compare side-by-side runs, the machine's other load moves them) and their
  voluntary/involuntary context switches (/proc/<pid>/task/*/status), each per handshake;
- with ``--strace``: ``strace -f -c`` attached for the N handshakes, each system call's count per
  handshake. strace stops the server at every system call, which serialises its threads: counts
  of futex (GIL and handler-thread handoffs) depend on timing and are larger than without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import servers
from bench.instructions import SERVER_NAMES, _command, _handshakes, _wait_listening
from bench.procstat import raise_nofile

_STRACE_ROW = re.compile(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$")


def thread_counters(pid: int) -> tuple[int, int, int, int]:
    """utime and stime (clock ticks), voluntary and involuntary context switches, summed over
    the threads of ``pid`` alive now."""
    utime = stime = voluntary = involuntary = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        utime += int(fields[11])
        stime += int(fields[12])
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key == "voluntary_ctxt_switches":
                voluntary += int(value)
            elif key == "nonvoluntary_ctxt_switches":
                involuntary += int(value)
    return utime, stime, voluntary, involuntary


def strace_counts(summary: str) -> dict[str, int]:
    """System call name → calls, from ``strace -c``'s summary table."""
    counts: dict[str, int] = {}
    for line in summary.splitlines():
        match = _STRACE_ROW.match(line)
        if match and match.group(2) != "total":
            counts[match.group(2)] = int(match.group(1))
    return counts


def measure(name: str, n: int, *, strace: bool) -> str:
    """One server's line (or table) per handshake, over ``n`` handshakes."""
    raise_nofile()
    port, mgmt = servers.free_ports(2)
    work = Path(tempfile.mkdtemp(prefix="hubbub-syscalls-"))
    command, url = _command(name, port, mgmt, work)
    with (work / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            ["taskset", "-c", "0", *command],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        _wait_listening(port, proc, 60)
        os.sched_setaffinity(0, {1})
        asyncio.run(_handshakes(url, 300))
        if not strace:
            before = thread_counters(proc.pid)
            asyncio.run(_handshakes(url, n))
            after = thread_counters(proc.pid)
            user, system, voluntary, involuntary = (
                b - a for a, b in zip(before, after, strict=True)
            )
            tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
            return (
                f"{name:13s} user {user * tick_us / n:6.1f} µs  sys {system * tick_us / n:5.1f} µs"
                f"  switches {voluntary / n:.2f} voluntary, {involuntary / n:.2f} involuntary"
                " per handshake"
            )
        out = work / "strace.txt"
        tracer = subprocess.Popen(
            ["strace", "-f", "-c", "-o", str(out), "-p", str(proc.pid)], stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)  # attached to every thread before the first handshake
        asyncio.run(_handshakes(url, n))
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
        counts = strace_counts(out.read_text())
        rows = [f"{name}: system calls per handshake ({n} handshakes, strace -f -c)"]
        rows += [f"  {call:16s} {calls / n:7.3f}" for call, calls in counts.items()]
        rows.append(f"  {'total':16s} {sum(counts.values()) / n:7.3f}")
        return "\n".join(rows)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.syscalls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("servers", nargs="+", choices=SERVER_NAMES)
    parser.add_argument("-n", type=int, default=3000, help="handshakes measured (default 3000)")
    parser.add_argument("--strace", action="store_true", help="system calls by name (strace -c)")
    args = parser.parse_args(argv)
    if args.strace and shutil.which("strace") is None:
        parser.error("--strace needs strace installed")
    if shutil.which("taskset") is None:
        parser.error("needs taskset (util-linux) to pin the server")
    for name in args.servers:
        print(measure(name, args.n, strace=args.strace), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

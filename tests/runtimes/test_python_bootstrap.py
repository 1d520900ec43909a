"""src/hubbub/runtimes/python_bootstrap.py's TraceEnv: ``_X_AMZN_TRACE_ID`` per invocation
without a setenv per invocation, which glibc never frees. Each case runs in a fresh Python (it
changes the process environment)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hubbub.runtimes

RUNTIMES = Path(hubbub.runtimes.__file__).parent

GROWTH = """
import os, sys
sys.path.insert(0, sys.argv[1])
from python_bootstrap import TraceEnv
mode, n = sys.argv[2], int(sys.argv[3])
trace = TraceEnv()
set_ = trace.set if mode == "trace_env" else (lambda v: os.environ.__setitem__(trace.NAME, v))
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
def run(start, count):
    for i in range(start, start + count):
        set_(f"Root=1-{i:08x}-{i * 7:024x};Parent={i * 3:016x};Sampled=0")
run(0, 1000)
before = rss()
run(1000, n)
print(rss() - before)
"""


def _python(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(RUNTIMES), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_distinct_trace_ids_do_not_grow_the_process() -> None:
    leaked = int(_python(GROWTH, "os.environ", "200000"))  # what the bootstrap did before
    kept = int(_python(GROWTH, "trace_env", "200000"))
    assert leaked > 20_000  # ~140 bytes per id, never freed
    assert kept < 2_000


SEMANTICS = """
import ctypes, json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from python_bootstrap import TraceEnv
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
name = TraceEnv.NAME
def seen():
    native = libc.getenv(name.encode())
    child = subprocess.run(["sh", "-c", 'printf %s "${_X_AMZN_TRACE_ID-unset}"'],
                           capture_output=True, text=True).stdout
    return [os.environ.get(name), native.decode() if native else None, child]
trace = TraceEnv()
out = {}
trace.set("Root=1-a")
out["set"] = seen()
trace.set("Root=1-b")
out["again"] = seen()
os.environ[name] = "the handler's own"
out["handler"] = seen()
trace.set("Root=1-c")
out["after_handler"] = seen()
trace.set(None)
out["cleared"] = seen()
trace.set("Root=1-d")
out["back"] = seen()
trace.set("x" * 300)
out["long"] = [len(v or "") for v in seen()]
print(json.dumps(out))
"""


def test_python_code_native_getenv_and_child_processes_all_see_it() -> None:
    out = json.loads(_python(SEMANTICS))
    assert out["set"] == ["Root=1-a"] * 3
    assert out["again"] == ["Root=1-b"] * 3
    assert out["handler"] == ["the handler's own"] * 3
    assert out["after_handler"] == ["Root=1-c"] * 3
    assert out["cleared"] == [None, None, "unset"]
    assert out["back"] == ["Root=1-d"] * 3
    assert out["long"] == [300] * 3  # longer than the buffer: os.environ as before

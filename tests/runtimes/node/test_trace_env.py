"""process.env._X_AMZN_TRACE_ID in hubbub's Node.js bootstrap (src/hubbub/runtimes/node/
trace_env.js), with the real ``node``: a fresh trace id per invocation without a setenv per
invocation, which glibc never frees."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import hubbub.runtimes

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

MODULE = Path(hubbub.runtimes.__file__).parent / "node" / "trace_env.js"


def _node(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        ["node", "--expose-gc", "-e", script, str(MODULE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# RSS growth (KB) after n, then after 4n, distinct trace ids, each the size of hubbub's.
GROWTH = """
const mode = process.argv[3];
const n = Number(process.argv[2]);
const set = mode === "setenv"
  ? (value) => { process.env._X_AMZN_TRACE_ID = value; }
  : require(process.argv[1]).install();
const id = (i) => `Root=1-${i.toString(16).padStart(8, "0")}-0123456789abcdef01234567;`
  + "Parent=0123456789abcdef;Sampled=0";
const rss = () => { gc(); return process.memoryUsage().rss / 1024; };
let i = 0;
const run = (count) => { for (const end = i + count; i < end; i++) set(id(i)); };
run(1000);
const start = rss();
run(n);
const first = rss() - start;
run(3 * n);
console.log(JSON.stringify({ first, last: rss() - start - first }));
"""


def test_distinct_trace_ids_do_not_grow_the_process() -> None:
    n = "100000"
    # What the bootstrap did before: setenv per invocation, ~140 bytes each, never freed.
    leaked = _node(GROWTH, n, "setenv")
    kept = _node(GROWTH, n, "proxy")
    assert float(leaked["last"]) > 30_000  # 300,000 more ids: over 30 MB
    assert float(kept["last"]) < 4_000  # the same ids: V8's heap settles, nothing accumulates


SEMANTICS = """
const { execFileSync } = require("child_process");
const set = require(process.argv[1]).install();
const out = {};
const child = () => execFileSync("sh", ["-c", 'printf %s "${_X_AMZN_TRACE_ID-unset}"']).toString();
out.inherited = process.env._X_AMZN_TRACE_ID;
set("Root=1-a");
out.read = process.env._X_AMZN_TRACE_ID;
out.has = "_X_AMZN_TRACE_ID" in process.env;
out.listed = Object.keys(process.env).filter((k) => k === "_X_AMZN_TRACE_ID").length;
out.copied = { ...process.env }._X_AMZN_TRACE_ID;
out.child = child();
process.env._X_AMZN_TRACE_ID = 42;  // a handler's own write: stored as a string, as env does
out.written = typeof process.env._X_AMZN_TRACE_ID + ":" + process.env._X_AMZN_TRACE_ID;
set(undefined);
out.cleared = [process.env._X_AMZN_TRACE_ID, "_X_AMZN_TRACE_ID" in process.env,
  Object.keys(process.env).includes("_X_AMZN_TRACE_ID"), child()];
process.env.HUBBUB_OTHER = 7;  // every other variable is the real environment's
out.other = [process.env.HUBBUB_OTHER, execFileSync("printenv", ["HUBBUB_OTHER"]).toString()];
delete process.env.HUBBUB_OTHER;
out.otherGone = "HUBBUB_OTHER" in process.env;
console.log(JSON.stringify(out));
"""


def test_handlers_and_child_processes_see_the_trace_id_as_an_environment_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "_X_AMZN_TRACE_ID": "Root=from-the-parent"}
    node = shutil.which("node")
    assert node is not None
    env["PATH"] = f"{Path(node).parent}:{env['PATH']}"
    out = _node(SEMANTICS, env=env)
    assert out["inherited"] == "Root=from-the-parent"
    assert out["read"] == "Root=1-a"
    assert out["has"] is True
    assert out["listed"] == 1
    assert out["copied"] == "Root=1-a"
    assert out["child"] == "Root=1-a"
    assert out["written"] == "string:42"
    assert out["cleared"] == [None, False, False, "unset"]
    assert out["other"] == ["7", "7\n"]
    assert out["otherGone"] is False

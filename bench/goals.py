"""The targets hubbub is measured against, as ratios inside one run (median over runs).

Two rounds of goals: the second round's (issue 20) come first; the first round's stay in the table
so that none of them regresses unnoticed. Where the load generator saturates its own core (the
fan-out and handshake rows run it at 94-99 %), throughput ratios are capped by the generator, not
the server: those goals are stated in server CPU per delivery or per handshake instead
(the ``cpu_ratio`` and ``cpu_at_most`` kinds, lower is better).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Goal:
    text: str
    scenario: str
    hubbub: str  # row key of hubbub's row
    peer: str | None  # row key of the peer (None: an absolute target on hubbub's row)
    target: float
    kind: str  # "ratio" (hubbub ÷ peer ≥ target), "cpu_ratio" (hubbub's server CPU per
    # message ÷ the peer's ≤ target), "at_most" / "at_least" (hubbub's value), "cpu_at_most"
    # (hubbub's server µs per message ≤ target), "zero_errors", "held" (connections held ≥
    # target), "info" (a ratio without a target)
    peer_scenario: str | None = None  # the peer's row is in another scenario (default: same)
    # A peer that delivered nothing counts as an infinite ratio (the boto3 path's collapse is
    # the result there); elsewhere it means the peer did not run properly: no value.
    zero_peer_counts: bool = False
    round: int = 2  # 1: a first-round goal, kept so that it does not regress


# Kinds measured in server CPU per message (µs), where lower is better.
CPU_KINDS = ("cpu_ratio", "cpu_at_most")

GOALS = [
    # -- round 2 (issue 20) ------------------------------------------------------------------
    Goal("routed (async handler) ÷ bare aiohttp echo", "routed", "hubbub", "aiohttp", 0.8, "ratio"),
    Goal(
        "routed to $default (chat JSON, no action key) ÷ bare aiohttp echo",
        "routed-default",
        "hubbub",
        "aiohttp",
        0.8,
        "ratio",
    ),
    Goal(
        "fan-out 1k: server CPU per delivery, hubbub room ÷ bare picows",
        "fanout",
        "hubbub",
        "picows",
        1.05,
        "cpu_ratio",
    ),
    Goal(
        "fan-out 10k: server CPU per delivery, hubbub room ÷ bare picows",
        "fanout-10k",
        "hubbub",
        "picows",
        1.05,
        "cpu_ratio",
    ),
    Goal("RSS per idle connection (KB) at 10k", "idle", "hubbub", None, 12.0, "at_most"),
    Goal(
        "seed pattern (def + boto3), 100 conns: server CPU µs per message",
        "routed-boto3",
        "hubbub",
        None,
        60.0,
        "cpu_at_most",
    ),
    Goal(
        "seed pattern (def + boto3), 100 conns: errors",
        "routed-boto3",
        "hubbub",
        None,
        0,
        "zero_errors",
    ),
    Goal(
        "handshakes with Python $connect: server CPU per handshake ÷ bare aiohttp",
        "connect",
        "hubbub",
        "aiohttp",
        1.2,
        "cpu_ratio",
    ),
    Goal(
        "cross-node fan-out (2 nodes + Redis) ÷ one node",
        "cross-node",
        "hubbub-cluster",
        "hubbub",
        0.9,
        "ratio",
    ),
    Goal(
        "Node.js echo (route response): hubbub's Runtime API ÷ serverless-offline, same file",
        "node-echo",
        "hubbub-node",
        "sls-node",
        3.0,
        "ratio",
    ),
    Goal(
        "Node.js postToConnection (SDK v3): hubbub's Runtime API ÷ serverless-offline",
        "node-post",
        "hubbub-node",
        "sls-node",
        3.0,
        "ratio",
    ),
    Goal(
        'Python def echo: isolation = "process" ÷ in-process',
        "python-isolation",
        "hubbub-python-process",
        "hubbub-python",
        0,
        "info",
    ),
    # -- round 1: kept so that none regresses ------------------------------------------------
    Goal(
        "fan-out 1k: hubbub room ÷ bare picows broadcast",
        "fanout",
        "hubbub",
        "picows",
        0.9,
        "ratio",
        round=1,
    ),
    Goal("fan-out 1k: hubbub room ÷ Node ws", "fanout", "hubbub", "node", 1.0, "ratio", round=1),
    # Retired (issue 20): no server here reaches 8x (bare picows itself is 6.7 to 6.9x).
    Goal(
        "fan-out 1k: hubbub room ÷ python-socketio (8× retired)",
        "fanout",
        "hubbub",
        "socketio",
        0,
        "info",
        round=1,
    ),
    Goal(
        "routed (async handler) ÷ serverless-offline",
        "routed",
        "hubbub",
        "sls",
        10.0,
        "ratio",
        round=1,
    ),
    Goal(
        "seed pattern (def + boto3) ÷ serverless-offline boto3",
        "routed-boto3",
        "hubbub",
        "sls",
        30.0,
        "ratio",
        zero_peer_counts=True,
        round=1,
    ),
    Goal(
        "handshakes with Python $connect ÷ bare aiohttp (conn/s)",
        "connect",
        "hubbub",
        "aiohttp",
        0.7,
        "ratio",
        round=1,
    ),
    Goal(
        "handshakes with Python $connect ÷ serverless-offline",
        "connect",
        "hubbub",
        "sls",
        2.0,
        "ratio",
        round=1,
    ),
    Goal("RSS per idle connection (KB) at 10k", "idle", "hubbub", None, 16.0, "at_most", round=1),
    Goal(
        "idle connections held on one machine (hubbub serve --workers)",
        "idle-max",
        "hubbub-workers",
        None,
        100_000,
        "held",
        round=1,
    ),
]


def _find(rows: list[Row], scenario: str, key: str) -> Row | None:
    for row in rows:
        if row["scenario"] == scenario and row["key"] == key:
            return row
    return None


def _ok(row: Row | None) -> bool:
    return row is not None and row["status"] in ("ok", "partial") and row.get("rate") is not None


def value_in_run(goal: Goal, rows: list[Row]) -> float | None:
    """The goal's measured value in one run, None when a side is missing."""
    mine = _find(rows, goal.scenario, goal.hubbub)
    if not _ok(mine):
        return None
    assert mine is not None
    if goal.kind in ("ratio", "info"):
        peer = _find(rows, goal.peer_scenario or goal.scenario, goal.peer or "")
        if not _ok(peer) or not peer:
            return None
        if not peer["rate"]:  # the peer delivered nothing at all (e.g. it crashed)
            return math.inf if mine["rate"] and goal.zero_peer_counts else None
        return float(mine["rate"]) / float(peer["rate"])
    if goal.kind == "cpu_ratio":
        peer = _find(rows, goal.peer_scenario or goal.scenario, goal.peer or "")
        if not _ok(peer) or not peer:
            return None
        mine_us, peer_us = mine.get("server_us_per_msg"), peer.get("server_us_per_msg")
        if not mine_us or not peer_us:
            return None
        return float(mine_us) / float(peer_us)
    if goal.kind == "cpu_at_most":
        us = mine.get("server_us_per_msg")
        return None if us is None else float(us)
    if goal.kind == "zero_errors":
        return float(mine.get("errors") or 0)
    if goal.kind == "held":
        return float(mine.get("detail", {}).get("connections", 0))
    return float(mine["rate"])


def passed(goal: Goal, value: float) -> bool | None:
    if goal.kind == "info":
        return None
    if goal.kind in ("ratio", "at_least", "held"):
        return value >= goal.target
    if goal.kind == "zero_errors":
        return value == 0
    return value <= goal.target  # at_most, cpu_at_most, cpu_ratio


def evaluate(runs: list[list[Row]]) -> list[dict[str, Any]]:
    """Per goal: the value in each run, their median, and whether it meets the target."""
    out = []
    for goal in GOALS:
        values = [value_in_run(goal, rows) for rows in runs]
        present = [v for v in values if v is not None]
        median = statistics.median(present) if present else None
        out.append(
            {
                "goal": goal.text,
                "scenario": goal.scenario,
                "peer": goal.peer,
                "kind": goal.kind,
                "target": goal.target,
                "round": goal.round,
                "per_run": values,
                "median": median,
                "pass": None if median is None else passed(goal, median),
            }
        )
    return out


def summarize(runs: list[list[Row]]) -> list[Row]:
    """One row per (scenario, key): medians over runs, plus "hubbub ÷ this" from per-run ratios."""
    order: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], list[Row]] = {}
    for rows in runs:
        for row in rows:
            k = (row["scenario"], row["key"])
            if k not in by_key:
                order.append(k)
                by_key[k] = []
            by_key[k].append(row)
    summary = []
    for k in order:
        rows = by_key[k]
        ok = [r for r in rows if _ok(r)]
        first = ok[0] if ok else rows[0]
        merged: Row = {
            key: first.get(key) for key in ("scenario", "key", "server", "label", "unit")
        }
        merged["status"] = first["status"]
        merged["reason"] = next((r["reason"] for r in rows if r.get("reason")), "")
        merged["runs"] = len(ok)
        merged["version"] = first.get("version", "")
        for field in (
            "rate",
            "server_us_per_msg",
            "server_cpu_pct",
            "gen_cpu_pct",
            "gen_us_per_msg",
            "other_cpu_pct",
        ):
            merged[field] = _median([r.get(field) for r in ok])
        for field in ("p50_ms", "p99_ms", "p999_ms"):
            merged[field] = _median([(r.get("latency") or {}).get(field) for r in ok])
        merged["errors"] = max((r.get("errors") or 0 for r in ok), default=None)
        merged["detail"] = first.get("detail", {})
        # hubbub ÷ this row, per run, then the median (hubbub's own first row is the reference).
        ratios = []
        for run_rows in runs:
            ref = next(
                (r for r in run_rows if r["scenario"] == k[0] and r["key"].startswith("hubbub")),
                None,
            )
            found = _find(run_rows, *k)
            if _ok(ref) and _ok(found) and found and ref:
                ratios.append(ref["rate"] / found["rate"] if found["rate"] else math.inf)
        merged["hubbub_ratio"] = statistics.median(ratios) if ratios else None
        summary.append(merged)
    return summary


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None

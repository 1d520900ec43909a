"""Lambda runtime rows: functions hubbub runs outside its own process, through the Lambda Runtime
API, against the same function under serverless-offline; and Python in-process against Python
process-isolated.

- ``node-echo``: bench/functions/node/handler.js ``echo`` on a two-way route (route responses on:
  ``return {statusCode: 200, body: event.body}``). hubbub (``hubbub-runtimes``: Node.js
  execution environments through the Runtime API, bench/hubbub_app/hubbub-runtimes.toml) against
  serverless-offline running the same file (``sls-node``, bench/peers/sls_node).
- ``node-post``: the same file's ``post``: the JavaScript SDK v3's ``PostToConnectionCommand``
  back to the sender (hubbub: its management API over loopback HTTP; serverless-offline: its
  own ``/@connections`` endpoint). The reply frame is that post.
- ``python-isolation``: one plain ``def`` echo (bench/functions/python/handler.py), in hubbub's
  process and with ``isolation = "process"``; two hubbub instances, one per row.

100 connections (``--connections``), closed loop, measured in alternating slices as ``routed``
(``--no-interleave``: one server after the other). Server CPU is each server's whole process
tree: hubbub with its execution environments, serverless-offline with its worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.runner import (
    Row,
    Settings,
    base_row,
    echo_spec,
    fill,
    interleaved,
    run_loadgen,
    with_server,
)
from bench.servers import Running

# scenario -> the route (the generator's "action") and its rows: (row key, server, label)
PLANS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "node-echo": (
        "echo",
        [
            ("hubbub-node", "hubbub-runtimes", "hubbub (Node.js, Runtime API)"),
            ("sls-node", "sls-node", "serverless-offline (Node.js)"),
        ],
    ),
    "node-post": (
        "post",
        [
            ("hubbub-node", "hubbub-runtimes", "hubbub (Node.js, Runtime API)"),
            ("sls-node", "sls-node", "serverless-offline (Node.js)"),
        ],
    ),
    "python-isolation": (
        "",  # per row: below
        [
            ("hubbub-python", "hubbub-python", "hubbub, Python in-process"),
            ("hubbub-python-process", "hubbub-python", 'hubbub, Python isolation = "process"'),
        ],
    ),
}
ACTIONS = {"hubbub-python": "pyecho", "hubbub-python-process": "pyecho_process"}


def measure(settings: Settings, scenario: str) -> list[Row]:
    action, rows = PLANS[scenario]
    plan = [(key, server) for key, server, _ in rows if settings.wants(key, scenario)]
    labels = {key: label for key, _, label in rows}

    def target(key: str, running: Running, row: Row) -> dict[str, Any]:
        # A reply that has not come in 10 s counts as an error and the connection moves on.
        return echo_spec(running, settings, action=ACTIONS.get(key, action), msg_timeout=10.0)

    if settings.interleave:
        return interleaved(
            scenario,
            "msg/s",
            plan,
            settings,
            loadgen_scenario="echo-interleaved",
            target=target,
            labels=labels,
        )
    out = []
    for key, server in plan:
        row = base_row(scenario, key, server, "msg/s")
        row["label"] = labels[key]
        settings.progress(f"{scenario} · {row['label']}")

        def body(running: Running, row: Row = row, key: str = key) -> None:
            spec = target(key, running, row)
            fill(row, run_loadgen(spec, settings, f"{scenario}-{key}"))

        out.append(with_server(row, server, settings, body))
    return out


def node_echo(settings: Settings) -> list[Row]:
    return measure(settings, "node-echo")


def node_post(settings: Settings) -> list[Row]:
    return measure(settings, "node-post")


def python_isolation(settings: Settings) -> list[Row]:
    return measure(settings, "python-isolation")


SCENARIOS: dict[str, Callable[[Settings], list[Row]]] = {
    "node-echo": node_echo,
    "node-post": node_post,
    "python-isolation": python_isolation,
}


def planned_steps(names: list[str], settings: Settings) -> int:
    """How many rows these scenarios will produce (for the progress counter)."""
    return sum(
        1
        for name in names
        if name in PLANS
        for key, _, _ in PLANS[name][1]
        if settings.wants(key, name)
    )

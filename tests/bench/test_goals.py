"""The goal table: server-CPU goals (lower is better), the retired socketio goal, both rounds."""

from __future__ import annotations

from typing import Any

import pytest

from bench import goals, report


def _row(scenario: str, key: str, rate: float, us: float, errors: int = 0) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "key": key,
        "status": "ok",
        "rate": rate,
        "server_us_per_msg": us,
        "errors": errors,
    }


def _by_text(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {g["goal"]: g for g in goals.evaluate(runs)}


def test_cpu_goals_compare_server_cpu_per_message_lower_is_better() -> None:
    run = [
        _row("fanout", "hubbub", 230e3, 4.3),
        _row("fanout", "picows", 235e3, 4.2),
        _row("fanout-10k", "hubbub", 140e3, 6.5),
        _row("fanout-10k", "picows", 160e3, 5.8),
        _row("connect", "hubbub", 5e3, 129.0),
        _row("connect", "aiohttp", 5e3, 88.0),
        _row("routed-boto3", "hubbub", 10e3, 59.0),
    ]
    found = _by_text([run])
    one_k = found["fan-out 1k: server CPU per delivery, hubbub room ÷ bare picows"]
    assert one_k["median"] == pytest.approx(4.3 / 4.2)
    assert one_k["pass"] is True
    ten_k = found["fan-out 10k: server CPU per delivery, hubbub room ÷ bare picows"]
    assert ten_k["median"] == pytest.approx(6.5 / 5.8)
    assert ten_k["pass"] is False
    shakes = found["handshakes with Python $connect: server CPU per handshake ÷ bare aiohttp"]
    assert shakes["median"] == pytest.approx(129 / 88)
    assert shakes["pass"] is False
    seed = found["seed pattern (def + boto3), 100 conns: server CPU µs per message"]
    assert seed["median"] == pytest.approx(59.0)
    assert seed["pass"] is True


def test_a_cpu_goal_without_the_peers_cpu_has_no_value() -> None:
    run = [_row("fanout", "hubbub", 230e3, 4.3), _row("fanout", "picows", 235e3, 0.0)]
    one_k = _by_text([run])["fan-out 1k: server CPU per delivery, hubbub room ÷ bare picows"]
    assert one_k["median"] is None
    assert one_k["pass"] is None


def test_cross_node_is_compared_with_the_one_node_row_measured_beside_it() -> None:
    # The cross-node scenario interleaves the cluster with one node (bench.runner.cross_node):
    # the ratio takes that row, not the fanout scenario's, measured minutes apart.
    run = [
        _row("fanout", "hubbub", 200e3, 5.0),
        _row("cross-node", "hubbub-cluster", 150e3, 6.0),
        _row("cross-node", "hubbub", 160e3, 5.5),
    ]
    cross = _by_text([run])["cross-node fan-out (2 nodes + Redis) ÷ one node"]
    assert cross["median"] == pytest.approx(150 / 160)
    assert cross["pass"] is True


def test_round_two_targets_and_the_retired_socketio_goal() -> None:
    by_text = {g.text: g for g in goals.GOALS}
    assert by_text["routed (async handler) ÷ bare aiohttp echo"].target == 0.8
    idle = [g for g in goals.GOALS if g.scenario == "idle"]
    assert sorted((g.round, g.target) for g in idle) == [(1, 16.0), (2, 12.0)]
    cross = by_text["cross-node fan-out (2 nodes + Redis) ÷ one node"]
    assert (cross.kind, cross.target) == ("ratio", 0.9)
    socketio = [g for g in goals.GOALS if g.peer == "socketio"]
    assert [g.kind for g in socketio] == ["info"]  # reported, no longer a target


def test_the_table_says_which_round_and_that_server_cpu_is_the_headline() -> None:
    run = [_row("fanout", "hubbub", 230e3, 4.3), _row("fanout", "picows", 235e3, 4.2)]
    table = report.goals_table(goals.evaluate([run]))
    assert (
        "| 2 | fan-out 1k: server CPU per delivery, hubbub room ÷ bare picows "
        "| ≤ 1.05× (server CPU) | 1.02× |" in table
    )
    assert "| 1 | fan-out 1k: hubbub room ÷ bare picows broadcast | ≥ 0.9× | 0.98× |" in table
    assert "headline there is **server CPU per delivery or per handshake**" in table

"""The fuzzer's CI sample: bench/fuzz itself, a fixed seed, 300 cases per target.

Each target runs against its own in-process gateway and must leave every invariant intact (the
gateway still echoes, hub/registry/tasks back to baseline, no traceback logged) with no finding
other than the known bugs pinned in test_fuzz_bugs.py. The long mode is
``python -m bench.fuzz --cases 100000``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.fuzz.config import run_config
from bench.fuzz.env import NETWORK_TARGETS, Env, FuzzOptions
from bench.fuzz.frames import gen_frames
from bench.fuzz.handshake import gen_handshake
from bench.fuzz.report import Report
from bench.fuzz.run import case_rng, plan, run_fuzz
from tests.helpers import TIME_SCALE

SEED = 20240601
CASES = 300


_REPORTS: dict[str, Report] = {}


async def _sample(target: str) -> Report:
    """Run (once per session) the sample of one target; later tests read the same report."""
    if target in _REPORTS:
        return _REPORTS[target]
    options = FuzzOptions(
        cases=CASES,
        seed=SEED,
        targets=[target],
        concurrency=32,
        check_every=CASES // 2,  # one check mid-way, one at the end
        timeout=5.0 * TIME_SCALE,  # generous: a loaded CI machine must not look like a bug
        handshake_timeout=1.0 * TIME_SCALE,
    )
    report = await run_fuzz(options)
    assert report.checks == 2
    assert sum(report.per_target[target].values()) == CASES
    _REPORTS[target] = report
    return report


def _explain(report: Report) -> str:
    return report.summary()


@pytest.mark.parametrize("target", NETWORK_TARGETS)
async def test_fuzz_sample_keeps_the_gateway_healthy(target: str) -> None:
    report = await _sample(target)
    assert report.unknown_failures() == [], _explain(report)
    assert report.unknown_findings() == [], _explain(report)


async def test_handshake_fuzz_reaches_both_answers_and_refusals() -> None:
    # Guards the fuzzer against degenerating into cases the server never even parses.
    outcomes = (await _sample("handshake")).per_target["handshake"]
    assert outcomes["http-101"] > 0
    assert outcomes["http-400"] > 0


async def test_frame_fuzz_draws_every_protocol_close_code() -> None:
    outcomes = (await _sample("frames")).per_target["frames"]
    for code in (1002, 1003, 1007, 1009):
        assert outcomes[f"close-{code}"] > 0, dict(outcomes)


def test_config_fuzz_only_ever_raises_config_error(tmp_path: Path) -> None:
    # Pure: no gateway; the same generator as the long mode.
    env = Env("127.0.0.1", 0, None, "dev", 1.0, 1.0, config_dir=tmp_path)
    results = [run_config(env, case_rng(SEED, "config", i)) for i in range(CASES)]
    crashes = [f for _, f in results if f and f.startswith("config-crash")]
    assert crashes == []
    assert {outcome for outcome, _ in results} == {"config-error", "accepted"}


def test_cases_are_a_function_of_seed_target_and_index() -> None:
    for target in ("handshake", "frames"):
        first = [repr(_generate(target, i)) for i in range(50)]
        again = [repr(_generate(target, i)) for i in range(50)]
        assert first == again
    assert repr(_generate("frames", 1)) != repr(_generate("frames", 2))


def _generate(target: str, index: int) -> object:
    rng = case_rng(SEED, target, index)
    if target == "handshake":
        return gen_handshake(rng, b"h:1", "dev")
    return gen_frames(rng)


def test_plan_deals_cases_round_robin() -> None:
    options = FuzzOptions(cases=7, targets=["a", "b", "c"])
    assert plan(options) == [
        ("a", 0),
        ("b", 0),
        ("c", 0),
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("a", 2),
    ]


def test_case_rng_does_not_depend_on_global_random_state() -> None:
    random.seed(1)
    first = case_rng(SEED, "frames", 3).random()
    random.seed(2)
    assert case_rng(SEED, "frames", 3).random() == first

"""The reconnect policy as pure functions: full-jitter delays, give-up, the close-code table."""

from __future__ import annotations

import random
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.client.backoff import (
    CLOSE_RULES,
    RECONNECT,
    STATUS_RULES,
    STOP,
    Backoff,
    Rule,
    close_action,
    close_meaning,
    status_action,
)

DOCS = Path(__file__).parents[2] / "docs" / "clients.md"

bases = st.floats(min_value=1e-3, max_value=60.0, allow_nan=False)
caps = st.floats(min_value=1e-3, max_value=3600.0, allow_nan=False)
retries = st.integers(min_value=0, max_value=10_000)


def policy(base: float, cap: float) -> Backoff:
    return Backoff(base=base, cap=max(cap, base))


# -- delays ------------------------------------------------------------------------------------
@given(bases, caps, retries, st.randoms(use_true_random=False))
def test_delay_is_always_within_zero_and_the_cap(
    base: float, cap: float, retry: int, rng: random.Random
) -> None:
    backoff = policy(base, cap)
    delay = backoff.delay(retry, rng.uniform)
    assert 0.0 <= delay <= backoff.ceiling(retry) <= backoff.cap


@given(bases, caps, retries)
def test_ceiling_is_base_times_two_to_the_retry_capped(base: float, cap: float, retry: int) -> None:
    backoff = policy(base, cap)
    expected = backoff.cap if retry > 64 else min(backoff.cap, base * 2.0**retry)
    assert backoff.ceiling(retry) == pytest.approx(expected)


@given(bases, caps, retries)
def test_ceiling_never_decreases(base: float, cap: float, retry: int) -> None:
    backoff = policy(base, cap)
    assert backoff.ceiling(retry) <= backoff.ceiling(retry + 1)


@given(bases, caps, retries)
def test_delay_uses_the_whole_interval(base: float, cap: float, retry: int) -> None:
    # Full jitter: the extremes of the random source map onto 0 and the ceiling exactly.
    backoff = policy(base, cap)
    assert backoff.delay(retry, lambda low, high: low) == 0.0
    assert backoff.delay(retry, lambda low, high: high) == backoff.ceiling(retry)


@given(bases, caps, retries, st.floats(min_value=0, max_value=1e4), st.randoms())
def test_retry_after_moves_the_window_but_never_past_the_cap(
    base: float, cap: float, retry: int, at_least: float, rng: random.Random
) -> None:
    backoff = policy(base, cap)
    delay = backoff.delay(retry, rng.uniform, at_least=at_least)
    assert min(at_least, backoff.cap) <= delay <= backoff.cap
    assert delay <= min(at_least, backoff.cap) + backoff.ceiling(retry)


def test_delay_clamps_a_source_that_overshoots() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    assert backoff.delay(2, lambda low, high: high * (1 + 1e-15) + 1) == 4.0
    assert backoff.delay(2, lambda low, high: -1.0) == 0.0


@pytest.mark.parametrize("retry", [0, 3, 10])
def test_delays_are_spread_uniformly_over_the_interval(retry: int) -> None:
    # Seeded, so the test is deterministic; the bounds are loose for 4000 uniform samples.
    rng = random.Random(1234 + retry)
    backoff = Backoff(base=0.5, cap=30.0)
    high = backoff.ceiling(retry)
    samples = [backoff.delay(retry, rng.uniform) for _ in range(4000)]
    assert statistics.fmean(samples) == pytest.approx(high / 2, rel=0.05)
    assert min(samples) < 0.01 * high
    assert max(samples) > 0.99 * high
    below_half = sum(s < high / 2 for s in samples) / len(samples)
    assert 0.45 < below_half < 0.55
    # Storm spreading: no tenth of the interval holds much more than a tenth of the clients.
    deciles = [0] * 10
    for s in samples:
        deciles[min(9, int(10 * s / high))] += 1
    assert max(deciles) < 0.13 * len(samples)


def test_first_delays_double_until_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.ceiling(r) for r in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert Backoff(base=1.0, cap=30.0).ceiling(10**9) == 30.0


def test_negative_retry_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="retry"):
        Backoff().ceiling(-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 0},
        {"base": -1},
        {"base": float("inf")},
        {"base": 2, "cap": 1},
        {"cap": float("inf")},
        {"max_attempts": 0},
        {"max_elapsed": -1},
        {"stable_after": -1},
    ],
)
def test_invalid_backoff_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


# -- give-up -----------------------------------------------------------------------------------
def test_no_limits_never_give_up() -> None:
    assert not Backoff().exhausted(10**6, 10.0**9)


@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=0, max_value=2000))
def test_max_attempts_gives_up_exactly_at_the_limit(limit: int, attempts: int) -> None:
    assert Backoff(max_attempts=limit).exhausted(attempts, 0.0) == (attempts >= limit)


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=0, max_value=2e6))
def test_max_elapsed_gives_up_once_the_time_is_spent(limit: float, elapsed: float) -> None:
    assert Backoff(max_elapsed=limit).exhausted(1, elapsed) == (elapsed >= limit)


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_clamp_never_waits_past_max_elapsed(delay: float, elapsed: float) -> None:
    backoff = Backoff(max_elapsed=50.0)
    clamped = backoff.clamp(delay, elapsed)
    assert 0.0 <= clamped <= delay
    assert elapsed + clamped <= max(50.0, elapsed) + 1e-9


def test_clamp_without_max_elapsed_keeps_the_delay() -> None:
    assert Backoff().clamp(12.5, 1e9) == 12.5


# -- close codes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1000, STOP),
        (1001, RECONNECT),
        (1002, RECONNECT),
        (1003, STOP),
        (1005, RECONNECT),
        (1006, RECONNECT),
        (1007, STOP),
        (1008, STOP),
        (1009, STOP),
        (1010, STOP),
        (1011, RECONNECT),
        (1012, RECONNECT),
        (1013, RECONNECT),
        (1014, RECONNECT),
        (3000, STOP),
        (3003, STOP),
        (3001, RECONNECT),
        (3999, RECONNECT),
        (4000, STOP),
        (4001, STOP),
        (4999, STOP),
        (2000, RECONNECT),
    ],
)
def test_close_code_policy(code: int, action: str) -> None:
    assert close_action(code) == action


@given(st.integers(min_value=4000, max_value=4999))
def test_every_application_code_is_final(code: int) -> None:
    assert close_action(code) == STOP


@given(st.integers(min_value=0, max_value=65535))
def test_every_code_has_an_action_and_a_meaning(code: int) -> None:
    assert close_action(code) in (RECONNECT, STOP)
    assert close_meaning(code)


def test_overrides_win_over_the_table() -> None:
    assert close_action(1000, {1000: RECONNECT}) == RECONNECT
    assert close_action(1006, {1006: STOP}) == STOP
    assert close_action(1001, {1000: RECONNECT}) == RECONNECT


# -- handshake statuses ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "action"),
    [
        (400, STOP),
        (401, STOP),
        (403, STOP),
        (404, STOP),
        (408, RECONNECT),
        (410, STOP),
        (429, RECONNECT),
        (500, RECONNECT),
        (502, RECONNECT),
        (503, RECONNECT),
        (301, STOP),
    ],
)
def test_handshake_status_policy(status: int, action: str) -> None:
    assert status_action(status) == action


@given(st.integers(min_value=500, max_value=599))
def test_every_server_error_status_reconnects(status: int) -> None:
    assert status_action(status) == RECONNECT


def test_status_overrides_win_over_the_table() -> None:
    assert status_action(403, {403: RECONNECT}) == RECONNECT
    assert status_action(503, {503: STOP}) == STOP


# -- the documented table is the table ---------------------------------------------------------
def _documented(section: str) -> dict[str, str]:
    """``{"1000": "stop", "4000-4999": "stop", ...}`` from a markdown table in docs/clients.md."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(section)
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"\d+(-\d+)?|other", cells[0]):
            rows[cells[0]] = cells[1]
    return rows


def _key(first: int, last: int, catch_all: bool) -> str:
    if catch_all:
        return "other"
    return str(first) if first == last else f"{first}-{last}"


@pytest.mark.parametrize(
    ("section", "rules"),
    [("### Close codes", CLOSE_RULES), ("### Handshake HTTP statuses", STATUS_RULES)],
)
def test_docs_list_every_rule_with_its_action(section: str, rules: tuple[Rule, ...]) -> None:
    documented = _documented(section)
    expected = {_key(r.first, r.last, r is rules[-1]): r.action for r in rules}
    assert documented == expected

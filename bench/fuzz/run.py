"""Running cases: one case from ``(seed, target, index)``, a whole run in batches with the
invariant checks between them, and the replay of one case."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.fuzz.bodies import run_bodies
from bench.fuzz.config import run_config
from bench.fuzz.env import Env, FuzzOptions, Victims, fuzz_environment
from bench.fuzz.frames import run_frames
from bench.fuzz.handshake import run_handshake
from bench.fuzz.invariants import Checker, ErrorRecorder, serve_check
from bench.fuzz.management import run_management
from bench.fuzz.report import CaseResult, Report

RUNNERS: dict[str, Callable[[Env, random.Random], Any]] = {
    "handshake": run_handshake,
    "frames": run_frames,
    "management": run_management,
    "bodies": run_bodies,
}


def case_rng(seed: int, target: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{target}:{index}")


async def run_case(env: Env, seed: int, target: str, index: int) -> CaseResult:
    rng = case_rng(seed, target, index)
    started = time.perf_counter()
    try:
        if target == "config":
            outcome, finding = run_config(env, rng)
        else:
            async with asyncio.timeout(env.timeout * 4 + env.handshake_timeout + 5):
                outcome, finding = await RUNNERS[target](env, rng)
    except TimeoutError:
        outcome, finding = "case-timeout", "case-timeout: the case itself hung"
    except (ConnectionError, OSError) as exc:
        outcome, finding = f"connect-{type(exc).__name__}", None
    except Exception as exc:  # a bug in the fuzzer itself: report it, keep going
        outcome, finding = "fuzzer-error", f"fuzzer-error: {type(exc).__name__}: {exc}"
    return CaseResult(target, index, outcome, finding, time.perf_counter() - started)


def plan(options: FuzzOptions) -> list[tuple[str, int]]:
    """Case i goes to target i mod len(targets); indexes count per target."""
    targets = list(options.targets)
    return [(targets[i % len(targets)], i // len(targets)) for i in range(options.cases)]


async def run_fuzz(options: FuzzOptions) -> Report:
    """Run ``options.cases`` cases and the invariant checks; never raises for a finding."""
    report = Report(seed=options.seed, cases=options.cases)
    recorder = ErrorRecorder()
    recorder.install()
    loop = asyncio.get_running_loop()
    loop_errors: list[str] = []
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(str(ctx.get("message"))))
    started = time.perf_counter()
    try:
        async with fuzz_environment(options) as (env, gw):
            await _fuzz_loop(options, env, gw, report)
    finally:
        loop.set_exception_handler(old_handler)
        recorder.remove()
    report.failures += recorder.describe()
    report.failures += [f"event loop exception handler: {m}" for m in loop_errors]
    report.seconds = time.perf_counter() - started
    return report


async def _fuzz_loop(options: FuzzOptions, env: Env, gw: Any, report: Report) -> None:
    failure = await serve_check(env)
    if failure:
        report.failures.append(f"before fuzzing: {failure}")
        return
    checker = Checker(options, env, gw, report)
    await checker.start()
    cases = plan(options)
    victims = Victims(env)
    semaphore = asyncio.Semaphore(options.concurrency)

    async def one(target: str, index: int) -> CaseResult:
        async with semaphore:
            return await run_case(env, options.seed, target, index)

    step = max(1, options.check_every)
    for start in range(0, len(cases), step):
        batch = cases[start : start + step]
        if "management" in options.targets:
            await victims.open(3)
        for result in await asyncio.gather(*(one(t, i) for t, i in batch)):
            report.add(result)
        await victims.close()
        await checker.check(f"after case {start + len(batch)}")
        if options.progress:
            print(
                f"fuzz: {start + len(batch)}/{len(cases)} cases, {len(report.findings)} "
                f"findings, {len(report.failures)} failures",
                file=sys.stderr,
                flush=True,
            )


async def replay(options: FuzzOptions, target: str, index: int) -> CaseResult:
    """Run one case, for debugging a finding."""
    async with fuzz_environment(options) as (env, _gw):
        victims = Victims(env)
        if target == "management":
            await victims.open(3)
        try:
            return await run_case(env, options.seed, target, index)
        finally:
            await victims.close()

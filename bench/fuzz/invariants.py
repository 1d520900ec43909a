"""The invariants checked between batches: no error logged, a normal client still served, and the
gateway's connections, tasks and indexes back to their baseline once the fuzz sockets close."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from bench.fuzz.env import Env, FuzzOptions
from bench.fuzz.report import Report


def _is_peer_fault(exc: BaseException) -> bool:
    """aiohttp's HTTP parse errors (answered 400) and a peer that went away: not a crash."""
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, HttpProcessingError | ConnectionError | asyncio.CancelledError)


class ErrorRecorder(logging.Handler):
    """Collects ERROR records from the gateway's, aiohttp's and asyncio's loggers, and every
    traceback that is not a peer fault from the logger aiohttp's server protocol writes to.

    hubbub routes aiohttp's "Error handling request" records to ``hubbub.transport.peer`` and
    demotes them to DEBUG (dropping them unless DEBUG is on for ``hubbub.transport``); the
    recorder turns DEBUG on for that logger while it runs, so a crash in a request handler that
    a client triggered cannot hide behind the demotion.
    """

    LOGGERS = ("hubbub", "aiohttp", "asyncio")
    PEER = "hubbub.transport.peer"
    # Loggers the CLI silences; the fuzzer must see their errors.
    QUIET = ("aiohttp.server", "aiohttp.websocket", "aiohttp.web", "aiohttp.access")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        # One line per record, not the record: a kept exc_info keeps every frame of its
        # traceback alive, and thousands of them make the garbage collector stall the loop.
        self.records: list[str] = []
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == self.PEER or record.name.startswith(self.PEER + "."):
            if exc is None or _is_peer_fault(exc):
                return
        elif record.levelno < logging.ERROR:
            return
        text = f" [{type(exc).__name__}: {str(exc)[:200]}]" if exc is not None else ""
        self.records.append(
            f"{record.levelname} log {record.name}: {record.getMessage()[:200]}{text}"
        )

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        for name in (*self.QUIET, "hubbub.transport"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if name == "hubbub.transport":
                logger.setLevel(logging.DEBUG)
            elif logger.getEffectiveLevel() > logging.ERROR:
                logger.setLevel(logging.ERROR)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def describe(self) -> list[str]:
        return list(self.records)


async def serve_check(env: Env) -> str | None:
    """A normal client still gets an echo round trip; returns a failure message or None."""
    from websockets.asyncio.client import connect

    body = json.dumps({"action": "echo", "check": time.time()})
    try:
        async with asyncio.timeout(10):
            async with connect(env.websocket_url, compression=None, proxy=None) as ws:
                await ws.send(body)
                reply = await ws.recv()
    except Exception as exc:
        return f"serve check failed: {type(exc).__name__}: {exc}"
    if reply != body:
        return f"serve check: echo answered {str(reply)[:100]!r}"
    return None


@dataclass
class Baseline:
    tasks: int


def gateway_state(gw: Any) -> dict[str, int]:
    registry = gw.store.registry
    state = {
        "hub": len(gw.hub.connections),
        "background": len(gw.lifecycle.background),
        "in_flight": gw.invoker.in_flight if gw.invoker is not None else 0,
        "rooms": len(getattr(registry, "_rooms", {})),
        "users": len(getattr(registry, "_users", {})),
    }
    return state


async def settled(gw: Any, baseline: Baseline, deadline: float) -> list[str]:
    """Wait until everything is back to baseline; the differences still left at the deadline."""
    end = time.monotonic() + deadline
    while True:
        problems = []
        state = gateway_state(gw)
        state["registry"] = await gw.store.registry.count()
        problems += [f"{k}={v}" for k, v in state.items() if v]
        tasks = len(asyncio.all_tasks())
        if tasks > baseline.tasks:
            problems.append(f"tasks={tasks} (baseline {baseline.tasks})")
        if not problems or time.monotonic() > end:
            return problems
        await asyncio.sleep(0.05)


async def health_connections(env: Env) -> int | None:
    if env.management_url is None:
        return None
    import aiohttp

    base = env.management_url.rsplit("/", 1)[0]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
            return int((await resp.json())["connections"])
    except (aiohttp.ClientError, ValueError, KeyError, TimeoutError):
        return None


class Checker:
    """The invariants, checked after each batch once every fuzz socket is closed."""

    def __init__(self, options: FuzzOptions, env: Env, gw: Any, report: Report) -> None:
        self.options = options
        self.env = env
        self.gw = gw
        self.report = report
        self.baseline = Baseline(tasks=0)
        self.idle: int | None = None

    async def start(self) -> None:
        self.baseline = Baseline(tasks=len(asyncio.all_tasks()))
        self.idle = await health_connections(self.env)

    async def check(self, when: str) -> None:
        report, gw = self.report, self.gw
        report.checks += 1
        if gw is not None:
            problems = await settled(gw, self.baseline, self.options.settle)
            if problems:
                report.failures.append(f"{when}: not back to baseline: {', '.join(problems)}")
        failure = await serve_check(self.env)
        if failure:
            report.failures.append(f"{when}: {failure}")
        if gw is not None:
            problems = await settled(gw, self.baseline, self.options.settle)
            if problems:
                report.failures.append(f"{when}, after the serve check: {', '.join(problems)}")
        elif self.idle is not None:
            end = time.monotonic() + self.options.settle
            while (now := await health_connections(self.env)) not in (self.idle, None):
                if time.monotonic() > end:
                    report.failures.append(
                        f"{when}: /health says {now} connections, not {self.idle}"
                    )
                    break
                await asyncio.sleep(0.1)

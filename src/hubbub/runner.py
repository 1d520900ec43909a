"""Run one gateway in this process until it is told to stop (SIGINT/SIGTERM, or the caller's
event): what ``hubbub serve`` does with one process (:mod:`hubbub.cli`) and what each worker of
``hubbub serve --workers N`` does (:mod:`hubbub.workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from hubbub.config import Config
from hubbub.errors import ListenError
from hubbub.gateway import logs
from hubbub.gateway.app import Gateway

# Called once the gateway listens, with the event that stops it.
OnStarted = Callable[[Gateway, asyncio.Event], None]


def run_gateway(
    config: Config, *, on_started: OnStarted | None = None, reuse_port: bool = False
) -> int:
    """Run one gateway in this process until it is told to stop; ``on_started`` defaults to
    printing the listener lines. ``reuse_port``: see :class:`~hubbub.gateway.app.Gateway`."""
    logs.configure(config.log.format, config.log.level)
    raise_open_files_limit()
    try:
        import uvloop  # noqa: PLC0415 - optional dependency

        runner: Any = uvloop.run
    except ImportError:  # optional: hubbub[fast]
        runner = asyncio.run
    return int(runner(_serve(config, on_started or _print_listeners, reuse_port)))


def raise_open_files_limit() -> None:
    """Every connection is a file descriptor: allow as many as the hard limit does (the soft
    limit is often 1,024, which would cap a gateway near a thousand connections)."""
    try:
        import resource  # noqa: PLC0415 - not on Windows
    except ImportError:  # pragma: no cover - Windows has no such limit
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def listener_lines(gateway: Gateway) -> list[str]:
    """One line per listener; the public one also serves the pages, when there are any."""
    config = gateway.config
    pages = f"  (pages: {gateway.http_url}/)" if config.static.dir is not None else ""
    lines = [
        f"hubbub: websocket  {gateway.websocket_url}{pages}",
        f"hubbub: management {gateway.management_url}",
    ]
    if gateway.management_https_url and gateway.tls is not None:
        lines.append(
            f"hubbub: https-management {gateway.management_https_url}"
            f"  (local CA: {gateway.tls.ca_cert})"
        )
    return lines


def _print_listeners(gateway: Gateway, stop: asyncio.Event) -> None:
    del stop
    for line in listener_lines(gateway):
        print(line, flush=True)


async def _serve(config: Config, on_started: OnStarted, reuse_port: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            print("hubbub: second signal, exiting now", file=sys.stderr, flush=True)
            os._exit(1)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    gateway = Gateway(config, reuse_port=reuse_port)
    try:
        await gateway.start()
    except ListenError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        await gateway.close()
        return 1
    except BaseException:
        await gateway.close()  # release what did start (listeners, store, handler threads)
        raise
    on_started(gateway, stop)
    await stop.wait()
    await gateway.close()
    # Non-zero when the shutdown grace cut $disconnect handlers off (the gateway logged how many).
    return 1 if gateway.undelivered_disconnects else 0

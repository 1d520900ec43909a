"""What the Python peers share: their command line, and the aiohttp listener of two of them."""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop
from aiohttp import web


def run(main: Callable[[str, int], Coroutine[Any, Any, None]]) -> None:
    """``python -m bench.peers.<name> [--host H] [--port P]``: ``main(host, port)`` on uvloop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))


async def serve_aiohttp(app: web.Application, host: str, port: int, path: str) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port), print ``READY ws://host:port{path}``
    for the harness, and run until killed."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    await web.SockSite(runner, sock).start()
    bound = sock.getsockname()
    print(f"READY ws://{bound[0]}:{bound[1]}{path}", flush=True)
    await asyncio.Event().wait()

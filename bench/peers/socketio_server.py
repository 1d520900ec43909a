"""python-socketio AsyncServer on aiohttp with the default (in-memory, Redis-free) manager.

Events: ``join`` (room name) enters the room and emits ``joined`` back; ``publish`` (any JSON
value) emits ``msg`` with the same value to the room ``bench``; ``echo`` emits ``echo`` back.

Run: python -m bench.peers.socketio_server --port 0
(prints ``READY ws://host:port/socket.io/?EIO=4&transport=websocket``)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from typing import Any

import socketio
import uvloop
from aiohttp import web

ROOM = "bench"

sio = socketio.AsyncServer(
    async_mode="aiohttp", logger=False, engineio_logger=False, cors_allowed_origins="*"
)


@sio.on("join")  # type: ignore[untyped-decorator]
async def join(sid: str, room: Any) -> None:
    await sio.enter_room(sid, str(room or ROOM))
    await sio.emit("joined", True, to=sid)


@sio.on("publish")  # type: ignore[untyped-decorator]
async def publish(sid: str, data: Any) -> None:
    await sio.emit("msg", data, room=ROOM)


@sio.on("echo")  # type: ignore[untyped-decorator]
async def echo(sid: str, data: Any) -> None:
    await sio.emit("echo", data, to=sid)


async def main(host: str, port: int) -> None:
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()
    print(f"READY ws://{bound[0]}:{bound[1]}/socket.io/?EIO=4&transport=websocket", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))

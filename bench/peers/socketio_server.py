"""python-socketio AsyncServer on aiohttp with the default (in-memory, Redis-free) manager.

Events: ``join`` (room name) enters the room and emits ``joined`` back; ``publish`` (any JSON
value) emits ``msg`` with the same value to the room ``bench``; ``echo`` emits ``echo`` back.

Run: python -m bench.peers.socketio_server --port 0
(prints ``READY ws://host:port/socket.io/?EIO=4&transport=websocket``)
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from aiohttp import web

from bench.peers.common import run, serve_aiohttp

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
    await serve_aiohttp(app, host, port, "/socket.io/?EIO=4&transport=websocket")


if __name__ == "__main__":
    run(main)

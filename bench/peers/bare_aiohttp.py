"""Bare aiohttp server: echo and a broadcast room, written the idiomatic way.

Broadcast is the usual ``await ws.send_str()`` loop (framed per recipient, awaited per recipient),
which is what an aiohttp application does without a gateway. Same protocol as bare_picows.py.

Run: python -m bench.peers.bare_aiohttp --port 0   (prints ``READY ws://host:port/``)
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvloop
from aiohttp import WSMsgType, web

ACTION_AT = len('{"action":"')
JOINED = '{"joined":true}'

members: set[web.WebSocketResponse] = set()


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, autoping=True)
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            text: str = msg.data
            action = text[ACTION_AT] if len(text) > ACTION_AT else ""
            if action == "p":
                for member in list(members):
                    await member.send_str(text)
            elif action == "j":
                members.add(ws)
                await ws.send_str(JOINED)
            else:
                await ws.send_str(text)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        members.discard(ws)
    return ws


async def main(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/", websocket)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()
    print(f"READY ws://{bound[0]}:{bound[1]}/", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))

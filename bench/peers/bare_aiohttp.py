"""Bare aiohttp server: echo and a broadcast room, written the idiomatic way.

Broadcast is the usual ``await ws.send_str()`` loop (framed per recipient, awaited per recipient),
which is what an aiohttp application does without a gateway. Same protocol as bare_picows.py.

Run: python -m bench.peers.bare_aiohttp --port 0   (prints ``READY ws://host:port/``)
"""

from __future__ import annotations

from aiohttp import WSMsgType, web

from bench.peers.common import run, serve_aiohttp

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
    await serve_aiohttp(app, host, port, "/")


if __name__ == "__main__":
    run(main)

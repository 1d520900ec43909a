"""Bare picows server: echo, and a broadcast room. No gateway logic: the throughput ceiling.

Protocol shared by every raw peer (decided on one byte, as cheaply as possible):
``{"action":"join"...}`` joins the room and answers ``{"joined":true}``; ``{"action":"publish"...}``
sends the same text to every member; anything else is echoed back.

Run: python -m bench.peers.bare_picows --port 0   (prints ``READY ws://host:port/``)
"""

from __future__ import annotations

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from bench.peers.common import run

ACTION_AT = len(b'{"action":"')  # the first letter of the action name
JOIN = ord("j")
PUBLISH = ord("p")
TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE
JOINED = b'{"joined":true}'

members: set[WSTransport] = set()


class Peer(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == TEXT:
            payload = frame.get_payload_as_bytes()
            action = payload[ACTION_AT] if len(payload) > ACTION_AT else 0
            if action == PUBLISH:
                for member in members:
                    member.send(TEXT, payload)
            elif action == JOIN:
                members.add(transport)
                transport.send(TEXT, JOINED)
            else:
                transport.send(TEXT, payload)
        elif kind == CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        members.discard(transport)


def factory(request: WSUpgradeRequest) -> WSListener:
    del request
    return Peer()


async def main(host: str, port: int) -> None:
    server = await ws_create_server(factory, host, port, websocket_handshake_timeout=10)
    bound = server.sockets[0].getsockname()
    print(f"READY ws://{bound[0]}:{bound[1]}/", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    run(main)

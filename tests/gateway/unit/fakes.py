"""In-memory stand-ins for what a connection writes to: no sockets, no event loop needed.

A :class:`~hubbub.gateway.transport_aiohttp.Socket` wraps aiohttp's ``WebSocketResponse`` and the
asyncio transport under it. The fakes here offer exactly the surface ``Socket`` touches (it reads
the response's ``_closed`` directly on the fan-out path, so the fake has that name too) and record
what was written, so the unit tests can check the bytes a peer would have received.
"""

from __future__ import annotations

from typing import Any, cast

from hubbub.aws.events import ApiContext, ConnectionContext
from hubbub.gateway.connection import Connection, now_ms
from hubbub.gateway.transport_aiohttp import Socket

API = ApiContext(api_id="abcdef1234", stage="dev", domain_name="localhost")


class FakeTransport:
    """The asyncio transport of one peer. A ``stuck`` peer reads nothing: writes pile up."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck
        self.written: list[bytes] = []
        self.backlog = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        if self.stuck:
            self.backlog += len(data)

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def abort(self) -> None:
        self.aborted = True


class FakeWebSocket:
    """The aiohttp ``WebSocketResponse`` of one peer: its close state, close and framed sends."""

    def __init__(self, *, compress: bool = False) -> None:
        self.compress = compress
        self._closed = False
        self.close_code: int | None = None
        self.closes: list[tuple[int, bytes]] = []
        self.sent: list[bytes] = []  # payloads sent through the library's writer (compressed)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closes.append((code, message))
        self._closed = True
        self.close_code = code
        return True

    async def send_frame(self, payload: bytes, opcode: Any) -> None:
        self.sent.append(payload)


class Peer:
    """One connection of the gateway with its fake socket parts."""

    def __init__(
        self,
        cid: str,
        *,
        stuck: bool = False,
        compress: bool = False,
        connected_at: int | None = None,
    ) -> None:
        self.ws = FakeWebSocket(compress=compress)
        self.transport = FakeTransport(stuck=stuck)
        self.socket = Socket(cast(Any, self.ws), cast(Any, self.transport))
        context = ConnectionContext(
            connection_id=cid,
            connected_at=now_ms() if connected_at is None else connected_at,
            source_ip="127.0.0.1",
            user_agent="unit",
            headers=(),
            query=None,
        )
        self.conn = Connection(self.socket, context, API)

"""The raw client side: a TCP ``Peer`` that reads HTTP heads and WebSocket frames, and requests
and frames built byte by byte (so a case can break any rule the real clients would enforce)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.fuzz.env import Env


class Peer:
    """One raw TCP connection with small helpers to read an HTTP head and WebSocket frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, host: str, port: int) -> Peer:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_chunks(self, data: bytes, cuts: Sequence[int], delay: float = 0.0) -> None:
        """Write ``data`` in pieces cut at ``cuts`` (so headers straddle reads)."""
        start = 0
        for cut in [*sorted(c for c in cuts if 0 < c < len(data)), len(data)]:
            self.writer.write(data[start:cut])
            await self.writer.drain()
            start = cut
            await asyncio.sleep(delay)

    def write_eof(self) -> None:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            with contextlib.suppress(OSError):  # the server may have closed already
                self.writer.write_eof()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def _more(self) -> bool:
        chunk = await self.reader.read(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    async def read_head(self, limit: int = 65536) -> tuple[int | None, dict[str, str]]:
        """Status and headers of one HTTP response; (None, {}) on EOF before a full head."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > limit or not await self._more():
                return None, {}
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return None, {}
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        return status, headers

    async def read_body(self, headers: dict[str, str]) -> bytes:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = 0
        while len(self.buffer) < length:
            if not await self._more():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    async def read_frame(self) -> tuple[int, bytes] | None:
        """One server frame (opcode, payload); None on EOF. Server frames are never masked."""
        while True:
            parsed = parse_frame(self.buffer)
            if parsed is not None:
                opcode, payload, used = parsed
                self.buffer = self.buffer[used:]
                return opcode, payload
            if not await self._more():
                return None

    async def read_until_close(self) -> tuple[int | None, list[bytes]]:
        """Read frames until a close frame (its code, 1005 if none) or EOF (None)."""
        texts: list[bytes] = []
        while True:
            frame = await self.read_frame()
            if frame is None:
                return None, texts
            opcode, payload = frame
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, texts
            if opcode == 0x1:
                texts.append(payload)


def parse_frame(data: bytes) -> tuple[int, bytes, int] | None:
    if len(data) < 2:
        return None
    opcode = data[0] & 0x0F
    length = data[1] & 0x7F
    pos = 2
    if length == 126:
        if len(data) < 4:
            return None
        length = struct.unpack("!H", data[2:4])[0]
        pos = 4
    elif length == 127:
        if len(data) < 10:
            return None
        length = struct.unpack("!Q", data[2:10])[0]
        pos = 10
    if data[1] & 0x80:
        pos += 4  # a masked server frame is a protocol error, but parse it anyway
    if len(data) < pos + length:
        return None
    return opcode, data[pos : pos + length], pos + length


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
    form: str = "auto",
    key: bytes = b"\x12\x34\x56\x78",
) -> bytes:
    """A client frame; ``length``/``form`` may lie about or over-encode the payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask else 0
    if form == "64" or (form == "auto" and n > 0xFFFF):
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    elif form == "16" or (form == "auto" and n > 125):
        head += bytes([mbit | 126]) + struct.pack("!H", n & 0xFFFF)
    else:
        head += bytes([mbit | n])
    if not mask:
        return head + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Request:
    method: bytes = b"GET"
    target: bytes = b"/dev"
    version: bytes = b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    eol: bytes = b"\r\n"
    sep: bytes = b": "

    def render(self) -> bytes:
        lines = [b" ".join(p for p in (self.method, self.target, self.version) if p)]
        lines += [name + self.sep + value for name, value in self.headers]
        return self.eol.join(lines) + self.eol + self.eol + self.body


def ws_key(rng: random.Random) -> bytes:
    return base64.b64encode(rng.randbytes(16))


def upgrade_request(rng: random.Random, host: bytes, stage: str) -> Request:
    return Request(
        target=f"/{stage}".encode(),
        headers=[
            (b"Host", host),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", ws_key(rng)),
            (b"Sec-WebSocket-Version", b"13"),
        ],
    )


async def open_websocket(env: Env, rng: random.Random) -> Peer:
    """A good handshake. Retried once on a reset: the fuzzer shares its event loop with an
    in-process gateway, and when the loop is congested the gateway's handshake timeout can
    rightly drop a connection whose request the fuzzer was too slow to send."""
    request = upgrade_request(rng, env.host_header, env.stage).render()
    for attempt in (1, 2):
        peer = await Peer.open(env.host, env.ws_port)
        try:
            await peer.send(request)
            status, _ = await peer.read_head()
        except ConnectionResetError:
            peer.abort()
            if attempt == 2:
                raise
            continue
        if status != 101:
            peer.abort()
            raise ConnectionError(f"handshake answered {status}")
        return peer
    raise AssertionError("unreachable")  # pragma: no cover

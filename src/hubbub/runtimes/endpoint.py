"""The Runtime API endpoint of one environment on the event loop: an ``asyncio.Protocol`` per
connection around :class:`hubbub.runtimes.http11.Parser`.

Each complete request goes to the environment's handler with a :class:`Reply`, which it answers
at once or keeps (the long poll of ``invocation/next``) and answers when an invocation comes:
no task per request, the event written from the invoking call itself. Requests of one connection
are answered in order; while one waits, the ones behind it queue (and reading pauses after a
few, so a pipelining client cannot grow memory).

The answers made while one read is handled leave in one write at its end: hubbub's Node.js
bootstrap pipelines ``POST .../response`` and ``GET .../next``, and when an invocation is queued
its 202 and the next event go back in one segment (one wake-up of the runtime, not two). Nothing
waits for a later read: an answer made outside ``data_received`` (the long poll answered by an
invocation) is written at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import cast

from hubbub.runtimes import http11

log = logging.getLogger("hubbub.runtime")

_MAX_QUEUED = 8  # requests read ahead of the one being answered


class Reply:
    """The answer to one request; :meth:`send` it once."""

    __slots__ = ("_connection", "keep_alive", "sent")

    def __init__(self, connection: Connection, keep_alive: bool) -> None:
        self._connection = connection
        self.keep_alive = keep_alive
        self.sent = False

    @property
    def open(self) -> bool:
        """Whether the answer can still reach the client (its connection is up)."""
        return not self.sent and self._connection.open

    def send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.sent:
            return
        self.sent = True
        data = http11.answer(status, body, headers, keep_alive=self.keep_alive)
        self._connection.answered(data, self.keep_alive)

    def send_answer(self, data: bytes) -> None:
        """Send a whole answer made elsewhere (framed as :func:`http11.answer` frames one, with
        ``Connection: close`` unless :attr:`keep_alive`)."""
        if self.sent:
            return
        self.sent = True
        self._connection.answered(data, self.keep_alive)

    def refuse(self, status: int, error_type: str, message: str) -> None:
        if self.sent:
            return
        self.sent = True
        data = http11.error_answer(status, error_type, message, keep_alive=self.keep_alive)
        self._connection.answered(data, self.keep_alive)


Handler = Callable[[http11.Request, Reply], None]


class Connection(asyncio.Protocol):
    """One runtime connection; ``connections`` holds the open ones (to close them on stop)."""

    def __init__(self, handler: Handler, max_body: int, connections: set[Connection]) -> None:
        self._handler = handler
        self._parser = http11.Parser(max_body)
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._queue: deque[http11.Event] = deque()
        self._waiting = False  # a request was handed over and is not answered yet
        self._paused = False
        self._draining = False
        self._held: list[bytes] | None = None  # answers of the read being handled, or None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self.open = True
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._queue.clear()
        self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        events = self._parser.feed(data)
        if not events:
            return
        self._queue.extend(events)
        held: list[bytes] = []
        self._held = held
        try:
            self._drain()
        finally:
            self._held = None
            self._flush(held)
        if len(self._queue) >= _MAX_QUEUED and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        elif self._transport is not None:
            self._transport.write(data)

    def _flush(self, held: list[bytes]) -> None:
        if held and self._transport is not None:
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def eof_received(self) -> bool | None:
        return None  # close once the client has closed its side

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def answered(self, data: bytes, keep_alive: bool) -> None:
        self._waiting = False
        transport = self._transport
        if not self.open or transport is None:
            return
        self._write(data)
        if not keep_alive:
            self.open = False
            self._queue.clear()
            if self._held:  # what came before this answer, then this answer, then the close
                self._flush(self._held)
                self._held.clear()
            transport.close()
            return
        if self._paused and len(self._queue) < _MAX_QUEUED:
            self._paused = False
            transport.resume_reading()
        self._drain()

    def _drain(self) -> None:
        # A handler answering at once calls back into answered(): the loop here goes on with the
        # next request instead of recursing (a pipelined burst would nest one call per request).
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and not self._waiting and self.open and self._transport is not None:
                event = self._queue.popleft()
                if isinstance(event, http11.Continue):
                    self._write(http11.CONTINUE_BYTES)
                elif isinstance(event, http11.Malformed):
                    reply = Reply(self, keep_alive=False)
                    reply.refuse(event.status, event.error_type, event.message)
                else:
                    self._waiting = True
                    reply = Reply(self, event.keep_alive)
                    try:
                        self._handler(event, reply)
                    except Exception:
                        log.exception("Runtime API request failed")
                        reply.refuse(500, "ServiceException", "the request failed in hubbub")
        finally:
            self._draining = False

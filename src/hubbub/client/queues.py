"""The two buffers of a client: received messages (inbox) and sends waiting for a socket (outbox).

The inbox is bounded and applies back-pressure: when the application does not read, the client
stops reading the socket, TCP pushes back, and the server sees a slow consumer instead of this
process growing without limit. It can be *ended* with an exception, which ``get()`` raises once
every message received before has been consumed, so nothing that arrived is hidden by a close.

The outbox is bounded and refuses instead of waiting: a send while disconnected must not block
the application for an outage of unknown length, and must not drop anything silently either.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

from hubbub.client.errors import SendQueueFull

__all__ = ["Data", "Inbox", "Outbox"]

Data = str | bytes
T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded FIFO of received messages that can be ended with an exception."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"max_queue must be >= 1, got {maxsize}")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._end: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the inbox is full."""
        while len(self._items) >= self._maxsize:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(item)
        self._readable.set()

    async def get(self) -> T:
        """The next message; raises the end exception once the inbox is empty and ended."""
        while not self._items:
            if self._end is not None:
                raise self._end
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    def end(self, exc: BaseException) -> None:
        """No more messages will come: wake readers so they raise ``exc`` when drained."""
        if self._end is None:
            self._end = exc
        self._readable.set()


class Outbox:
    """A bounded FIFO of messages sent while no socket is open."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"queue_size must be >= 0, got {limit}")
        self._items: deque[Data] = deque()
        self.limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Data]:
        return iter(self._items)

    def append(self, item: Data) -> None:
        """Queue ``item``; raises :class:`SendQueueFull` rather than dropping anything."""
        if len(self._items) >= self.limit:
            raise SendQueueFull(self.limit)
        self._items.append(item)

    def peek(self) -> Data:
        return self._items[0]

    def pop(self) -> Data:
        """Remove the oldest message; called only once it was written to a socket."""
        return self._items.popleft()

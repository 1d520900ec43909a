"""The bus subscriber on a lean connection (one Redis server): what redis-py's PubSub did for
:class:`hubbub.store.redis.RedisStore`, at a fraction of the CPU per message.

redis-py's ``PubSub.get_message`` costs about 100 µs of CPU per bus message (a read per message,
its timeout wrapper, parsing into a dict); here the socket's protocol parses whatever arrived with
hiredis (:mod:`hubbub.store.redis_wire`) and hands the frames to one reading task, which delivers
them in order.

The liveness rule is the same as before: when nothing (no message, no PONG) arrived for an
interval, PING; if the next interval brings nothing either, the connection is dead (a host that
vanished without a reset) and :meth:`WireSubscription.pump` raises ConnectionError, as it does
when the connection is lost. One timer per connection checks this once an interval.

Memory is bounded: past :data:`HIGH_WATER` undelivered messages the socket stops being read until
the reader catches up (Redis then buffers, and drops a subscriber that stays behind by its
``client-output-buffer-limit pubsub``: the store resubscribes, as after any loss).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.store.redis_wire import MORE, Endpoint, RespProtocol, dial, pack

HIGH_WATER = 10_000  # undelivered messages before the socket stops being read
LOW_WATER = 1_000  # ... and starts again


class _Subscriber(RespProtocol):
    """Commands first (AUTH, SELECT: the handshake), then only pushed pub/sub replies."""

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(endpoint, loop)
        self.subscribed = False  # from SUBSCRIBE on, every reply is a push
        self.messages: collections.deque[bytes] = collections.deque()
        self.confirmed = 0  # channels the server confirmed
        self.error: Exception | None = None
        self.active = False  # something arrived, or the reader took a message, since the tick
        self.paused = False
        self._wakeup: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._pinged = False
        self._interval = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.subscribed:
            super().data_received(data)
            return
        reader = self._reader
        reader.feed(data)
        messages = self.messages
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self.fail(RedisConnectionError(f"Protocol error from {self._endpoint.name}: {exc}"))
                return
            if reply is MORE:
                break
            if isinstance(reply, Exception):
                self.fail(RedisConnectionError(f"{reply} (from {self._endpoint.name})"))
                return
            if isinstance(reply, list) and reply:
                kind = reply[0]
                if kind == b"message" and len(reply) == 3:
                    messages.append(reply[2])
                elif kind == b"subscribe":
                    self.confirmed += 1
                # "pong" (a PING while subscribed) and anything else: a sign of life only
        self.active = True
        if len(messages) >= HIGH_WATER and not self.paused and self._transport is not None:
            self._transport.pause_reading()
            self.paused = True
        self.wake()

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().fail(error)
        self.wake()

    def wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def wait(self) -> None:
        """Until a message arrives or the connection fails."""
        self._wakeup = self._loop.create_future()
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    def subscribe(self, channels: tuple[str, ...]) -> None:
        assert self._transport is not None
        self.subscribed = True
        self._transport.write(pack(("SUBSCRIBE", *channels)))

    def watch(self, interval: float) -> None:
        """Start the liveness checks, one every ``interval`` seconds."""
        self._interval = interval
        self._watchdog = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._watchdog = None
        if not self.open:
            return
        if self.active:
            self.active = self._pinged = False
        elif self._pinged:
            self.fail(RedisConnectionError("pub/sub connection silent"))
            return
        else:
            assert self._transport is not None
            self._transport.write(pack(("PING",)))
            self._pinged = True
        self._watchdog = self._loop.call_later(self._interval, self._tick)

    def resume(self) -> None:
        self.paused = False
        if self._transport is not None and self.open:
            self._transport.resume_reading()


class WireSubscription:
    """This node's channels on one Redis server (``subscribe``, then ``pump`` until it fails)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._protocol: _Subscriber | None = None

    async def subscribe(self, *channels: str) -> None:
        """Connect, subscribe and wait (up to the socket timeout) for the server's confirmation."""
        protocol = await dial(self._endpoint, _Subscriber)
        self._protocol = protocol
        protocol.subscribe(channels)
        try:
            async with asyncio.timeout(self._endpoint.timeout):
                while protocol.confirmed < len(channels):
                    if protocol.error is not None:
                        raise protocol.error
                    await protocol.wait()
        except TimeoutError:
            error = RedisTimeoutError(f"Timeout reading from {self._endpoint.name}")
            protocol.fail(error)
            raise error from None

    async def pump(
        self,
        receive: Callable[[bytes], Awaitable[None]],
        interval: float,
        closed: Callable[[], bool],
    ) -> None:
        """Deliver messages in order until closed; raise ConnectionError when the connection
        is lost or stays silent (see the module docstring)."""
        protocol = self._protocol
        assert protocol is not None, "subscribe first"
        protocol.watch(interval)
        messages = protocol.messages
        while not closed():
            if messages:
                data = messages.popleft()
                protocol.active = True  # a slow reader is not a silent connection
                if protocol.paused and len(messages) <= LOW_WATER:
                    protocol.resume()
                await receive(data)
            elif protocol.error is not None:
                raise protocol.error
            else:
                await protocol.wait()

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("Connection closed by client."))
            self._protocol = None


__all__ = ["HIGH_WATER", "LOW_WATER", "WireSubscription"]

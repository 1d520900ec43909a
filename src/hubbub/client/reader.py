"""The receiving half of a client connection: one socket's frames into the inbox.

A :class:`Reader` is owned by the client's runner task and reads the socket the runner hands it
(:meth:`Reader.attach`), on that task only. Plain sockets deliver every frame as it is. Sockets
that negotiated ``hubbub.v1`` go through the client's
:class:`~hubbub.client.recovery.SessionState`: room envelopes are unwrapped, duplicates and
control frames dropped, and the answer to a resume is reported as the ``recovered`` /
``not_recovered`` event. :meth:`Reader.resume` is the handshake that opens a reconnected recovery
socket: the resume message goes first, then frames are read (the replay goes to the inbox like
any message) until the answer, a timeout or the end of the socket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import aiohttp

from hubbub.client.backoff import NO_STATUS
from hubbub.client.events import Listeners, NotRecovered, Recovered
from hubbub.client.queues import Inbox
from hubbub.client.recovery import SUBPROTOCOL, Answer, Received, SessionState

__all__ = ["ABNORMAL", "Ending", "Reader", "Socket"]

log = logging.getLogger("hubbub.client")

ABNORMAL = 1006
Socket = aiohttp.ClientWebSocketResponse[Literal[True]]
# How a socket ended: close code, reason, closed by the server, the error (if any).
Ending = tuple[int, str, bool, BaseException | None]


class Reader:
    """Reads the current socket into ``inbox``; see the module docstring."""

    def __init__(
        self,
        inbox: Inbox[Received],
        listeners: Listeners,
        recovery: SessionState | None,
        recovery_timeout: float,
    ) -> None:
        self._inbox = inbox
        self._listeners = listeners
        self.recovery = recovery
        self._timeout = recovery_timeout
        self._sock: Socket | None = None
        self._recovering = False  # the current socket speaks hubbub.v1
        self._resumed = False  # what the last answer said

    def attach(self, sock: Socket) -> None:
        """Read ``sock`` from now on."""
        self._sock = sock
        self._recovering = self.recovery is not None and sock.protocol == SUBPROTOCOL
        if self.recovery is not None and not self._recovering:
            log.warning("the server did not accept %s: no recovery on this socket", SUBPROTOCOL)

    def detach(self) -> None:
        """The socket is gone; a resume still waiting for its answer is abandoned."""
        self._sock = None
        if self.recovery is not None:
            self.recovery.socket_closed()

    async def resume(self) -> bool | Ending:
        """Resume the previous session on the new socket (see the module docstring). Emits
        ``recovered`` or ``not_recovered``, except when the socket ends first (the next socket
        resumes again). Returns whether the session was resumed, or how the socket ended."""
        recovery, sock = self.recovery, self._sock
        assert recovery is not None
        assert sock is not None
        message = recovery.start_resume() if self._recovering else None
        if message is None:
            reason = "no session" if self._recovering else "unsupported"
            self._listeners.emit("not_recovered", NotRecovered(reason))
            return False
        await sock.send_str(message)
        self._resumed = False  # set by _report when the answer is read
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while recovery.resuming:
            remaining = deadline - loop.time()
            if remaining <= 0:
                recovery.settle()  # a late answer only updates the positions
                log.warning("no recovery answer in %.1fs; carrying on", self._timeout)
                self._listeners.emit("not_recovered", NotRecovered("timeout"))
                return False
            try:
                msg = await sock.receive(timeout=remaining)
            except TimeoutError:
                continue
            ended = await self.take(msg)
            if ended is not None:
                return ended
        return self._resumed

    async def pump(self) -> Ending:
        """Move messages to the inbox until the socket ends; returns how it ended."""
        sock = self._sock
        assert sock is not None
        while True:
            ended = await self.take(await sock.receive())
            if ended is not None:
                return ended

    async def take(self, msg: aiohttp.WSMessage) -> Ending | None:
        """Deliver one received frame; returns code, reason, by_server, error when it ended the
        socket. A stream that ends without a close frame is 1006, whatever aiohttp recorded."""
        kind = msg.type
        if kind is aiohttp.WSMsgType.TEXT:
            if not self._recovering:
                await self._inbox.put(Received(msg.data))
                return None
            assert self.recovery is not None
            item = self.recovery.receive(msg.data)
            if isinstance(item, Received):
                await self._inbox.put(item)
            elif item is not None:
                self._report(item)
        elif kind is aiohttp.WSMsgType.BINARY:
            await self._inbox.put(Received(msg.data))
        elif kind is aiohttp.WSMsgType.CLOSE:
            return (msg.data or NO_STATUS), (msg.extra or ""), True, None
        elif kind is aiohttp.WSMsgType.ERROR:
            # Our side ended it: the server broke the protocol or a limit (the exception's
            # code, e.g. 1009), or the heartbeat got no pong (1006).
            error: BaseException = msg.data
            return getattr(error, "code", ABNORMAL), str(error), False, error
        else:  # CLOSING (close() was called) or CLOSED (the TCP connection is gone)
            sock = self._sock
            return ABNORMAL, "", True, sock.exception() if sock is not None else None
        return None

    def _report(self, answer: Answer) -> None:
        self._resumed = answer.resumed
        if answer.recovered:
            self._listeners.emit("recovered", Recovered(answer.rooms))
            return
        lost = [r.reason for r in answer.rooms.values() if not r.recovered and r.reason]
        reason = answer.reason or (lost[0] if lost else "not recovered")
        log.warning("session not recovered: %s", reason)
        self._listeners.emit("not_recovered", NotRecovered(reason, answer.resumed, answer.rooms))

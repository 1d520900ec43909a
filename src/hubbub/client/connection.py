"""A WebSocket client connection that outlives its sockets.

Theory of operation. One :class:`ClientConnection` owns at most one socket at a time and exactly
one *runner* task, which does everything that touches sockets, in sequence::

    dial ──ok──▶ open: replay (resubscribe, then the outbox) ──▶ pump (socket → inbox)
     │                                                             │ the socket closed
     │ failed                                                      ▼
     └──────── wait a jittered delay ◀── reconnect? (close-code / HTTP-status policy) ──▶ end

Because dialing, replaying and reading happen on that one task, a new socket is dialed only after
the previous one was *fully* closed (``await socket.close()`` returned): two sockets of one client
are never alive together, and there is never a second reconnect loop.

Sends take one of two paths, picked by the state:

- ``open``: written straight to the socket. If the socket breaks under the write, the message is
  queued for the next socket instead (it was not written).
- anything else (dialing, waiting, replaying): appended to the bounded outbox. The runner sends the
  resubscribe messages and then the outbox *before* it switches to ``open``, so the order is always
  resubscribe → queued sends → new sends.

The client ends (``closed``) when ``close()`` is called, when a close code or handshake status is
final by the policy in :mod:`hubbub.client.backoff`, or when the give-up policy ends an outage. The
same :class:`~hubbub.client.errors.ConnectionClosed` is then raised by ``recv()`` (after the
messages already received), ``send()`` and the initial ``async with``.

With ``recovery=True`` (hubbub's opt-in protocol, :mod:`hubbub.client.recovery`) the socket
offers the ``hubbub.v1`` subprotocol, and every text frame goes through a
:class:`~hubbub.client.recovery.SessionState` that keeps the session token and the last offset per
room, unwraps room envelopes and drops duplicates and control frames. A reconnect then runs::

    open ──▶ resume (first message) ──▶ read until the answer ──▶ recovered | not_recovered
         ──▶ resubscribe (unless resumed) ──▶ the outbox ──▶ open ──▶ reconnected ──▶ pump

The receiving side, resume handshake included, is :class:`~hubbub.client.reader.Reader`, driven
by the runner. Replayed messages read while waiting for the answer go to the inbox like any other;
the wait is bounded (``recovery_timeout``), after which the queue is flushed anyway.

What plain mode cannot promise: a message written to a socket that dies before the bytes leave the
machine is lost, and messages the server sent while no socket was open are not replayed. Recovery
closes the second gap for room messages (within the gateway's history window).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from ssl import SSLContext
from typing import Any, Literal

import aiohttp
from yarl import URL

from hubbub.client import outcomes
from hubbub.client.backoff import Action, Backoff, close_meaning
from hubbub.client.errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from hubbub.client.events import (
    Callback,
    Close,
    EventName,
    Listeners,
    Open,
    Reconnected,
    Reconnecting,
)
from hubbub.client.presence import Room, RoomPresence
from hubbub.client.queues import Data, Inbox, Outbox
from hubbub.client.reader import ABNORMAL, Ending, Reader, Socket
from hubbub.client.recovery import SUBPROTOCOL, Position, Received, SessionState
from hubbub.client.resubscribe import Message, MessageSource, Resubscriptions

__all__ = ["ClientConnection", "Message", "State", "connect"]

log = logging.getLogger("hubbub.client")

State = Literal["new", "connecting", "replaying", "open", "waiting", "closed"]

# Transient failures to open a socket: reconnect. Anything else escaping ws_connect is a bug.
_DIAL_ERRORS = (OSError, TimeoutError, aiohttp.ClientError)
# A write that fails because the socket is going away.
_WRITE_ERRORS = (ConnectionError, aiohttp.ClientError)


class ClientConnection:
    """A reconnecting WebSocket client; create it with :func:`connect`.

    Use it as ``async with connect(url) as ws:`` (opens, then closes on exit) or
    ``ws = await connect(url)`` followed by ``await ws.close()``.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] = (),
        backoff: Backoff | None = None,
        close_codes: Mapping[int, Action] | None = None,
        http_statuses: Mapping[int, Action] | None = None,
        queue_size: int = 1000,
        max_queue: int = 4096,
        heartbeat: float | None = None,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        ssl: SSLContext | bool = True,
        session: aiohttp.ClientSession | None = None,
        recovery: bool = False,
        recovery_timeout: float = 10.0,
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.host:
            raise ValueError(f"expected a ws:// or wss:// URL, got {url!r}")
        if open_timeout <= 0 or close_timeout <= 0:
            raise ValueError("open_timeout and close_timeout must be positive")
        if heartbeat is not None and heartbeat <= 0:
            raise ValueError(f"heartbeat must be positive or None, got {heartbeat}")
        if recovery_timeout <= 0:
            raise ValueError(f"recovery_timeout must be positive, got {recovery_timeout}")
        self.url = url
        self.backoff = backoff or Backoff()
        self._headers = dict(headers or {})
        self._subprotocols = tuple(subprotocols)
        self._recovery = SessionState() if recovery else None
        self._presence = RoomPresence(self.send_json)
        if self._recovery is not None:
            self._recovery.on_control = self._presence.receive
        if recovery and SUBPROTOCOL not in self._subprotocols:
            self._subprotocols = (SUBPROTOCOL, *self._subprotocols)
        self._close_codes = dict(close_codes or {})
        self._http_statuses = dict(http_statuses or {})
        self._heartbeat = heartbeat
        self._open_timeout = open_timeout
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_close=close_timeout)
        self._max_message_bytes = max_message_bytes
        self._ssl = ssl
        self._session = session
        self._owns_session = session is None
        self._inbox: Inbox[Received] = Inbox(max_queue)
        self._outbox = Outbox(queue_size)
        self._listeners = Listeners()
        self._reader = Reader(self._inbox, self._listeners, self._recovery, recovery_timeout)
        self._resubscribe = Resubscriptions()
        self._state: State = "new"
        self._sock: Socket | None = None
        self._runner: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self._done = asyncio.Event()
        self._final: ConnectionClosed | None = None
        self._close_requested = False
        # What close() asked for; the runner may be the one that ends up sending the close frame.
        self._close_frame: tuple[int, bytes] = (1000, b"")

    # -- public API ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """``new``, ``connecting``, ``replaying``, ``open``, ``waiting`` (backoff) or ``closed``."""
        return self._state

    @property
    def connected(self) -> bool:
        """A socket is open and new sends go straight to it."""
        return self._state == "open"

    @property
    def closed(self) -> bool:
        """The client ended for good (see :meth:`wait_closed`)."""
        return self._final is not None

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the current socket negotiated, if any."""
        return self._sock.protocol if self._sock is not None else None

    @property
    def connection_id(self) -> str | None:
        """(``recovery=True``) The gateway's id for the current connection, from its session
        frame (``None`` until that arrived)."""
        return self._recovery.connection_id if self._recovery is not None else None

    @property
    def session_token(self) -> str | None:
        """(``recovery=True``) The token the next reconnect will resume from."""
        return self._recovery.token if self._recovery is not None else None

    @property
    def positions(self) -> dict[str, Position]:
        """(``recovery=True``) The last delivered epoch and offset per room (a copy)."""
        return dict(self._recovery.positions) if self._recovery is not None else {}

    def on(self, event: EventName, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event_object)`` on each ``event``; returns a function that removes it.

        See :mod:`hubbub.client.events` for the names, their payloads and their order.
        """
        return self._listeners.add(event, callback)

    def room(self, name: str) -> Room:
        """(``recovery=True``) A room's presence: ``await ws.room("lobby").presence()``,
        ``ws.room("lobby").on("join", callback)``; see :mod:`hubbub.client.presence`."""
        if self._recovery is None:
            raise ValueError("presence needs connect(url, recovery=True) (hubbub.v1)")
        return Room(name, self._presence)

    def on_reconnect_send(
        self, message: Message | MessageSource, *, skip_if_resumed: bool = False
    ) -> Callable[[], None]:
        """Send ``message`` on every new socket after a reconnect, before any queued send.

        ``message`` is text, bytes, a JSON-serialisable value, or a callable returning a list (any
        iterable) of such messages or a single text/bytes/dict message. The callable runs at each
        reconnect, so it can reflect the current state:
        ``lambda: [{"action": "join", "room": r} for r in rooms]``. Registrations replay in the
        order they were made. Returns a function that removes the registration.

        ``skip_if_resumed=True`` (for ``recovery=True``): not sent when the gateway resumed the
        session, since it has rejoined the rooms itself; sent when it could not (session expired,
        no answer, a server without recovery). Use it for joins.
        """
        return self._resubscribe.add(message, skip_if_resumed=skip_if_resumed)

    async def send(self, message: Data) -> None:
        """Send text (or bytes, as a binary frame).

        While disconnected the message is queued (``queue_size``) and sent after the reconnect;
        raises :class:`~hubbub.client.errors.SendQueueFull` when the queue is full and
        :class:`~hubbub.client.errors.ConnectionClosed` once the client is closed.
        """
        if not isinstance(message, str | bytes):
            raise TypeError(f"send() takes str or bytes, got {type(message).__name__}")
        if self._final is not None:
            raise self._final
        if self._close_requested:
            raise ConnectionClosedOK("the connection is closing", code=1000)
        sock = self._sock
        if self._state == "open" and sock is not None:
            try:
                await _write(sock, message)
                return
            except _WRITE_ERRORS:
                pass  # the socket is going away: the message goes to the next one
        self._outbox.append(message)

    async def send_json(self, value: Any) -> None:
        """Send ``value`` as JSON text (same queueing as :meth:`send`)."""
        await self.send(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    async def recv(self) -> Data:
        """The next message (``str`` for text frames, ``bytes`` for binary frames).

        Waits through reconnects; raises :class:`~hubbub.client.errors.ConnectionClosed` once the
        client is closed and every message received before was returned. With ``recovery=True``
        a room message is its plain text (see :meth:`recv_message` for its room and offset).
        """
        return (await self._inbox.get()).data

    async def recv_message(self) -> Received:
        """The next message with what the recovery protocol knows about it: ``data`` plus
        ``room``, ``epoch``, ``offset`` and ``replayed`` for room messages (same queue as
        :meth:`recv`: a message is returned by one of them only)."""
        return await self._inbox.get()

    async def messages(self) -> AsyncIterator[Received]:
        """``async for message in ws.messages()``: :meth:`recv_message` until the client is closed
        (ends quietly after ``close()`` or a 1000 close, as ``async for message in ws`` does)."""
        while True:
            try:
                yield await self._inbox.get()
            except ConnectionClosedOK:
                return

    async def recv_json(self) -> Any:
        """The next message, parsed as JSON."""
        return json.loads(await self.recv())

    def __aiter__(self) -> ClientConnection:
        return self

    async def __anext__(self) -> Data:
        """Messages until the client is closed: the loop ends quietly after ``close()`` or a 1000
        close from the server, and raises for every other end."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def unsent(self) -> list[Data]:
        """Messages queued while disconnected and not sent yet (in order)."""
        return list(self._outbox)

    async def wait_closed(self) -> ConnectionClosed:
        """Wait until the client is closed for good; returns why (does not raise it)."""
        await self._done.wait()
        assert self._final is not None
        return self._final

    async def start(self) -> ClientConnection:
        """Open the first socket (retrying by the same policy as reconnects); returns ``self``.

        Raises :class:`~hubbub.client.errors.ConnectionClosed` (usually
        :class:`~hubbub.client.errors.HandshakeRejected` or
        :class:`~hubbub.client.errors.RetriesExhausted`) if the client ends before it is open.
        """
        if self._final is not None:
            raise self._final
        if self._runner is None:
            loop = asyncio.get_running_loop()
            self._opened = loop.create_future()
            if self._session is None:
                # No total timeout: the session's default (5 min) must not cut long-lived sockets.
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
            self._runner = loop.create_task(self._run(), name=f"hubbub-client {self.url}")
        assert self._opened is not None
        try:
            await asyncio.shield(self._opened)
        except asyncio.CancelledError:
            await self.close()
            raise
        return self

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket with ``code``/``reason`` and stop reconnecting. Safe to call twice.

        Queued messages that were never sent stay available from :meth:`unsent`.
        """
        if self._final is None:
            self._close_requested = True
            self._close_frame = (code, reason.encode("utf-8")[:123])
            sock = self._sock
            if sock is not None and not sock.closed:
                with contextlib.suppress(*_WRITE_ERRORS):  # already gone: nothing to tell
                    await sock.close(code=code, message=self._close_frame[1])
            runner = self._runner
            if runner is not None and runner is not asyncio.current_task() and not runner.done():
                # The runner may be sleeping, dialing or waiting for the inbox to drain.
                runner.cancel()
                await asyncio.wait([runner])
            self._end(
                ConnectionClosedOK(
                    "the connection was closed by the client",
                    code=code,
                    reason=reason,
                    unsent=len(self._outbox),
                ),
                by_server=False,
            )
        await self._release_session()

    async def __aenter__(self) -> ClientConnection:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self.start().__await__()

    # -- the runner ---------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._connect_loop()
        except asyncio.CancelledError:
            if not self._close_requested:
                self._end(ConnectionClosedOK("the client task was cancelled", code=1000))
            raise
        except Exception as exc:  # a bug, not a network condition: end loudly, keep the cause
            log.exception("hubbub client failed")
            self._end(ConnectionClosedError(f"client failed: {exc!r}", code=ABNORMAL), error=exc)
        finally:
            if not self._close_requested:
                await self._release_session()

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        policy = self.backoff
        attempts = 0  # connection attempts in the current outage (the give-up counter)
        retries = 0  # delays taken in the current outage (the backoff exponent)
        outage_start = closed_at = loop.time()
        error: BaseException | None = None
        retry_after = 0.0  # seconds a refusing server asked for (Retry-After)
        reconnect = False  # True once a socket has been open
        delay_first = False  # the very first attempt goes immediately
        while True:
            if delay_first:
                elapsed = loop.time() - outage_start
                if policy.exhausted(attempts, elapsed):
                    unsent = len(self._outbox)
                    ended = outcomes.gave_up(self.url, attempts, elapsed, error, unsent=unsent)
                    self._end(ended, error=error)
                    return
                delay = policy.clamp(policy.delay(retries, at_least=retry_after), elapsed)
                retries += 1
                self._state = "waiting"
                log.info("reconnecting in %.3fs (attempt %d): %s", delay, attempts + 1, error)
                self._listeners.emit("reconnecting", Reconnecting(attempts + 1, delay, error))
                await asyncio.sleep(delay)
            delay_first = True
            attempts += 1
            self._state = "connecting"
            try:
                sock = await self._dial()
            except _DIAL_ERRORS as exc:
                if self._dial_failed_for_good(exc):
                    return
                error = exc
                retry_after = outcomes.retry_after(exc)
                continue
            retry_after = 0.0
            opened_at = loop.time()
            code, reason, by_server, error = await self._serve(
                sock, reconnect, attempts, opened_at - closed_at
            )
            reconnect = True
            closed_at = loop.time()
            if self._close_requested:
                return  # close() ends the client
            if not self._socket_closed(code, reason, by_server, error):
                return
            if closed_at - opened_at >= policy.stable_after:
                attempts = retries = 0
                outage_start = closed_at

    async def _dial(self) -> Socket:
        # The invariant the whole design rests on: no new socket while one is alive.
        assert self._sock is None, "a socket is still open"
        assert self._session is not None
        async with asyncio.timeout(self._open_timeout):
            return await self._session.ws_connect(
                self.url,
                protocols=self._subprotocols,
                headers=self._headers,
                heartbeat=self._heartbeat,
                timeout=self._ws_timeout,
                max_msg_size=self._max_message_bytes,
                ssl=self._ssl,
                autoclose=True,
                autoping=True,
            )

    async def _serve(
        self,
        sock: Socket,
        reconnect: bool,
        attempts: int,
        downtime: float,
    ) -> Ending:
        """Own one open socket until it is fully closed; returns how it ended."""
        self._sock = sock
        self._reader.attach(sock)
        try:
            self._state = "replaying"
            self._listeners.emit("open", Open(self.url, reconnect))
            resumed = False
            try:
                if reconnect and self._recovery is not None:
                    outcome = await self._reader.resume()
                    if not isinstance(outcome, bool):
                        return outcome  # the socket ended before the gateway answered
                    resumed = outcome
                await self._replay(sock, reconnect, resumed)
            except _WRITE_ERRORS:
                pass  # the socket broke while replaying; the pump reads how it ended
            else:
                self._state = "open"
                if reconnect:
                    log.info("reconnected after %d attempt(s), %.3fs", attempts, downtime)
                    self._listeners.emit("reconnected", Reconnected(attempts, downtime))
                if self._opened is not None and not self._opened.done():
                    self._opened.set_result(None)
            return await self._reader.pump()
        finally:
            self._state = "waiting"
            self._reader.detach()
            # A no-op when already closed. close() in another task makes the pump return first
            # (aiohttp wakes the reader), so this call may be the one that sends its close frame.
            code, message = self._close_frame
            await sock.close(code=code, message=message)
            self._sock = None

    async def _replay(self, sock: Socket, reconnect: bool, resumed: bool) -> None:
        if reconnect:
            for message in self._resubscribe.messages(resumed=resumed):
                await _write(sock, message)
        outbox = self._outbox
        while outbox:
            await _write(sock, outbox.peek())
            outbox.pop()  # only now: a failed write keeps it for the next socket

    # -- decisions ----------------------------------------------------------------------------
    def _socket_closed(
        self, code: int, reason: str, by_server: bool, error: BaseException | None
    ) -> bool:
        """Report a closed socket; returns True to reconnect, else ends the client."""
        unsent = len(self._outbox)
        final = outcomes.final_close(code, reason, unsent=unsent, overrides=self._close_codes)
        if final is not None:
            self._end(final, by_server=by_server, error=error)
            return False
        log.warning("socket closed (%d %s); reconnecting", code, reason or close_meaning(code))
        self._listeners.emit("close", Close(code, reason, by_server, True, error))
        return True

    def _dial_failed_for_good(self, exc: BaseException) -> bool:
        """Classify a failed attempt; ends the client and returns True when it is final."""
        unsent = len(self._outbox)
        final = outcomes.final_dial_failure(exc, unsent=unsent, overrides=self._http_statuses)
        if final is None:
            log.debug("connection attempt failed: %r", exc)
            return False
        self._end(final, by_server=True, error=exc)
        return True

    def _end(
        self, exc: ConnectionClosed, *, by_server: bool = False, error: BaseException | None = None
    ) -> None:
        """The client is over: record why, wake every waiter, emit the final ``close``."""
        if self._final is not None:
            return
        self._final = exc
        self._state = "closed"
        self._inbox.end(exc)
        opened = self._opened
        if opened is not None and not opened.done():
            opened.set_exception(exc)
            opened.exception()  # retrieved here: nobody may be awaiting start() any more
        self._done.set()
        self._listeners.emit("close", Close(exc.code, exc.reason, by_server, False, error))

    async def _release_session(self) -> None:
        session = self._session
        if self._owns_session and session is not None and not session.closed:
            await session.close()


async def _write(sock: Socket, message: Data) -> None:
    if isinstance(message, str):
        await sock.send_str(message)
    else:
        await sock.send_bytes(message)


def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] = (),
    backoff: Backoff | None = None,
    close_codes: Mapping[int, Action] | None = None,
    http_statuses: Mapping[int, Action] | None = None,
    queue_size: int = 1000,
    max_queue: int = 4096,
    heartbeat: float | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    max_message_bytes: int = 4 * 1024 * 1024,
    ssl: SSLContext | bool = True,
    session: aiohttp.ClientSession | None = None,
    recovery: bool = False,
    recovery_timeout: float = 10.0,
) -> ClientConnection:
    """A reconnecting client for ``url`` (``ws://`` or ``wss://``); nothing happens until it is
    awaited or entered::

        async with hubbub.client.connect("ws://127.0.0.1:8080/dev") as ws:
            ws.on_reconnect_send({"action": "join", "room": "lobby"})
            await ws.send_json({"action": "join", "room": "lobby"})
            async for message in ws:
                ...

    Options: ``headers`` and ``subprotocols`` for the handshake; ``backoff`` (delays, give-up);
    ``close_codes`` / ``http_statuses`` override the reconnect policy per code
    (``{1000: "reconnect"}``); ``queue_size`` bounds sends queued while disconnected;
    ``max_queue`` bounds received messages not read yet (the socket is not read while full);
    ``heartbeat`` sends a ping every N seconds and treats a missing pong as a lost connection (off
    by default: AWS API Gateway does not promise to answer pings); ``open_timeout`` bounds each
    handshake, ``close_timeout`` each closing handshake; ``session`` reuses an aiohttp session.

    ``recovery=True`` speaks hubbub's recovery protocol (``docs/recovery.md``): after a reconnect
    the gateway rejoins the rooms and replays the room messages missed meanwhile (exactly once, in
    order), and the ``recovered`` / ``not_recovered`` event says whether anything was lost;
    ``recovery_timeout`` bounds the wait for that answer before queued sends are flushed anyway.
    """
    return ClientConnection(
        url,
        headers=headers,
        subprotocols=subprotocols,
        backoff=backoff,
        close_codes=close_codes,
        http_statuses=http_statuses,
        queue_size=queue_size,
        max_queue=max_queue,
        heartbeat=heartbeat,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        max_message_bytes=max_message_bytes,
        ssl=ssl,
        session=session,
        recovery=recovery,
        recovery_timeout=recovery_timeout,
    )

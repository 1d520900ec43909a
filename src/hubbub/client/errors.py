"""Exceptions the client raises.

    HubbubError                      (hubbub.errors: the root of every hubbub exception)
    └── ClientError
        ├── ConnectionClosed             the client is closed for good; nothing more will arrive
        │   ├── ConnectionClosedOK           close() was called, or the server closed with 1000
        │   ├── ConnectionClosedError        the server closed with a code the policy calls final
        │   ├── HandshakeRejected            the upgrade was refused with a final HTTP status
        │   └── RetriesExhausted             the give-up policy ended an outage
        └── SendQueueFull                send() while disconnected and the outgoing queue is full

``recv()``, ``send()`` and ``wait_closed()`` raise the same :class:`ConnectionClosed` once the
client is closed (``recv()`` only after every message received before is consumed). Messages that
were queued but never sent stay readable with ``unsent()``: nothing is dropped silently.

Misusing the API (a bad option value, an invalid URL) raises :class:`ValueError` or
:class:`TypeError` instead, at the call that got it wrong.
"""

from __future__ import annotations

from hubbub.errors import HubbubError

__all__ = [
    "ClientError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeRejected",
    "RetriesExhausted",
    "SendQueueFull",
]


class ClientError(HubbubError):
    """Root of the client's exceptions."""


class ConnectionClosed(ClientError):
    """The client connection ended and will not reconnect.

    ``code`` and ``reason`` are the close code and reason of the last socket (1006 when no close
    frame arrived), ``unsent`` the number of queued messages that were never sent.
    """

    def __init__(self, message: str, *, code: int, reason: str = "", unsent: int = 0) -> None:
        if unsent:
            message = f"{message}; {unsent} queued message(s) not sent (see unsent())"
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.unsent = unsent


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally: ``close()`` was called, or the server closed with 1000."""


class ConnectionClosedError(ConnectionClosed):
    """The server closed with a code the reconnect policy calls final (1008, 4000-4999, ...)."""


class HandshakeRejected(ConnectionClosed):
    """The server answered the WebSocket upgrade with an HTTP ``status`` the policy calls final."""

    def __init__(self, message: str, *, status: int, unsent: int = 0) -> None:
        # No socket was opened: report the close code a browser would see (1006).
        super().__init__(message, code=1006, reason=f"HTTP {status}", unsent=unsent)
        self.status = status


class RetriesExhausted(ConnectionClosed):
    """The give-up policy (``max_attempts`` / ``max_elapsed``) ended an outage.

    ``attempts`` connection attempts failed over ``elapsed`` seconds; ``__cause__`` is the last
    failure.
    """

    def __init__(
        self, message: str, *, attempts: int, elapsed: float, code: int = 1006, unsent: int = 0
    ) -> None:
        super().__init__(message, code=code, unsent=unsent)
        self.attempts = attempts
        self.elapsed = elapsed


class SendQueueFull(ClientError):
    """``send()`` while disconnected, and the outgoing queue already holds ``limit`` messages."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the outgoing queue is full ({limit} messages queued while disconnected); "
            "raise queue_size or wait for the 'reconnected' event"
        )
        self.limit = limit

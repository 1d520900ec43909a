"""When to reconnect and how long to wait: pure data and arithmetic, no asyncio, no sockets.

Theory of operation. A client that lost its socket asks two questions:

1. *Should I reconnect at all?* :func:`close_action` answers from the close code the socket ended
   with, :func:`status_action` from the HTTP status a refused handshake answered with. Both read a
   table (:data:`CLOSE_RULES`, :data:`STATUS_RULES`) that ``docs/clients.md`` reproduces, so the
   documented policy and the code cannot drift apart (a test compares them). ``"stop"`` means the
   server made a decision that a retry would only repeat (an application code, an authorizer's
   401/403, a message the application should not have sent); ``"reconnect"`` means the cause is
   transient (a drain, a restart, a lost TCP connection, an overloaded server).
2. *How long do I wait?* :class:`Backoff` draws each delay with **full jitter**:
   ``uniform(0, min(cap, base * 2**retry))``. Jitter over the whole interval (not a fixed delay
   plus a little noise) spreads the clients a restarted gateway drops over the whole window, so
   they do not come back as one storm; the cap bounds the wait once the server is back.

Retries are counted per *outage*: the counter goes back to zero only after a connection stayed up
for ``stable_after`` seconds, so a server that accepts and immediately drops every socket is
retried with growing delays instead of at full speed. A refusal that carries ``Retry-After``
(hubbub's 429 and 503 do) moves the jitter window to start there. The give-up policy
(``max_attempts``, ``max_elapsed``) is checked before every retry.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CLOSE_RULES",
    "RECONNECT",
    "STATUS_RULES",
    "STOP",
    "Action",
    "Backoff",
    "Rule",
    "close_action",
    "close_meaning",
    "status_action",
]

Action = Literal["reconnect", "stop"]
RECONNECT: Final = "reconnect"
STOP: Final = "stop"

# Close frames without a status code arrive as 1005 ("no status received", RFC 6455 §7.1.5).
NO_STATUS: Final = 1005


@dataclass(frozen=True, slots=True)
class Rule:
    """``first``..``last`` (inclusive) map to ``action``; ``meaning`` is the documented reason."""

    first: int
    last: int
    action: Action
    meaning: str

    def matches(self, value: int) -> bool:
        return self.first <= value <= self.last


# The first matching rule wins, so single codes come before the ranges that contain them.
CLOSE_RULES: Final[tuple[Rule, ...]] = (
    Rule(1000, 1000, STOP, "normal closure: the server closed on purpose (AWS DeleteConnection)"),
    Rule(1001, 1001, RECONNECT, "going away: server drain or restart, idle or maximum duration"),
    Rule(1002, 1002, RECONNECT, "protocol error (often a proxy in the way)"),
    Rule(1003, 1003, STOP, "unsupported data: the application sent binary to a text-only API"),
    Rule(1005, 1005, RECONNECT, "no status code in the close frame"),
    Rule(1006, 1006, RECONNECT, "abnormal closure: TCP connection lost, or heartbeat timed out"),
    Rule(1007, 1007, STOP, "invalid payload data: the application sent invalid text"),
    Rule(1008, 1008, STOP, "policy violation (hubbub: message rate exceeded)"),
    Rule(1009, 1009, STOP, "message too big: the application sent more than the server allows"),
    Rule(1010, 1010, STOP, "mandatory extension missing"),
    Rule(1011, 1011, RECONNECT, "internal server error"),
    Rule(1012, 1012, RECONNECT, "service restart"),
    Rule(1013, 1013, RECONNECT, "try again later (hubbub: slow consumer dropped)"),
    Rule(1014, 1014, RECONNECT, "bad gateway"),
    Rule(1015, 1015, STOP, "TLS handshake failure"),
    Rule(3000, 3000, STOP, "unauthorized (IANA registry)"),
    Rule(3003, 3003, STOP, "forbidden (IANA registry)"),
    Rule(3000, 3999, RECONNECT, "other registered library and framework codes"),
    Rule(4000, 4999, STOP, "application codes: the application decided"),
    Rule(0, 65535, RECONNECT, "any other code"),
)

# HTTP statuses that refuse the WebSocket upgrade (on AWS: what $connect or the authorizer said).
STATUS_RULES: Final[tuple[Rule, ...]] = (
    Rule(401, 401, STOP, "unauthorized: the authorizer or $connect refused the credentials"),
    Rule(403, 403, STOP, "forbidden: the authorizer or $connect refused the connection"),
    Rule(408, 408, RECONNECT, "request timeout"),
    Rule(425, 425, RECONNECT, "too early"),
    Rule(429, 429, RECONNECT, "too many requests: throttled"),
    Rule(400, 499, STOP, "other client errors (bad URL or stage, $connect said no)"),
    Rule(500, 599, RECONNECT, "server errors: handler failed (502), draining or overloaded (503)"),
    Rule(0, 999, STOP, "anything else (redirects, informational)"),
)


def _lookup(rules: tuple[Rule, ...], value: int) -> Rule:
    for rule in rules:
        if rule.matches(value):
            return rule
    return rules[-1]


def close_action(code: int, overrides: Mapping[int, Action] | None = None) -> Action:
    """Reconnect or stop after the server closed the socket with ``code``.

    ``overrides`` maps single codes to an action and wins over :data:`CLOSE_RULES`. A close the
    client itself asked for (``close()``) never reconnects and is not decided here.
    """
    if overrides and code in overrides:
        return overrides[code]
    return _lookup(CLOSE_RULES, code).action


def close_meaning(code: int) -> str:
    """The documented meaning of a close code (for logs and error messages)."""
    return _lookup(CLOSE_RULES, code).meaning


def status_action(status: int, overrides: Mapping[int, Action] | None = None) -> Action:
    """Reconnect or stop after the server refused the upgrade with HTTP ``status``."""
    if overrides and status in overrides:
        return overrides[status]
    return _lookup(STATUS_RULES, status).action


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, and when to give up.

    ``base`` and ``cap`` are seconds: the ``retry``-th delay of an outage (counting from 0) is
    uniform in ``[0, min(cap, base * 2**retry)]``. ``max_attempts`` bounds the connection attempts
    of one outage, ``max_elapsed`` its duration in seconds; ``None`` means no bound. A connection
    that stays up ``stable_after`` seconds ends the outage (the retry count starts again at 0).
    """

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int | None = None
    max_elapsed: float | None = None
    stable_after: float = 5.0

    def __post_init__(self) -> None:
        # Misuse of the API is a ValueError at construction, not a surprise at the first outage.
        if not (self.base > 0 and math.isfinite(self.base)):
            raise ValueError(f"Backoff.base must be a positive number of seconds, got {self.base}")
        if not (self.cap >= self.base and math.isfinite(self.cap)):
            raise ValueError(f"Backoff.cap must be finite and >= base, got {self.cap}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"Backoff.max_attempts must be >= 1 or None, got {self.max_attempts}")
        if self.max_elapsed is not None and not self.max_elapsed >= 0:
            raise ValueError(f"Backoff.max_elapsed must be >= 0 or None, got {self.max_elapsed}")
        if not self.stable_after >= 0:
            raise ValueError(f"Backoff.stable_after must be >= 0, got {self.stable_after}")

    def ceiling(self, retry: int) -> float:
        """The upper bound of the ``retry``-th delay: ``min(cap, base * 2**retry)``."""
        if retry < 0:
            raise ValueError(f"retry must be >= 0, got {retry}")
        # ldexp computes base * 2**retry exactly; clamping the exponent keeps it from overflowing
        # (2**64 times any positive base is already far past any sensible cap).
        return min(self.cap, math.ldexp(self.base, min(retry, 64)))

    def delay(
        self,
        retry: int,
        uniform: Callable[[float, float], float] = random.uniform,
        *,
        at_least: float = 0.0,
    ) -> float:
        """Draw the ``retry``-th delay, uniform in ``[0, ceiling(retry)]`` (full jitter).

        ``at_least`` (a server's ``Retry-After``) shifts the window to start there; the result
        never exceeds ``cap``, so the window shrinks instead of pushing past it.
        """
        floor = min(max(0.0, at_least), self.cap)
        high = min(self.ceiling(retry), self.cap - floor)
        # Clamp: random.uniform(a, b) may return b + rounding error for some floats.
        return floor + min(high, max(0.0, uniform(0.0, high)))

    def exhausted(self, attempts: int, elapsed: float) -> bool:
        """True when an outage with ``attempts`` failed attempts lasting ``elapsed`` s must end."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.max_elapsed is not None and elapsed >= self.max_elapsed

    def clamp(self, delay: float, elapsed: float) -> float:
        """Shorten ``delay`` so the next attempt is not later than ``max_elapsed`` allows."""
        if self.max_elapsed is None:
            return delay
        return max(0.0, min(delay, self.max_elapsed - elapsed))

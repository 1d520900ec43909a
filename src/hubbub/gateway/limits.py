"""Admission and rate limits: who may connect, and how fast a connection may send.

Handshake checks run before any authorizer or ``$connect`` handler, cheapest first:
origin (403), connection cap (503), global and per-IP connect rates (429). Message rates are
per connection: over the limit a message is answered with AWS's error-frame shape
(``{"message": "Too Many Requests", ...}``) instead of being routed, and a connection that keeps
going past the limit for ``ABUSE_STRIKES`` messages in a row is closed with 1008.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence

from hubbub.wire.http import HttpResponse

ABUSE_STRIKES = 20  # then closed with hubbub.wire.close.RATE_EXCEEDED
TOO_MANY_REQUESTS = "Too Many Requests"


class TokenBucket:
    """``rate`` tokens per second, bursts up to ``burst``."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self._rate = rate
        self._burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self._burst
        self._stamp = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        # max(): a caller's ``now`` read just before this bucket was made is earlier than its
        # stamp; a negative refill would refuse the first request of a rate below 1/s.
        refill = max(0.0, now - self._stamp) * self._rate
        self._tokens = min(self._burst, self._tokens + refill)
        self._stamp = max(now, self._stamp)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def idle_since(self, now: float) -> float:
        return now - self._stamp


def _refusal(status: int, message: str) -> HttpResponse:
    headers = {"Content-Type": "application/json"}
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return HttpResponse(status, headers, f'{{"message": "{message}"}}'.encode())


class Admission:
    """Handshake-time limits. ``check`` returns a refusal, or None to proceed."""

    MAX_TRACKED_IPS = 10_000

    def __init__(
        self,
        *,
        allowed_origins: Sequence[str],
        max_connections: int,
        connect_rate: float,
        connect_rate_per_ip: float,
    ) -> None:
        self._origins = [o.rstrip("/").lower() for o in allowed_origins]
        self._max_connections = max_connections
        self._global = TokenBucket(connect_rate) if connect_rate > 0 else None
        self._per_ip_rate = connect_rate_per_ip
        self._per_ip: dict[str, TokenBucket] = {}
        self.pending = 0  # handshakes admitted whose connection is not open yet

    @property
    def checks_origin(self) -> bool:
        """Whether :meth:`check` looks at ``origin`` at all (an origin list is configured)."""
        return bool(self._origins)

    def origin_allowed(self, origin: str | None) -> bool:
        # Browsers always send Origin; other clients usually don't, and cannot be forged into
        # a cross-site request by a page, so a missing Origin is not refused.
        if not self._origins or origin is None:
            return True
        origin = origin.rstrip("/").lower()
        return any(fnmatch.fnmatchcase(origin, pattern) for pattern in self._origins)

    def check(
        self, *, origin: str | None, remote: str, open_connections: int
    ) -> HttpResponse | None:
        if not self.origin_allowed(origin):
            return _refusal(403, "Forbidden: origin not allowed")
        if self._max_connections and open_connections + self.pending >= self._max_connections:
            return _refusal(503, "Service Unavailable: connection limit reached")
        now = time.monotonic()
        if self._global is not None and not self._global.allow(now):
            return _refusal(429, TOO_MANY_REQUESTS)
        if self._per_ip_rate > 0:
            bucket = self._per_ip.get(remote)
            if bucket is None:
                if len(self._per_ip) >= self.MAX_TRACKED_IPS:
                    self._prune(now)
                bucket = self._per_ip[remote] = TokenBucket(self._per_ip_rate)
            if not bucket.allow(now):
                return _refusal(429, TOO_MANY_REQUESTS)
        return None

    def _prune(self, now: float) -> None:
        # Buckets idle long enough to be full again carry no state worth keeping.
        horizon = max(1.0, 1.0 / self._per_ip_rate) * 2
        for ip in [ip for ip, b in self._per_ip.items() if b.idle_since(now) > horizon]:
            del self._per_ip[ip]
        if len(self._per_ip) >= self.MAX_TRACKED_IPS:  # all busy: forget the oldest half
            for ip in list(self._per_ip)[: self.MAX_TRACKED_IPS // 2]:
                del self._per_ip[ip]

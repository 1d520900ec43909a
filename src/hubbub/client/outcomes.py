"""How a socket or a connection attempt ended, turned into "reconnect" or the client's final error.

No asyncio here: each function looks at a close code or a failed attempt's exception, applies the
policy tables of :mod:`hubbub.client.backoff`, and returns ``None`` (reconnect) or the
:class:`~hubbub.client.errors.ConnectionClosed` that ends the client, with a message that says
what happened and why it is final.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from hubbub.client.backoff import RECONNECT, Action, close_action, close_meaning, status_action
from hubbub.client.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRejected,
    RetriesExhausted,
)

__all__ = ["final_close", "final_dial_failure", "gave_up", "retry_after"]

ABNORMAL = 1006


def final_close(
    code: int, reason: str, *, unsent: int, overrides: Mapping[int, Action] | None = None
) -> ConnectionClosed | None:
    """``None`` when a socket closed with ``code`` should reconnect, else the final error."""
    if close_action(code, overrides) == RECONNECT:
        return None
    described = f"{code} {reason}".strip()
    if code == 1000:
        return ConnectionClosedOK(
            f"the server closed the connection ({described})",
            code=code,
            reason=reason,
            unsent=unsent,
        )
    return ConnectionClosedError(
        f"the connection was closed ({described}: {close_meaning(code)}); "
        "this close code does not reconnect",
        code=code,
        reason=reason,
        unsent=unsent,
    )


def final_dial_failure(
    exc: BaseException, *, unsent: int, overrides: Mapping[int, Action] | None = None
) -> ConnectionClosed | None:
    """``None`` when a failed connection attempt should be retried, else the final error.

    Refusals go by their HTTP status; network failures (refused, reset, DNS, timeouts) and
    malformed upgrade answers (status 101) are retried; TLS and URL errors are final.
    """
    final: ConnectionClosed | None = None
    if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status != 101:
        if status_action(exc.status, overrides) != RECONNECT:
            final = HandshakeRejected(
                f"the server refused the WebSocket upgrade with HTTP {exc.status}",
                status=exc.status,
                unsent=unsent,
            )
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        final = ConnectionClosedError(
            f"TLS failed: {exc}", code=1015, reason="TLS handshake failure", unsent=unsent
        )
    elif isinstance(exc, aiohttp.InvalidURL):
        final = ConnectionClosedError(f"invalid URL: {exc}", code=ABNORMAL, unsent=unsent)
    if final is not None:
        final.__cause__ = exc
    return final


def gave_up(
    url: str, attempts: int, elapsed: float, error: BaseException | None, *, unsent: int
) -> RetriesExhausted:
    """The error for an outage the give-up policy ended; its cause is the last failure."""
    exc = RetriesExhausted(
        f"gave up reconnecting to {url} after {attempts} attempt(s) in {elapsed:.1f}s"
        + (f"; last error: {error!r}" if error is not None else ""),
        attempts=attempts,
        elapsed=elapsed,
        unsent=unsent,
    )
    exc.__cause__ = error
    return exc


def retry_after(exc: BaseException) -> float:
    """The delta-seconds of a refusal's ``Retry-After`` header (HTTP dates are ignored), or 0."""
    if not isinstance(exc, aiohttp.ClientResponseError) or exc.headers is None:
        return 0.0
    value = exc.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else 0.0

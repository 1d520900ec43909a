"""Turning a close code or a failed attempt into "reconnect" or the client's final error."""

from __future__ import annotations

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from hubbub.client import (
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRejected,
    RetriesExhausted,
)
from hubbub.client.outcomes import final_close, final_dial_failure, gave_up, retry_after

URL_ = URL("ws://127.0.0.1:1/dev")


def refusal(status: int, **headers: str) -> aiohttp.WSServerHandshakeError:
    info = aiohttp.RequestInfo(URL_, "GET", CIMultiDictProxy(CIMultiDict()), URL_)
    return aiohttp.WSServerHandshakeError(
        info, (), status=status, message="refused", headers=CIMultiDict(headers)
    )


def test_a_reconnecting_close_code_has_no_final_error() -> None:
    assert final_close(1006, "", unsent=0) is None


def test_a_server_1000_is_a_clean_end() -> None:
    exc = final_close(1000, "Connection Closed Normally", unsent=0)
    assert isinstance(exc, ConnectionClosedOK)
    assert str(exc) == "the server closed the connection (1000 Connection Closed Normally)"


def test_a_final_code_says_what_it_means_and_counts_the_unsent() -> None:
    exc = final_close(4001, "kicked", unsent=3)
    assert isinstance(exc, ConnectionClosedError)
    assert (exc.code, exc.reason, exc.unsent) == (4001, "kicked", 3)
    assert "application codes" in str(exc)
    assert "3 queued message(s) not sent" in str(exc)


def test_close_overrides_apply() -> None:
    assert final_close(1000, "", unsent=0, overrides={1000: "reconnect"}) is None
    assert final_close(1006, "", unsent=0, overrides={1006: "stop"}) is not None


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        aiohttp.ServerDisconnectedError(),
        refusal(503),
        refusal(429),
        refusal(101),  # a malformed upgrade answer: retried like a protocol error
    ],
)
def test_transient_attempt_failures_are_retried(exc: BaseException) -> None:
    assert final_dial_failure(exc, unsent=0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_final_refusals_become_handshake_rejected(status: int) -> None:
    exc = refusal(status)
    final = final_dial_failure(exc, unsent=0)
    assert isinstance(final, HandshakeRejected)
    assert final.status == status
    assert final.__cause__ is exc


def test_status_overrides_apply() -> None:
    assert final_dial_failure(refusal(401), unsent=0, overrides={401: "reconnect"}) is None


def test_an_invalid_url_is_final() -> None:
    final = final_dial_failure(aiohttp.InvalidURL("ws://bad host"), unsent=0)
    assert isinstance(final, ConnectionClosedError)


def test_giving_up_names_the_attempts_and_keeps_the_cause() -> None:
    cause = ConnectionRefusedError(111, "refused")
    exc = gave_up("ws://x/dev", 4, 12.34, cause, unsent=0)
    assert isinstance(exc, RetriesExhausted)
    assert (exc.attempts, exc.elapsed, exc.__cause__) == (4, 12.34, cause)
    assert str(exc).startswith("gave up reconnecting to ws://x/dev after 4 attempt(s) in 12.3s")


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"Retry-After": " 120 "}, 120.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"Retry-After": "-3"}, 0.0),
        ({}, 0.0),
    ],
)
def test_retry_after_reads_delta_seconds_only(headers: dict[str, str], seconds: float) -> None:
    assert retry_after(refusal(503, **headers)) == seconds


def test_retry_after_of_a_network_error_is_zero() -> None:
    assert retry_after(OSError("unreachable")) == 0.0

"""The idle timeout and maximum duration of connections (one sweep for all), on fake sockets.

tests/gateway/test_limits.py checks the same closes on real sockets. Here a connection's
``connected_at`` and ``last_active`` are set in the past or the future instead of waiting, so
only the tests of the sweep itself wait (for a close or a move, never for a fixed time).
"""

from __future__ import annotations

import asyncio
import math

from hubbub.gateway.connection import Timeouts, now_ms
from hubbub.wire.close import IDLE, MAX_DURATION
from tests.gateway.unit.fakes import Peer
from tests.helpers import eventually


async def _closed_with(peer: Peer) -> tuple[int, str]:
    await eventually(lambda: peer.ws.closes, message="the close")
    return peer.conn.close_status


async def test_an_idle_connection_is_closed_when_added_past_its_deadline() -> None:
    timeouts = Timeouts(idle_timeout=60, max_duration=0)
    peer = Peer("a")
    peer.conn.last_active = now_ms() - 61_000
    timeouts.add(peer.conn)

    assert await _closed_with(peer) == IDLE
    assert peer.ws.closes == [(1001, b"Going away")]
    assert len(timeouts) == 0
    timeouts.close()


async def test_a_connection_past_its_maximum_duration_is_closed_whatever_its_activity() -> None:
    timeouts = Timeouts(idle_timeout=600, max_duration=7200)
    peer = Peer("a", connected_at=now_ms() - 7_201_000)
    peer.conn.last_active = now_ms()  # it has just sent a message
    timeouts.add(peer.conn)

    assert await _closed_with(peer) == MAX_DURATION
    assert MAX_DURATION == (1001, "Maximum connection duration reached")
    timeouts.close()


async def test_a_connection_waits_in_the_bucket_of_its_earliest_deadline_never_before() -> None:
    timeouts = Timeouts(idle_timeout=60, max_duration=7200)  # a 1 s tick
    peer = Peer("a")
    timeouts.add(peer.conn)

    assert len(timeouts) == 1
    assert peer.ws.closes == []
    assert peer.conn.due == math.ceil((peer.conn.last_active + 60_000) / 1000)
    timeouts.remove(peer.conn)
    assert len(timeouts) == 0
    assert peer.conn.due is None
    timeouts.remove(peer.conn)  # a second remove (closing twice) is harmless
    timeouts.close()


async def test_timeouts_of_zero_watch_nothing() -> None:
    timeouts = Timeouts(idle_timeout=0, max_duration=0)
    peer = Peer("a", connected_at=0)
    peer.conn.last_active = 0
    timeouts.add(peer.conn)
    await asyncio.sleep(0)

    assert len(timeouts) == 0
    assert peer.ws.closes == []


async def test_the_sweep_closes_a_connection_that_went_idle() -> None:
    timeouts = Timeouts(idle_timeout=0.05, max_duration=0)
    quiet, busy = Peer("quiet"), Peer("busy")
    for peer in (quiet, busy):
        timeouts.add(peer.conn)
    busy.conn.last_active = now_ms() + 3_600_000  # keeps sending, as far as the sweep can tell

    assert await _closed_with(quiet) == IDLE
    assert busy.ws.closes == []
    assert len(timeouts) == 1  # the busy one was moved to its new deadline's bucket, not closed
    timeouts.close()


async def test_the_sweep_moves_a_connection_whose_activity_postponed_its_deadline() -> None:
    timeouts = Timeouts(idle_timeout=0.05, max_duration=0)
    peer = Peer("a")
    timeouts.add(peer.conn)
    first = peer.conn.due
    assert first is not None
    peer.conn.last_active = now_ms() + 3_600_000

    await eventually(lambda: peer.conn.due != first, message="the move")
    assert peer.conn.due is not None
    assert peer.conn.due > first
    assert peer.ws.closes == []
    timeouts.close()


async def test_the_sweep_closes_at_the_maximum_duration_despite_activity() -> None:
    timeouts = Timeouts(idle_timeout=600, max_duration=0.05)
    peer = Peer("a")
    timeouts.add(peer.conn)
    peer.conn.last_active = now_ms() + 3_600_000

    assert await _closed_with(peer) == MAX_DURATION
    timeouts.close()


async def test_a_connection_closing_for_another_reason_keeps_its_first_close() -> None:
    timeouts = Timeouts(idle_timeout=60, max_duration=0)
    peer = Peer("a")
    await peer.conn.close(1000, "Connection Closed Normally")
    peer.conn.last_active = now_ms() - 61_000
    timeouts.add(peer.conn)
    await asyncio.sleep(0)

    assert peer.ws.closes == [(1000, b"Connection Closed Normally")]
    assert peer.conn.close_status == (1000, "Connection Closed Normally")
    timeouts.close()

"""The Resumer's keeper (hubbub.gateway.recovery): the rooms a recovery-enabled connection of this
node is in keep their Redis history; a history that is down is a warning, and the next round
tries again. Real Redis; the connections are the hub's own objects on fake sockets."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from hubbub.gateway.hub import Hub
from hubbub.gateway.recovery import Resumer
from hubbub.store.recovery import MemoryRecovery
from hubbub.store.recovery_redis import RedisRecovery
from hubbub.store.redis_connect import connect
from tests.gateway.unit.fakes import Peer
from tests.store.redis_server import delete_prefix, unique_prefix

pytestmark = pytest.mark.redis


def _hub() -> Hub:
    plain, recovering = Peer("p"), Peer("r")
    recovering.conn.session = "token"
    hub = Hub(send_queue_bytes=1000)
    for peer in (plain, recovering):
        hub.add(peer.conn)
        hub.join("lobby", peer.conn)
    hub.join("plain", plain.conn)
    return hub


async def test_the_keeper_keeps_the_rooms_of_this_node_s_recovery_members(redis_url: str) -> None:
    prefix = unique_prefix()
    history = RedisRecovery(redis_url, key_prefix=prefix, size=10, ttl=30)
    raw = connect(redis_url)
    try:
        resumer = Resumer(history, cast(Any, None), _hub(), session_ttl=30)
        assert history.keep_interval == 10
        assert await resumer.keep() == 1
        assert await raw.ttl(f"{prefix}{{room:lobby}}:epoch") == 30
        assert not await raw.exists(f"{prefix}{{room:plain}}:epoch")
        resumer.start()  # the loop: started and stopped cleanly
        await resumer.close()
    finally:
        await delete_prefix(redis_url, prefix)
        await raw.aclose()
        await history.close()


async def test_a_history_that_is_down_is_a_warning_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    history = RedisRecovery("redis://127.0.0.1:1/0", key_prefix="k:", size=10, ttl=30)
    try:
        resumer = Resumer(history, cast(Any, None), _hub(), session_ttl=30)
        with caplog.at_level(logging.WARNING, logger="hubbub.recovery"):
            assert await resumer.keep() == 0
        assert "room history not kept" in caplog.text
    finally:
        await history.close()


async def test_a_history_of_one_node_needs_no_keeper() -> None:
    resumer = Resumer(MemoryRecovery(size=10, ttl=30), cast(Any, None), _hub(), session_ttl=30)
    resumer.start()
    assert resumer._keeper is None
    await resumer.close()

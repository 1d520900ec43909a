"""The bus subscriber on the lean connection (``hubbub.store.redis_subscriber``), on real
sockets: order, liveness (PING when idle, ConnectionError when silent or killed), bounded
buffering, and a store that resubscribes after its subscription was killed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.store import Delivery
from hubbub.store import redis_subscriber as subscriber
from hubbub.store.redis_connect import connect
from hubbub.store.redis_subscriber import WireSubscription
from hubbub.store.redis_wire import Endpoint, endpoint_of
from scripts.ensure_redis import RedisUnavailable, start_redis
from tests.helpers import eventually
from tests.store.conftest import _cluster, record
from tests.store.redis_server import unique_prefix

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def private_url() -> Iterator[str]:
    """A private Redis: these tests kill every pub/sub client of their server."""
    try:
        server = start_redis()
    except RedisUnavailable as exc:
        pytest.fail(f"needs redis-server: {exc}")
    yield server.url
    server.close()


@pytest.fixture
async def publisher(private_url: str) -> AsyncIterator[Any]:
    client = connect(private_url)
    yield client
    await client.aclose()


def endpoint(url: str) -> Endpoint:
    found = endpoint_of(connect(url))
    assert found is not None
    return found


async def pump_until(
    sub: WireSubscription, got: list[bytes], done: Callable[[], bool], interval: float = 1.0
) -> None:
    async def receive(data: bytes) -> None:
        got.append(data)

    await asyncio.wait_for(sub.pump(receive, interval, done), 10)


async def test_messages_arrive_in_order_on_every_channel(private_url: str, publisher: Any) -> None:
    one, two = unique_prefix() + "one", unique_prefix() + "two"
    sub = WireSubscription(endpoint(private_url))
    await sub.subscribe(one, two)
    try:
        client = publisher
        counts = await asyncio.gather(
            *(client.execute_command("PUBSUB", "NUMSUB", ch) for ch in (one, two))
        )
        assert [c[1] for c in counts] == [1, 1]  # confirmed by the server before subscribe returns
        sent = [b"%d" % i for i in range(2000)]
        for i, data in enumerate(sent):
            await client.publish(one if i % 2 else two, data)
        got: list[bytes] = []
        await pump_until(sub, got, lambda: len(got) == len(sent))
        assert got == sent
    finally:
        await sub.aclose()


async def test_a_killed_subscription_ends_the_pump_with_connection_error(
    private_url: str, publisher: Any
) -> None:
    channel = unique_prefix() + "ch"
    sub = WireSubscription(endpoint(private_url))
    await sub.subscribe(channel)
    client = publisher
    try:
        got: list[bytes] = []
        pumping = asyncio.ensure_future(pump_until(sub, got, lambda: False))
        await client.publish(channel, b"before")
        await eventually(lambda: got == [b"before"], message="delivered")
        killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1
        with pytest.raises(RedisConnectionError):
            await pumping
    finally:
        await sub.aclose()


async def test_an_idle_subscription_pings_and_stays_up(private_url: str) -> None:
    sub = WireSubscription(endpoint(private_url))
    await sub.subscribe(unique_prefix() + "quiet")
    try:
        started = time.monotonic()
        # Ten intervals without a message: the PONGs keep it alive.
        await pump_until(sub, [], lambda: time.monotonic() - started > 1.0, interval=0.1)
    except TimeoutError:
        pytest.fail("the pump did not stop")
    finally:
        await sub.aclose()


class _Confirms(asyncio.Protocol):
    """A server that confirms one SUBSCRIBE (when ``confirm``), then never says a word."""

    def __init__(self, confirm: bool) -> None:
        self.confirm = confirm

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.confirm and b"SUBSCRIBE" in data:
            self.transport.write(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
            self.confirm = False


async def _silent_server(confirm: bool) -> tuple[asyncio.Server, Endpoint]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Confirms(confirm), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Endpoint(name=f"127.0.0.1:{port}", host="127.0.0.1", port=port, timeout=0.3)


async def test_a_silent_connection_is_declared_dead_within_two_intervals() -> None:
    server, where = await _silent_server(confirm=True)
    sub = WireSubscription(where)
    try:
        await sub.subscribe("ch")
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="silent"):
            await pump_until(sub, [], lambda: False, interval=0.2)
        assert 0.35 < time.monotonic() - started < 1.5  # PING after one, dead after two
    finally:
        await sub.aclose()
        server.close()


async def test_an_unconfirmed_subscribe_times_out() -> None:
    server, where = await _silent_server(confirm=False)
    sub = WireSubscription(where)
    try:
        with pytest.raises(RedisTimeoutError):
            await sub.subscribe("ch")
    finally:
        await sub.aclose()
        server.close()


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing(
    private_url: str, publisher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriber, "HIGH_WATER", 50)
    monkeypatch.setattr(subscriber, "LOW_WATER", 10)
    channel = unique_prefix() + "busy"
    sub = WireSubscription(endpoint(private_url))
    await sub.subscribe(channel)
    client = publisher
    try:
        sent = [b"%04d" % i + b"x" * 4000 for i in range(300)]
        async with client.pipeline(transaction=False) as pipe:
            for data in sent:
                pipe.publish(channel, data)
            await pipe.execute()
        protocol: Any = sub._protocol
        got: list[bytes] = []
        most, paused = 0, False

        async def slow(data: bytes) -> None:
            nonlocal most, paused
            most = max(most, len(protocol.messages))
            paused = paused or protocol.paused
            got.append(data)
            await asyncio.sleep(0)

        await asyncio.wait_for(sub.pump(slow, 1.0, lambda: len(got) == len(sent)), 10)
        assert got == sent
        assert paused
        assert most < 200  # reading stopped near the high-water mark, not with all 300 in
    finally:
        await sub.aclose()


async def test_a_store_resubscribes_after_its_subscription_was_killed(private_url: str) -> None:
    async with _cluster(private_url) as open_node:
        a, b = await open_node("node-a"), await open_node("node-b")
        await a.registry.add(record("b1", "node-b"))
        admin = connect(private_url)
        try:
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

            async def delivered() -> bool:
                await a.store.bus.send("node-b", Delivery("connection", "b1", b"again"))
                await asyncio.sleep(0.05)
                return any(d.data == b"again" for d in b.deliveries)

            for _ in range(100):
                if await delivered():
                    break
            else:
                raise AssertionError("node-b did not resubscribe")
            assert b.store.status()["subscribed"]
        finally:
            await admin.aclose()

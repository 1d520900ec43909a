"""The client's buffers without sockets: back-pressure, ending, bounded refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hubbub.client import SendQueueFull
from hubbub.client.queues import Inbox, Outbox


async def test_inbox_returns_messages_in_order() -> None:
    inbox = Inbox(10)
    for item in ("a", b"b", "c"):
        await inbox.put(item)
    assert [await inbox.get() for _ in range(3)] == ["a", b"b", "c"]


async def test_a_full_inbox_holds_the_writer_until_a_read() -> None:
    inbox = Inbox(2)
    await inbox.put("1")
    await inbox.put("2")
    writer = asyncio.create_task(inbox.put("3"))
    await asyncio.sleep(0)  # let the writer reach its wait (one scheduling step, not a delay)
    assert not writer.done()
    assert await inbox.get() == "1"
    await asyncio.wait_for(writer, 1)
    assert len(inbox) == 2


async def test_an_ended_inbox_drains_before_raising() -> None:
    inbox = Inbox(10)
    await inbox.put("last")
    inbox.end(RuntimeError("over"))
    assert await inbox.get() == "last"
    with pytest.raises(RuntimeError, match="over"):
        await inbox.get()


async def test_ending_wakes_a_waiting_reader() -> None:
    inbox = Inbox(10)
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.end(RuntimeError("over"))
    with pytest.raises(RuntimeError, match="over"):
        await asyncio.wait_for(reader, 1)


async def test_the_first_end_wins() -> None:
    inbox = Inbox(1)
    inbox.end(RuntimeError("first"))
    inbox.end(RuntimeError("second"))
    with pytest.raises(RuntimeError, match="first"):
        await inbox.get()


def test_outbox_refuses_past_its_limit_and_keeps_what_it_has() -> None:
    outbox = Outbox(2)
    outbox.append("a")
    outbox.append("b")
    with pytest.raises(SendQueueFull) as info:
        outbox.append("c")
    assert info.value.limit == 2
    assert list(outbox) == ["a", "b"]
    assert outbox.peek() == "a"
    assert outbox.pop() == "a"
    assert list(outbox) == ["b"]


def test_a_zero_outbox_refuses_every_send_while_disconnected() -> None:
    with pytest.raises(SendQueueFull):
        Outbox(0).append("x")


@pytest.mark.parametrize("factory", [lambda: Inbox(0), lambda: Outbox(-1)])
def test_nonsense_sizes_are_usage_errors(factory: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=">="):
        factory()

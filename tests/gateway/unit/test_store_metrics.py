"""The store's operations in /metrics: counted, timed and their failures counted."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.gateway.metrics import Gauges, Metrics, measured_registry, snapshot
from hubbub.store import ConnectionRecord
from hubbub.store.memory import MemoryRegistry


class _FailingRemove(MemoryRegistry):
    async def remove(self, connection_id: str) -> ConnectionRecord | None:
        raise ConnectionError("the store is away")


def _record(connection_id: str) -> ConnectionRecord:
    return ConnectionRecord(connection_id, "n1", 1, 1, "10.0.0.1", "ua")


async def test_calls_failures_and_latency_reach_the_snapshot() -> None:
    metrics = Metrics()
    registry = measured_registry(_FailingRemove(), metrics)
    await registry.add(_record("a"))
    await registry.add(_record("b"))
    with pytest.raises(ConnectionError):
        await registry.remove("a")
    store = snapshot(metrics, Gauges(node="n1"))["store"]
    assert store["add"]["calls"] == 2
    assert store["add"]["errors"] == 0
    assert store["remove"] == {"calls": 1, "errors": 1, "latency": store["remove"]["latency"]}
    latency = store["add"]["latency"]
    assert sum(latency[:-1]) == 2  # two samples in the buckets, then the sum of seconds
    assert latency[-1] >= 0
    # Folded once: a second snapshot counts the same calls, plus the new one.
    await registry.add(_record("c"))
    assert snapshot(metrics, Gauges(node="n1"))["store"]["add"]["calls"] == 3


async def test_a_call_in_progress_is_not_listed_and_a_cancelled_one_is_a_failure() -> None:
    started = asyncio.Event()

    class _Slow(MemoryRegistry):
        async def add(self, record: ConnectionRecord) -> None:
            started.set()
            await asyncio.sleep(10)

    metrics = Metrics()
    registry = measured_registry(_Slow(), metrics)
    task = asyncio.create_task(registry.add(_record("a")))
    await started.wait()
    assert "add" not in snapshot(metrics, Gauges(node="n1"))["store"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert snapshot(metrics, Gauges(node="n1"))["store"]["add"]["errors"] == 1

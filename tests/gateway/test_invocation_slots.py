"""The global invocation cap (Invoker's slots: two counters and a FIFO of waiters).

The cap used to be an asyncio.Semaphore; these pin what it guaranteed: waiters run in arrival
order, a slot freed goes to a waiter and is never lost or doubled, a waiter cancelled in line
(or just as it was handed a slot) leaves no trace, and the cap holds on real sockets.
"""

from __future__ import annotations

import asyncio
import json
from types import ModuleType
from typing import Any

import websockets

from hubbub.gateway.invoke import BUSY, Invoker, Route
from hubbub.integrations.base import LambdaContext
from hubbub.integrations.python import HandlerPool, PythonIntegration
from tests.gateway.conftest import GatewayFactory, routes


async def test_waiters_run_in_arrival_order_and_every_slot_comes_back(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    slow = {"handler": "async_slow", "route_response": True}
    limits = {"max_concurrent_invocations": 2, "max_invocations_per_connection": 100}
    async with gateway(routes=routes(slow=slow), limits=limits) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for tag in ("run-1", "run-2", "wait-1", "wait-2", "refused"):
                seconds = 0.5 if tag.startswith("run") else 0
                await ws.send(json.dumps({"action": "slow", "seconds": seconds, "tag": tag}))
            frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(5)]
            assert sum("Too many concurrent requests" in str(f) for f in frames) == 1
            assert frames.count("async slow done") == 4
            started = [json.loads(e["body"])["tag"] for e in app.EVENTS if e.get("body")]
            assert started == ["run-1", "run-2", "wait-1", "wait-2"]  # FIFO, as the semaphore
            # Every slot came back: two more run at once again, and a third still waits.
            app.EVENTS.clear()
            for tag in ("again-1", "again-2", "again-3"):
                await ws.send(json.dumps({"action": "slow", "seconds": 0.2, "tag": tag}))
            frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
            assert frames == ["async slow done"] * 3
        assert gw.invoker.in_flight == 0


_release = asyncio.Event()


async def _held(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    await _release.wait()
    return {"statusCode": 200, "body": event["name"]}


def _route() -> Route:
    return Route(
        key="r", integration=PythonIntegration("fn", _held, HandlerPool(1, "fn")), timeout=5
    )


def _invoke(invoker: Invoker, name: str, *, queue: bool = False) -> asyncio.Task[Any]:
    return asyncio.ensure_future(
        invoker.invoke(_route(), {"name": name}, connection_id=name, request_id=name, queue=queue)
    )


async def test_a_waiter_cancelled_in_line_leaves_it_and_the_next_one_runs() -> None:
    global _release
    _release = asyncio.Event()
    invoker = Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    holder = _invoke(invoker, "holder")
    await asyncio.sleep(0)
    gone, next_one = _invoke(invoker, "gone"), _invoke(invoker, "next", queue=True)
    await asyncio.sleep(0)
    assert invoker.in_flight == 1
    assert not invoker.can_run_inline()
    gone.cancel()
    await asyncio.sleep(0)
    assert gone.cancelled()
    assert len(invoker._waiters) == 1  # only "next" is still in line
    _release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(holder, next_one), 5)
    assert [o.result.body for o in outcomes] == ["holder", "next"]
    assert invoker.in_flight == 0
    assert invoker.can_run_inline()
    assert not invoker._waiters


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    global _release
    _release = asyncio.Event()
    _release.set()  # each invocation finishes at its first step
    invoker = Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    invoker.in_flight = 1  # a slot held by an invocation outside this test
    handed, next_one = _invoke(invoker, "handed"), _invoke(invoker, "next", queue=True)
    await asyncio.sleep(0)
    invoker._release()  # the held slot goes to "handed", which has not run on yet ...
    handed.cancel()  # ... and is cancelled before it does
    outcome = await asyncio.wait_for(next_one, 5)
    assert outcome.result is not None
    assert outcome.result.body == "next"
    assert handed.cancelled()
    assert invoker.in_flight == 0
    assert invoker.can_run_inline()
    assert not invoker._waiters


async def test_a_full_line_refuses_and_a_queued_invocation_still_waits() -> None:
    global _release
    _release = asyncio.Event()
    invoker = Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    holder, waiter = _invoke(invoker, "holder"), _invoke(invoker, "waiter")
    await asyncio.sleep(0)
    refused = await invoker.invoke(_route(), {"name": "x"}, connection_id="x", request_id="x")
    assert refused.rejected
    assert refused.error == BUSY
    queued = _invoke(invoker, "q", queue=True)
    await asyncio.sleep(0)
    assert not queued.done()
    _release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(holder, waiter, queued), 5)
    assert [o.result.body for o in outcomes] == ["holder", "waiter", "q"]
    assert invoker.in_flight == 0

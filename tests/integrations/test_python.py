"""HandlerPool: plain ``def`` handlers on a route's own threads, results back on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import threading
import time
import weakref

import pytest

from hubbub.integrations.python import HandlerPool
from tests.helpers import eventually

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_python_var", default="unset")


async def test_a_call_returns_its_result_and_runs_on_a_pool_thread() -> None:
    pool = HandlerPool(2, "route-x")
    assert await pool.submit(lambda a, b: (a + b, threading.current_thread().name), 1, 2) == (
        3,
        "route-x_0",
    )
    pool.close()


async def test_a_call_sees_the_callers_context_variables() -> None:
    pool = HandlerPool(1, "ctx")
    VAR.set("from the caller")
    assert await pool.submit(VAR.get) == "from the caller"
    pool.close()


async def test_a_handler_exception_reaches_the_caller() -> None:
    def fail() -> None:
        raise KeyError("missing")

    pool = HandlerPool(1, "fail")
    with pytest.raises(KeyError, match="missing"):
        await pool.submit(fail)
    assert await pool.submit(lambda: "still serving") == "still serving"
    pool.close()


async def test_stop_iteration_reaches_the_caller_as_a_runtime_error() -> None:
    def stop() -> None:
        raise StopIteration("done")

    pool = HandlerPool(1, "stop")
    results = await asyncio.gather(
        pool.submit(stop), pool.submit(lambda: "next"), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[0].__cause__, StopIteration)
    assert results[1] == "next"  # delivered in the same batch all the same
    pool.close()


async def test_blocking_calls_run_side_by_side_up_to_max_threads() -> None:
    pool = HandlerPool(3, "cap")
    lock = threading.Lock()
    running: list[int] = [0, 0]  # now, most at once
    release = threading.Event()

    def block() -> None:
        with lock:
            running[0] += 1
            running[1] = max(running)
        release.wait(5)
        with lock:
            running[0] -= 1

    calls = asyncio.gather(*(pool.submit(block) for _ in range(6)))
    await eventually(lambda: running[1] == 3, message="three threads, each in a call")
    release.set()
    await calls
    assert running[1] == 3
    assert {t.name for t in threading.enumerate() if t.name.startswith("cap_")} <= {
        "cap_0",
        "cap_1",
        "cap_2",
    }
    pool.close()


async def test_a_caller_that_gives_up_leaves_the_thread_running() -> None:
    pool = HandlerPool(1, "timeout")
    started, release = threading.Event(), threading.Event()
    finished = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        finished.set()
        return "late"

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.submit(slow), 0.1)
    assert started.is_set()
    assert not finished.is_set()
    # Its thread is abandoned to it: another serves the next call meanwhile.
    assert await asyncio.wait_for(pool.submit(lambda: "next"), 5) == "next"
    release.set()
    # The late result is dropped; the abandoned thread ends.
    await eventually(finished.is_set, message="the slow call to finish")
    await eventually(lambda: pool._abandoned == 0, message="its thread to end")
    pool.close()


async def test_a_call_given_up_before_a_thread_took_it_never_runs() -> None:
    pool = HandlerPool(1, "skip")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def block() -> None:
        started.set()
        release.wait(5)

    busy = asyncio.ensure_future(pool.submit(block))
    await asyncio.to_thread(started.wait, 5)
    with pytest.raises(TimeoutError):  # queued behind ``block`` on the only thread
        await asyncio.wait_for(pool.submit(ran.append, "skipped"), 0.05)
    release.set()
    await busy
    assert await pool.submit(lambda: "next") == "next"
    assert ran == []
    pool.close()


async def test_close_cancels_queued_calls_and_refuses_new_ones() -> None:
    pool = HandlerPool(1, "close")
    started, release = threading.Event(), threading.Event()

    def block() -> str:
        started.set()
        release.wait(5)
        return "finished"

    running = asyncio.ensure_future(pool.submit(block))
    await asyncio.to_thread(started.wait, 5)
    queued = asyncio.ensure_future(pool.submit(lambda: "never"))
    await asyncio.sleep(0)
    pool.close()
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(RuntimeError, match="closed"):
        await pool.submit(lambda: None)
    release.set()
    assert await running == "finished"  # a call already running still finishes


async def test_close_ends_sleeping_threads() -> None:
    pool = HandlerPool(2, "ends")
    await pool.submit(lambda: None)
    pool.close()
    await eventually(
        lambda: not any(t.name.startswith("ends_") for t in threading.enumerate()),
        message="the threads to end",
    )


def test_a_result_for_a_closed_loop_is_dropped() -> None:
    pool = HandlerPool(1, "closed-loop")
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.submit(slow), 0.1)

    asyncio.run(give_up())  # the loop is closed before the handler returns
    errors: list[BaseException | None] = []
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        release.set()
        deadline = time.monotonic() + 5
        # Abandoned to its call when it timed out: the thread ends once it returns, unharmed.
        while pool._abandoned and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        threading.excepthook = threading.__excepthook__
    assert pool._abandoned == 0
    assert errors == []
    assert not pool._done


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling policies")
async def test_pool_threads_yield_to_the_loop_on_wakeups() -> None:
    pool = HandlerPool(1, "batch")
    assert await pool.submit(os.sched_getscheduler, 0) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the loop's own thread is untouched
    pool.close()


async def test_a_timed_out_call_gives_its_thread_up_within_a_bound_and_the_pool_recovers() -> None:
    pool = HandlerPool(2, "abandon")
    release = threading.Event()
    try:
        bound = 2 * (1 + HandlerPool.ABANDONED_PER_THREAD)
        for _ in range(bound):  # one call after the other blocks, and its caller times out
            future = pool.submit(release.wait)
            await eventually(lambda f=future: f in pool._running, message="a thread to take it")
            future.cancel()
            await asyncio.sleep(0.01)
        # Threads abandoned to their calls: at most 3 x max_threads, plus max_threads that kept
        # their place once that bound was reached.
        alive = [t for t in threading.enumerate() if t.name.startswith("abandon")]
        assert len(alive) == bound
        late = pool.submit(lambda: "late")  # every thread is stuck now: it waits its turn
        await asyncio.sleep(0.2)
        assert not late.done()
        assert len([t for t in threading.enumerate() if t.name.startswith("abandon")]) == bound
        release.set()  # the stuck handlers return: their threads end, the pool is whole again
        assert await asyncio.wait_for(late, 5) == "late"
        assert await asyncio.wait_for(pool.submit(lambda: "ok"), 5) == "ok"
        await eventually(lambda: pool._abandoned == 0, message="abandoned threads to end")
    finally:
        release.set()
        pool.close()


async def test_sleeping_threads_are_woken_for_new_calls_and_all_end_on_close() -> None:
    pool = HandlerPool(3, "wake")
    release = threading.Event()
    names: list[str] = []

    def block() -> None:
        names.append(threading.current_thread().name)
        release.wait(5)

    calls = asyncio.gather(*(pool.submit(block) for _ in range(3)))
    await eventually(lambda: len(names) == 3, message="three threads, each in a call")
    release.set()
    await calls
    await eventually(lambda: len(pool._idle) == 3, message="the three threads to sleep")
    # Later calls wake the sleeping threads (on their own wake-up locks): no thread is added.
    for _ in range(5):
        assert await pool.submit(lambda: threading.current_thread().name) in set(names)
    assert pool._threads == 3
    pool.close()
    await eventually(
        lambda: not any(t.name.startswith("wake_") for t in threading.enumerate()),
        message="every sleeping thread to end",
    )
    assert pool._idle == []


async def test_a_sleeping_thread_keeps_nothing_of_its_last_call() -> None:
    class Event(dict[str, str]):
        """A handler's event: weakly referable, unlike a plain dict."""

    pool = HandlerPool(1, "keep")
    event = Event(body="big")
    ref = weakref.ref(event)
    assert await pool.submit(len, event) == 1
    await eventually(lambda: len(pool._idle) == 1, message="the thread to sleep")
    del event
    gc.collect()
    assert ref() is None  # neither the event nor the call's tuple outlive the call
    pool.close()

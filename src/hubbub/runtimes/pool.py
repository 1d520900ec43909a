"""A function's execution environments, as Lambda keeps them: started on demand, reused warm.

- An invocation takes an idle environment (the most recently used: it is the warmest), else
  starts one while the function has fewer than ``reserved_concurrency``, else waits for one to
  come free (Lambda would throttle; a local gateway queues, within the route's timeout).
- One invocation at a time per environment.
- An invocation cancelled while its environment works on it (the route's timeout, shutdown)
  kills that environment: its process may be stuck in the handler. The next invocation starts a
  fresh one. A crash or an init error ends only its own environment and fails only the
  invocation it was running.
- :meth:`Pool.recycle` replaces every environment once its in-flight invocation finishes (hot
  reload); :meth:`Pool.close` drains the pool on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hubbub.errors import InvocationError
from hubbub.runtimes.environment import Environment, Invocation

log = logging.getLogger("hubbub.runtime")

# The result a queued invocation's future gets when a slot came free (an environment ended):
# its caller starts an environment in it.
_START = object()


@dataclass(frozen=True)
class FunctionProcess:
    """How to start one environment of a function."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(hash=False)
    reserved_concurrency: int


class Pool:
    def __init__(self, function: FunctionProcess) -> None:
        self.function = function
        self._all: set[Environment] = set()
        self._idle: list[Environment] = []
        # Invocations waiting for an environment, in order.
        self._waiters: deque[Invocation] = deque()
        self._generation = 0
        self._closed = False
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def size(self) -> int:
        """Environments alive or starting."""
        return len(self._all)

    @property
    def pids(self) -> list[int]:
        return sorted(env.pid for env in self._all if env.pid)

    async def invoke(
        self, payload: bytes, *, request_id: str, deadline_ms: int, arn: str
    ) -> object:
        if self._closed:
            raise InvocationError("Runtime.Unavailable: the gateway is shutting down")
        loop = asyncio.get_running_loop()
        invocation = Invocation(request_id, payload, deadline_ms, arn, loop)
        env = self._take_idle()
        try:
            if env is None and len(self._all) >= self.function.reserved_concurrency:
                # Queued. An environment whose runtime answers takes it on the spot (_release
                # from Environment._done: its event leaves with that answer's 202), and this
                # caller wakes once, with the result; or a freed slot says to start one.
                self._waiters.append(invocation)
                outcome = await invocation.future
                if outcome is not _START:
                    return outcome
                invocation.future = loop.create_future()
            if env is None:
                env = await self._start()
            env.assign(invocation)
            return await invocation.future
        except asyncio.CancelledError:
            self._abandon(invocation)
            raise
        finally:
            handed = invocation.environment
            if handed is not None and not invocation.released:
                self._release(handed)

    def _take_idle(self) -> Environment | None:
        while self._idle:
            env = self._idle.pop()
            if not (env.ended or env.retiring):
                return env
        return None

    def _abandon(self, invocation: Invocation) -> None:
        """The caller of ``invocation`` was cancelled (the route's timeout, shutdown)."""
        env = invocation.environment
        future = invocation.future
        if env is None:  # still queued, or told to start an environment
            if invocation in self._waiters:
                self._waiters.remove(invocation)
            elif (
                future.done()
                and not future.cancelled()
                and future.exception() is None
                and future.result() is _START
            ):
                self._wake_one()  # pass the free slot on
            return
        # (The cancellation cancelled the future too: only a result means it answered.)
        if future.done() and not future.cancelled():
            return
        if not invocation.delivered and env.ready:
            env.unassign(invocation)  # the runtime, between invocations, never saw it
            return
        # The process may be stuck in the handler or its init.
        log.warning(
            "function environment killed",
            extra={
                "fields": {
                    "function": self.function.name,
                    "requestId": invocation.request_id,
                    "reason": "invocation cancelled (timeout)",
                }
            },
        )
        env.kill()

    async def _start(self) -> Environment:
        function = self.function
        env = Environment(
            function.name,
            function.argv,
            function.cwd,
            function.env,
            on_exit=self._ended,
            on_answered=self._answered,
            generation=self._generation,
        )
        self._all.add(env)
        try:
            await env.start()
        except BaseException:
            # Not started (or cancelled while starting): its slot frees now, and whatever did
            # start (the listener, maybe the process) stops in the background.
            self._all.discard(env)
            self._wake_one()
            self._retire(env)
            raise
        return env

    def _release(self, env: Environment) -> None:
        if env.ended:
            return  # _ended gave its slot away
        if env.retiring:
            return  # killed: its slot frees when its process has ended (_ended)
        if self._closed or env.generation != self._generation:
            self._retire(env)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                env.assign(waiter)
                return
        self._idle.append(env)

    def _answered(self, env: Environment, invocation: Invocation) -> None:
        """Environment._done: the runtime answered ``invocation``; its environment is free now."""
        invocation.released = True
        self._release(env)

    def _ended(self, env: Environment) -> None:
        """An environment's process is gone (crash, kill, init error, stop)."""
        if env in self._idle:
            self._idle.remove(env)
        if env in self._all:  # else its slot was given back already (see _start)
            self._all.discard(env)
            if not self._closed:
                self._wake_one()

    def _wake_one(self) -> None:
        """A slot came free: the first waiter starts an environment in it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(_START)
                return

    def _retire(self, env: Environment) -> None:
        """Stop ``env`` in the background (its slot frees when its process has ended)."""
        if env in self._idle:
            self._idle.remove(env)
        task = asyncio.get_running_loop().create_task(env.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def recycle(self) -> None:
        """Replace every environment: idle ones stop now, busy ones once their invocation ends;
        later invocations start new environments (the function's code changed)."""
        self._generation += 1
        for env in list(self._idle):
            self._retire(env)
        log.info(
            "function environments recycled",
            extra={"fields": {"function": self.function.name, "environments": len(self._all)}},
        )

    async def close(self, grace: float = 2.0) -> None:
        """Stop every environment: SIGTERM, SIGKILL after ``grace``; their output is logged to
        the last line. Invocations still waiting for an environment fail."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(
                    InvocationError("Runtime.Unavailable: the gateway is shutting down")
                )
        self._idle.clear()
        stops = [env.stop(grace) for env in list(self._all)]
        await asyncio.gather(*stops, *self._stopping, return_exceptions=True)

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

from hubbub.integrations.base import InvocationError
from hubbub.runtimes.environment import Environment, Invocation

log = logging.getLogger("hubbub.runtime")


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
        self._waiters: deque[asyncio.Future[Environment | None]] = deque()
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
        env = await self._acquire()
        invocation = Invocation(request_id, payload, deadline_ms, arn, asyncio.get_running_loop())
        try:
            return await env.invoke(invocation)
        except asyncio.CancelledError:
            # Timed out (or shutdown): the process may be stuck in the handler or its init.
            # (The cancellation cancelled the future too: only a result means it answered.)
            future = invocation.future
            if not future.done() or future.cancelled():
                log.warning(
                    "function environment killed",
                    extra={
                        "fields": {
                            "function": self.function.name,
                            "requestId": request_id,
                            "reason": "invocation cancelled (timeout)",
                        }
                    },
                )
                env.kill()
            raise
        finally:
            self._release(env)

    async def _acquire(self) -> Environment:
        if self._closed:
            raise InvocationError("Runtime.Unavailable: the gateway is shutting down")
        while self._idle:
            env = self._idle.pop()
            if not (env.ended or env.retiring):
                return env
        if len(self._all) < self.function.reserved_concurrency:
            return await self._start()
        waiter: asyncio.Future[Environment | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()
                if given is not None:
                    self._release(given)
                else:
                    self._wake_one()  # pass the free slot on
            else:
                self._waiters.remove(waiter)
            raise
        if handed is None:  # a slot came free: start an environment in it
            return await self._start()
        return handed

    async def _start(self) -> Environment:
        function = self.function
        env = Environment(
            function.name,
            function.argv,
            function.cwd,
            function.env,
            on_exit=self._ended,
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
            if not waiter.done():
                waiter.set_result(env)
                return
        self._idle.append(env)

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
            if not waiter.done():
                waiter.set_result(None)
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
            if not waiter.done():
                waiter.set_exception(
                    InvocationError("Runtime.Unavailable: the gateway is shutting down")
                )
        self._idle.clear()
        stops = [env.stop(grace) for env in list(self._all)]
        await asyncio.gather(*stops, *self._stopping, return_exceptions=True)

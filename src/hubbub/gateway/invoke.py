"""Route → integration: timeouts, concurrency caps, and the one place handler errors are caught.

Every invocation ends in an :class:`Outcome`; nothing a handler does (raise, hang, return garbage)
escapes this module. The callers turn outcomes into HTTP statuses ($connect) or frames (messages).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hubbub.aws.results import InvalidProxyResult, ProxyResult, parse_proxy_result
from hubbub.gateway import logs
from hubbub.integrations import environment
from hubbub.integrations.base import Integration, LambdaContext

log = logging.getLogger("hubbub.invoke")


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    integration: Integration
    timeout: float
    two_way: bool = False
    is_async: bool = False
    # The function's own environment variables (see hubbub.integrations.environment).
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """``result`` on success; otherwise ``error`` says what went wrong (for logs and frames)."""

    result: ProxyResult | None
    error: str | None = None
    rejected: bool = False  # refused by a concurrency cap before running
    raw: object = None  # the handler's return value, before proxy-result parsing
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


BUSY = "Too many concurrent requests"


class Deadline:
    __slots__ = ("at", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], at: float) -> None:
        self.task = task
        self.at = at
        self.expired = False


class Watchdog:
    """Handler timeouts for every invocation from one periodic check.

    ``asyncio.timeout`` per invocation cost ~7% of the routed message path (a timer handle, a
    context manager and the current-task lookup each time). Handler timeouts are seconds long
    (AWS: 50 ms - 29 s), so a check every ``TICK`` seconds is precise enough: an invocation is
    cancelled at most ``TICK`` late, and the invoker turns that cancellation into a timeout.
    """

    TICK = 0.025

    def __init__(self) -> None:
        self._watched: dict[Deadline, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, timeout: float) -> Deadline:
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        deadline = Deadline(task, loop.time() + timeout)
        self._watched[deadline] = None
        if self._timer is None:
            self._timer = loop.call_later(self.TICK, self._check, loop)
        return deadline

    def forget(self, deadline: Deadline) -> None:
        self._watched.pop(deadline, None)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for deadline in [d for d in self._watched if d.at <= now]:
            del self._watched[deadline]
            deadline.expired = True
            deadline.task.cancel()
        self._timer = loop.call_later(self.TICK, self._check, loop) if self._watched else None


class Invoker:
    """Runs integrations under a global cap with a bounded wait queue."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        region: str,
        account_id: str,
        async_api: Any = None,
        sync_api: Any = None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_waiting = max_concurrent
        self._waiting = 0
        self._region = region
        self._account_id = account_id
        self.async_api = async_api
        self.sync_api = sync_api
        self.in_flight = 0
        self._watchdog = Watchdog()

    async def invoke(
        self,
        route: Route,
        event: dict[str, Any],
        *,
        connection_id: str,
        request_id: str,
        proxy: bool = True,
    ) -> Outcome:
        """Run ``route``'s handler; ``proxy=False`` keeps the raw result (authorizers)."""
        if self._slots.locked():
            if self._waiting >= self._max_waiting:
                logs.event(
                    log, "rejected", route=route.key, connectionId=connection_id, reason=BUSY
                )
                return Outcome(None, BUSY, rejected=True)
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self.in_flight += 1
        started = time.perf_counter()
        try:
            outcome = await self._run(route, event, connection_id, request_id, proxy)
        finally:
            self.in_flight -= 1
            self._slots.release()
        if logs.ACCESS.isEnabledFor(logging.INFO):  # skip building the line when it is off
            result = outcome.result
            logs.event(
                logs.ACCESS,
                "invoke",
                route=route.key,
                connectionId=connection_id,
                requestId=request_id,
                status=result.status_code if result else ("error" if outcome.error else "ok"),
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                **({"error": outcome.error} if outcome.error else {}),
            )
        return outcome

    async def _run(
        self, route: Route, event: dict[str, Any], connection_id: str, request_id: str, proxy: bool
    ) -> Outcome:
        context = LambdaContext(
            request_id=request_id,
            function_name=route.integration.name,
            timeout=route.timeout,
            region=self._region,
            account_id=self._account_id,
            gateway=self.async_api if route.is_async else self.sync_api,
        )
        token = environment.function_env(route.environment)
        deadline = self._watchdog.watch(route.timeout)
        try:
            try:
                raw = await route.integration.invoke(event, context)
            except asyncio.CancelledError:
                if not deadline.expired:
                    raise  # cancelled from outside (shutdown): not ours to swallow
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                raise TimeoutError from None
            finally:
                self._watchdog.forget(deadline)
        except TimeoutError as exc:
            log.warning(
                "handler timed out",
                extra={
                    "fields": {
                        "route": route.key,
                        "connectionId": connection_id,
                        "timeout_s": route.timeout,
                    }
                },
            )
            return Outcome(None, f"timed out after {route.timeout:g}s", exception=exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not proxy and str(exc) == "Unauthorized":
                # An authorizer refusing a client is the normal path, not a failure.
                return Outcome(None, "Unauthorized", exception=exc)
            # The handler's own fault: log it with the connection id, keep the socket.
            log.error(
                "handler raised",
                exc_info=exc,
                extra={
                    "fields": {
                        "route": route.key,
                        "connectionId": connection_id,
                        "requestId": request_id,
                    }
                },
            )
            return Outcome(None, f"{type(exc).__name__}: {exc}", exception=exc)
        finally:
            environment.reset(token)
        if not proxy:
            return Outcome(None, raw=raw)
        try:
            return Outcome(parse_proxy_result(raw))
        except InvalidProxyResult as exc:
            log.error(
                "handler returned an invalid result",
                extra={
                    "fields": {
                        "route": route.key,
                        "connectionId": connection_id,
                        "problem": str(exc),
                    }
                },
            )
            return Outcome(None, f"invalid result: {exc}", raw=raw, exception=exc)

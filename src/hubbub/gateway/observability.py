"""What the management listener shows about the gateway: /metrics, /dashboard and its data.

``GET /metrics``            Prometheus text (hubbub.gateway.metrics), the whole machine with workers
``GET /dashboard``          a plain HTML page (hubbub/static/dashboard.html) polling the two below
``GET /dashboard/data``     JSON: the merged snapshot, per-route latency percentiles, the busiest
                            local rooms, nodes and their health
``GET /dashboard/log``      JSON: access-log lines after ``?after=SEQ``, filtered by ``route`` and
                            ``connection``; the tail is kept only while a page polls it

All of them sit behind the management API's own checks (SigV4 when ``auth = "sigv4"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from hubbub.gateway import logs
from hubbub.gateway.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    WORKERS_DIR_ENV,
    Gauges,
    Metrics,
    merge,
    read_snapshots,
    render,
    snapshot,
    write_snapshot,
)
from hubbub.wire.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from hubbub.gateway.hub import Hub
    from hubbub.gateway.invoke import Invoker, Route
    from hubbub.gateway.recovery import Resumer
    from hubbub.store import Store

log = logging.getLogger("hubbub.gateway")

Page = Callable[[HttpRequest], Awaitable[HttpResponse]]
_DASHBOARD = Path(__file__).resolve().parent.parent / "static" / "dashboard.html"
TAIL_LINES = 500
TAIL_IDLE_S = 30.0  # the tail stops recording this long after the last poll
WORKER_SNAPSHOT_S = 1.0


class AccessTail(logging.Handler):
    """The last access-log records as dicts, numbered, for the dashboard's live tail."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[dict[str, Any]] = deque(maxlen=TAIL_LINES)
        self.seq = 0
        self.polled_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        self.seq += 1
        fields: dict[str, Any] = getattr(record, "fields", {})
        self.lines.append(
            {"seq": self.seq, "time": record.created, "event": record.getMessage(), **fields}
        )

    def after(self, seq: int, route: str, connection: str) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines
            if line["seq"] > seq
            and (not route or line.get("route") == route)
            and (not connection or line.get("connectionId") == connection)
        ]


class Observability:
    """The pages above for one gateway; reads its parts, never changes them."""

    def __init__(
        self,
        *,
        node: str,
        metrics: Metrics,
        hub: Hub,
        store: Store,
        routes: Callable[[], Mapping[str, Route]],
        invoker: Callable[[], Invoker | None],
        resumer: Callable[[], Resumer | None],
    ) -> None:
        self.node = node
        self.metrics = metrics
        self._hub = hub
        self._store = store
        self._routes = routes
        self._invoker = invoker
        self._resumer = resumer
        self.started_at = time.time()
        self.tail: AccessTail | None = None
        self._access_level = logging.NOTSET
        folder = os.environ.get(WORKERS_DIR_ENV)
        self._workers_dir = Path(folder) if folder else None
        self._writer: asyncio.Task[None] | None = None

    @property
    def pages(self) -> dict[str, Page]:
        return {
            "/metrics": self.metrics_page,
            "/dashboard": self.dashboard_page,
            "/dashboard/data": self.dashboard_data,
            "/dashboard/log": self.dashboard_log,
        }

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._tick())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._stop_tail()

    # -- data ---------------------------------------------------------------------------------
    async def own_snapshot(self) -> dict[str, Any]:
        invoker = self._invoker()
        resumer = self._resumer()
        gauges = Gauges(
            node=self.node,
            connections=len(self._hub.connections),
            in_flight=invoker.in_flight if invoker is not None else 0,
            frames_written=self._hub.writes,
            slow_drops=self._hub.slow_drops,
            store_up=bool(self._store.status().get("ok")),
            cluster_nodes=await _cluster_nodes(self._store),
            started_at=self.started_at,
            routes={key: route.stats for key, route in self._routes().items()},
            resumes=resumer.outcomes if resumer is not None else {},
        )
        return snapshot(self.metrics, gauges)

    async def machine_snapshot(self) -> dict[str, Any]:
        """This gateway's snapshot, plus every other worker's when running with --workers."""
        own = await self.own_snapshot()
        if self._workers_dir is None:
            return own
        write_snapshot(self._workers_dir, self.node, own)
        return merge([own, *read_snapshots(self._workers_dir, skip=self.node)])

    async def _tick(self) -> None:
        """Once a second: fold the routes' and the store's latency samples into their
        histograms (so they stay few), and with --workers write this worker's snapshot for the
        others."""
        while True:
            await asyncio.sleep(WORKER_SNAPSHOT_S)
            for route in self._routes().values():
                route.stats.fold()
            for stats in self.metrics.store.values():
                stats.fold()
            if self._workers_dir is None:
                continue
            try:
                write_snapshot(self._workers_dir, self.node, await self.own_snapshot())
            except Exception:  # a full disk must not stop the gateway; the scrape says less
                log.exception("writing this worker's metrics failed")

    # -- pages --------------------------------------------------------------------------------
    async def metrics_page(self, request: HttpRequest) -> HttpResponse:
        body = render(await self.machine_snapshot())
        return HttpResponse(200, {"Content-Type": CONTENT_TYPE}, body)

    async def dashboard_page(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(
            200,
            {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
            _DASHBOARD.read_bytes(),
        )

    async def dashboard_data(self, request: HttpRequest) -> HttpResponse:
        snap = await self.machine_snapshot()
        data = {
            "time": time.time(),
            "node": self.node,
            "snapshot": snap,
            "latency": {
                route: percentiles(stats["latency"])
                for route, stats in snap.get("invocations", {}).items()
            },
            "rooms": self.busiest_rooms(10),
            "nodes": snap.get("nodes", {}),
            "store": self._store.status(),
        }
        return _json(data)

    async def dashboard_log(self, request: HttpRequest) -> HttpResponse:
        query = dict(parse_qsl(request.query_string))
        tail = self._start_tail()
        try:
            after = int(query.get("after", "0"))
        except ValueError:
            after = 0
        lines = tail.after(after, query.get("route", ""), query.get("connection", ""))
        return _json({"seq": tail.seq, "lines": lines[-200:]})

    def busiest_rooms(self, count: int) -> list[dict[str, Any]]:
        sizes = [(len(members), room) for room, members in self._hub.rooms.items()]
        sizes.sort(reverse=True)
        return [{"room": room, "members": n} for n, room in sizes[:count]]

    # -- the live tail: recorded only while somebody looks -----------------------------------
    def _start_tail(self) -> AccessTail:
        if self.tail is None:
            self.tail = AccessTail()
            logs.ACCESS.addHandler(self.tail)
            self._access_level = logs.ACCESS.level
            if not logs.ACCESS.isEnabledFor(logging.INFO):
                # log.level is above info: record the lines for the tail alone, print none.
                logs.ACCESS.setLevel(logging.INFO)
                logs.ACCESS.propagate = False
            asyncio.get_running_loop().call_later(TAIL_IDLE_S, self._expire_tail)
        self.tail.polled_at = time.monotonic()
        return self.tail

    def _expire_tail(self) -> None:
        tail = self.tail
        if tail is None:
            return
        idle = time.monotonic() - tail.polled_at
        if idle >= TAIL_IDLE_S:
            self._stop_tail()
        else:
            asyncio.get_running_loop().call_later(TAIL_IDLE_S - idle, self._expire_tail)

    def _stop_tail(self) -> None:
        if self.tail is not None:
            logs.ACCESS.removeHandler(self.tail)
            logs.ACCESS.setLevel(self._access_level)
            logs.ACCESS.propagate = True
            self.tail = None


def percentiles(latency: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 in milliseconds from histogram buckets (linear within a bucket)."""
    counts = latency[:-1]
    total = sum(counts)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        if not total:
            out[name] = None
            continue
        rank = q * total
        running = 0.0
        lower = 0.0
        value = LATENCY_BUCKETS[-1]
        for bound, n in zip([*LATENCY_BUCKETS, LATENCY_BUCKETS[-1]], counts, strict=True):
            if n and running + n >= rank:
                value = lower + (bound - lower) * (rank - running) / n
                break
            running += n
            lower = bound
        out[name] = round(value * 1000, 3)
    return out


async def _cluster_nodes(store: Store) -> int:
    count = getattr(store, "live_nodes", None)
    if count is None:
        return 1
    try:
        return int(await count())
    except Exception:  # Redis down: the store_up gauge says so
        return 0


def _json(data: Any) -> HttpResponse:
    return HttpResponse(
        200,
        {"Content-Type": "application/json", "Cache-Control": "no-store"},
        orjson.dumps(data, default=str),
    )

"""Counters kept where things happen, exported in the Prometheus text format at scrape time.

The hot paths (a message routed, a frame written to a thousand sockets) only add to plain ints in
dicts, which costs tens of nanoseconds; nothing is formatted, locked or labelled until a scrape.
Then :func:`render` turns a snapshot (a plain mapping) into prometheus-client's metric families
and its text exposition. Latency histograms keep their bucket counts the same way (one ``bisect``
per observation).

With ``--workers N`` each worker is its own process: each writes its snapshot to a folder the
supervisor gives it (``HUBBUB_WORKERS_METRICS_DIR``), at most a second old, and the worker that
answers a scrape adds them all up (:func:`merge`), so one scrape returns the whole machine.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from hubbub.aws.results import ProxyResult
from hubbub.store.base import Registry

# Seconds. Handlers answer in microseconds (async, in-process) to tens of seconds (a timeout).
LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WORKERS_DIR_ENV = "HUBBUB_WORKERS_METRICS_DIR"


_clock = time.perf_counter


class _Outcome(Protocol):
    """What :meth:`RouteStats.failed` reads of an invocation's outcome (gateway/invoke.py)."""

    @property
    def result(self) -> ProxyResult | None: ...

    @property
    def exception(self) -> BaseException | None: ...


class Histogram:
    """Bucket counts (not cumulative), sum and count.

    ``observe`` adds one value (a bisect and two adds). ``fold`` adds many at once: sorted in C,
    then one bisect per bucket, a small fraction of observing them one by one.
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def fold(self, values: Sequence[float]) -> None:
        ordered = sorted(values)
        below = 0
        for i, bound in enumerate(LATENCY_BUCKETS):
            upto = bisect_right(ordered, bound)  # buckets are "less than or equal" (le)
            self.counts[i] += upto - below
            below = upto
        self.counts[-1] += len(ordered) - below
        self.total += math.fsum(ordered)

    def as_list(self) -> list[float]:
        return [*self.counts, self.total]


class _Timed:
    """Durations appended on the hot path (one ``array.append`` each) and folded into one
    histogram by :meth:`fold`, at each scrape and once a second (hubbub.gateway.observability),
    so they never pile up."""

    __slots__ = ("latency", "samples", "total")

    def __init__(self) -> None:
        self.samples = array("d")  # durations not folded yet, seconds
        self.total = 0  # calls folded so far
        self.latency = Histogram()

    def fold(self) -> None:
        samples = self.samples
        if samples:
            self.samples = array("d")
            self.latency.fold(samples)
            self.total += len(samples)


class RouteStats(_Timed):
    """One route's invocations: counted by outcome, timed in one histogram.

    On the message path an invocation costs one ``array.append`` of its duration (``samples``)
    and, only when it did not succeed, a count under its label (:meth:`failed`): successes are
    the samples minus the failures (see :class:`_Timed` for the folding).
    """

    __slots__ = ("failures", "outcomes", "rejected")

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0  # of all invocations, those counted in ``outcomes``
        self.outcomes: Counter[str] = Counter()  # every outcome but success, by label
        self.rejected = 0

    def failed(self, outcome: _Outcome) -> None:
        """Count an invocation that did not return a 2xx (its duration is in ``samples``)."""
        result = outcome.result
        if result is None:
            label = "timeout" if isinstance(outcome.exception, TimeoutError) else "error"
        else:
            label = f"status_{result.status_code // 100}xx"
        self.outcomes[label] += 1
        self.failures += 1

    def observe(self, outcome: str, seconds: float) -> None:
        """An invocation counted under ``outcome`` ("ok" or any other label)."""
        self.samples.append(seconds)
        if outcome != "ok":
            self.outcomes[outcome] += 1
            self.failures += 1

    def counted(self) -> dict[str, int]:
        self.fold()
        ok = self.total - self.failures
        return {**({"ok": ok} if ok else {}), **self.outcomes}


class Metrics:
    """Everything one gateway counts. Fields are public: the code that counts adds to them.

    Per-message counts are plain ints (``route_responses``, ``error_frames``): a Counter's
    ``+= 1`` costs several times an attribute's on the message path.
    """

    def __init__(self) -> None:
        self.route_responses = 0
        self.error_frames = 0
        self.opened = 0
        self.closed: Counter[int] = Counter()  # by close code
        self.handshakes: Counter[tuple[str, int]] = Counter()  # (outcome, HTTP status)
        self.authorizer: Counter[str] = Counter()  # allow / deny / error
        self.messages_in: Counter[str] = Counter()  # by route key ("" = no route matched)
        self.messages_out: Counter[str] = Counter()  # by kind
        self.management: Counter[tuple[str, int]] = Counter()  # (operation, status)
        self.store: dict[str, StoreStats] = {}  # by the registry's operation

    def store_stats(self, operation: str) -> StoreStats:
        stats = self.store.get(operation)
        if stats is None:
            stats = self.store[operation] = StoreStats()
        return stats


class StoreStats(_Timed):
    """One store operation's calls: as :class:`RouteStats`, a call costs one ``array.append``
    of its duration (and a count when it failed)."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        super().__init__()
        self.errors = 0


@dataclass
class Gauges:
    """What the scrape reads from the gateway's parts: what is true now, and the counts those
    parts keep themselves (the hub's writes and drops, each route's stats, the resumer's)."""

    node: str
    connections: int = 0
    in_flight: int = 0
    frames_written: int = 0  # Hub.writes: every frame written to a client, fan-out included
    slow_drops: int = 0  # Hub.slow_drops
    store_up: bool = True
    cluster_nodes: int = 1
    started_at: float = field(default_factory=time.time)
    routes: Mapping[str, RouteStats] = field(default_factory=dict)  # Route.stats by route key
    resumes: Mapping[str, int] = field(default_factory=dict)  # Resumer.outcomes


def snapshot(metrics: Metrics, gauges: Gauges) -> dict[str, Any]:
    """A JSON-able copy of ``metrics`` and ``gauges`` (what workers exchange and merge)."""
    for stats in gauges.routes.values():
        stats.fold()
    return {
        "nodes": {gauges.node: {"up": gauges.store_up, "started_at": gauges.started_at}},
        "cluster_nodes": gauges.cluster_nodes,
        "counters": {
            "connections": gauges.connections,
            "in_flight": gauges.in_flight,
            "opened": metrics.opened,
            "frames_written": gauges.frames_written,
            "slow_drops": gauges.slow_drops,
        },
        "closed": {str(code): n for code, n in metrics.closed.items()},
        "handshakes": {f"{o}|{s}": n for (o, s), n in metrics.handshakes.items()},
        "authorizer": dict(metrics.authorizer),
        "messages_in": _messages_in(metrics, gauges.routes),
        "messages_out": _messages_out(metrics),
        "invocations": {
            key: {
                "outcomes": stats.counted(),
                "rejected": stats.rejected,
                "latency": stats.latency.as_list(),
            }
            for key, stats in gauges.routes.items()
        },
        "management": {f"{op}|{status}": n for (op, status), n in metrics.management.items()},
        "store": _store(metrics),
        "resumes": dict(gauges.resumes),
    }


def _store(metrics: Metrics) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for op, stats in metrics.store.items():
        stats.fold()
        if stats.total:  # (an operation looked up whose first call has not ended yet)
            out[op] = {
                "calls": stats.total,
                "errors": stats.errors,
                "latency": stats.latency.as_list(),
            }
    return out


def _messages_in(metrics: Metrics, routes: Mapping[str, RouteStats]) -> dict[str, int]:
    """Messages by route: each routed message is one invocation or one rejection, so the hot
    path counts it once (in its route's stats), not twice."""
    counted = dict(metrics.messages_in)  # those that matched no route, under ""
    for key, stats in routes.items():
        if key not in ("$connect", "$disconnect"):
            counted[key] = counted.get(key, 0) + stats.rejected + sum(stats.counted().values())
    return counted


def _messages_out(metrics: Metrics) -> dict[str, int]:
    counted = dict(metrics.messages_out)
    for kind, n in (("route_response", metrics.route_responses), ("error", metrics.error_frames)):
        if n:
            counted[kind] = counted.get(kind, 0) + n
    return counted


def merge(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add snapshots up: counters and histograms sum, nodes are listed side by side."""
    total: dict[str, Any] = {}
    for snap in snapshots:
        _add(total, snap)
    return total


def _add(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if key == "cluster_nodes":  # the same cluster seen from each worker: not a sum
            into[key] = max(into.get(key, 0), value)
        elif isinstance(value, Mapping):
            _add(into.setdefault(key, {}), value)
        elif isinstance(value, list):
            mine = into.setdefault(key, [0] * len(value))
            into[key] = [a + b for a, b in zip(mine, value, strict=True)]
        elif isinstance(value, bool) or key == "started_at":
            into[key] = value
        else:
            into[key] = into.get(key, 0) + value


# -- exposition -------------------------------------------------------------------------------
class _SnapshotCollector(Collector):
    def __init__(self, snap: Mapping[str, Any]) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snap)


def render(snap: Mapping[str, Any]) -> bytes:
    """The Prometheus text exposition of a (merged) snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)


def families(snap: Mapping[str, Any]) -> Iterator[Metric]:
    counters = snap.get("counters", {})
    gauge = GaugeMetricFamily("hubbub_connections", "Open WebSocket connections")
    gauge.add_metric([], counters.get("connections", 0))
    yield gauge
    opened = CounterMetricFamily("hubbub_connections_opened", "Connections opened")
    opened.add_metric([], counters.get("opened", 0))
    yield opened
    closed = CounterMetricFamily(
        "hubbub_connections_closed", "Connections closed, by close code", labels=["code"]
    )
    for code, n in sorted(snap.get("closed", {}).items()):
        closed.add_metric([code], n)
    yield closed
    handshakes = CounterMetricFamily(
        "hubbub_handshakes",
        "WebSocket handshakes by outcome (accepted, refused) and HTTP status",
        labels=["outcome", "status"],
    )
    for key, n in sorted(snap.get("handshakes", {}).items()):
        outcome, _, status = key.partition("|")
        handshakes.add_metric([outcome, status], n)
    yield handshakes
    yield _by_label(
        "hubbub_authorizer_decisions",
        "Authorizer decisions on $connect",
        "decision",
        snap.get("authorizer", {}),
    )
    yield _by_label(
        "hubbub_messages_in",
        'Messages received, by the route selected ("" when none matched)',
        "route",
        snap.get("messages_in", {}),
    )
    yield _by_label(
        "hubbub_messages_out",
        "Messages sent to clients, by kind (route_response, post, room, user, broadcast, error)",
        "kind",
        snap.get("messages_out", {}),
    )
    invocations = CounterMetricFamily(
        "hubbub_invocations",
        "Handler invocations by route and outcome (ok, error, timeout, status_4xx, ...)",
        labels=["route", "outcome"],
    )
    rejected = CounterMetricFamily(
        "hubbub_invocations_rejected",
        "Invocations refused by the concurrency caps, by route",
        labels=["route"],
    )
    latency = HistogramMetricFamily(
        "hubbub_invocation_seconds", "Handler latency, by route", labels=["route"]
    )
    for route, data in sorted(snap.get("invocations", {}).items()):
        for outcome, n in sorted(data["outcomes"].items()):
            invocations.add_metric([route, outcome], n)
        rejected.add_metric([route], data["rejected"])
        buckets, total = _buckets(data["latency"])
        latency.add_metric([route], buckets, total)
    yield invocations
    yield rejected
    yield latency
    in_flight = GaugeMetricFamily("hubbub_invocations_in_flight", "Invocations running now")
    in_flight.add_metric([], counters.get("in_flight", 0))
    yield in_flight
    frames = CounterMetricFamily(
        "hubbub_frames_written", "Frames written to clients (each fan-out delivery counts)"
    )
    frames.add_metric([], counters.get("frames_written", 0))
    yield frames
    drops = CounterMetricFamily(
        "hubbub_slow_consumer_drops", "Connections dropped (1013) for a full send queue"
    )
    drops.add_metric([], counters.get("slow_drops", 0))
    yield drops
    management = CounterMetricFamily(
        "hubbub_management_calls",
        "Management API calls by operation and HTTP status",
        labels=["operation", "status"],
    )
    for key, n in sorted(snap.get("management", {}).items()):
        operation, _, status = key.partition("|")
        management.add_metric([operation, status], n)
    yield management
    store_calls = CounterMetricFamily(
        "hubbub_store_operations", "Store operations by name", labels=["operation"]
    )
    store_errors = CounterMetricFamily(
        "hubbub_store_errors", "Store operations that failed", labels=["operation"]
    )
    store_latency = HistogramMetricFamily(
        "hubbub_store_seconds", "Store operation latency", labels=["operation"]
    )
    for op, data in sorted(snap.get("store", {}).items()):
        store_calls.add_metric([op], data["calls"])
        store_errors.add_metric([op], data["errors"])
        buckets, total = _buckets(data["latency"])
        store_latency.add_metric([op], buckets, total)
    yield store_calls
    yield store_errors
    yield store_latency
    up = GaugeMetricFamily(
        "hubbub_store_up", "1 when the node reaches its store (Redis connectivity)", labels=["node"]
    )
    for node, data in sorted(snap.get("nodes", {}).items()):
        up.add_metric([node], 1 if data["up"] else 0)
    yield up
    nodes = GaugeMetricFamily("hubbub_cluster_nodes", "Live gateway nodes sharing the store")
    nodes.add_metric([], snap.get("cluster_nodes", 1))
    yield nodes
    yield _by_label(
        "hubbub_recovery_resumes",
        "Recovery resume requests by outcome (resumed, expired, refused)",
        "outcome",
        snap.get("resumes", {}),
    )


def _by_label(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in sorted(values.items()):
        family.add_metric([value], n)
    return family


def _buckets(data: list[float]) -> tuple[list[tuple[str, float]], float]:
    counts, total = data[:-1], data[-1]
    cumulative, running = [], 0.0
    for bound, n in zip([*LATENCY_BUCKETS, float("inf")], counts, strict=True):
        running += n
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return cumulative, total


# -- workers ----------------------------------------------------------------------------------
def write_snapshot(folder: Path, node: str, snap: Mapping[str, Any]) -> None:
    """Replace this worker's file atomically: a reader never sees half of it."""
    target = folder / f"{node}.json"
    temporary = folder / f".{node}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(snap))
    temporary.replace(target)


def read_snapshots(folder: Path, skip: str) -> list[dict[str, Any]]:
    """Every other worker's latest snapshot (a file being replaced or gone is skipped)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        if path.stem == skip:
            continue
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return found


# -- the store's operations -------------------------------------------------------------------
# Called once per message (lastActiveAt on shared stores), and answered from the node's own
# mirror, batched into Redis by the heartbeat: timing it would cost more than the call itself.
_UNMEASURED = frozenset({"touch"})


class _MeasuredRegistry:
    """Times every coroutine method of a registry into its :class:`StoreStats` (but
    ``_UNMEASURED``)."""

    def __init__(self, inner: object, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self._inner)})

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in _UNMEASURED or not inspect.iscoroutinefunction(attr):
            return attr
        stats = self._metrics.store_stats(name)
        clock = time.perf_counter

        async def measured(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return await attr(*args, **kwargs)
            except BaseException:  # cancelled too, as a call that did not complete
                stats.errors += 1
                raise
            finally:
                stats.samples.append(clock() - started)

        setattr(self, name, measured)  # built once per method
        return measured


def measured_registry(registry: Registry, metrics: Metrics) -> Registry:
    """``registry`` with each call counted, timed and its failures counted (/metrics)."""
    return cast(Registry, _MeasuredRegistry(registry, metrics))

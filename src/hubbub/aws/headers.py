"""The handshake's headers as API Gateway passes them on: ``gateway_headers`` and the header maps
of the ``$connect`` event (``hubbub.aws.events``, module docstring).

A client sends the same header names in the same order on every handshake (a browser, a
WebSocket library); only the values change. What depends only on the names (which of the added
headers the client sent itself, the order of the sorted list, which headers the event leaves out)
is worked out once per sequence of names and kept, bounded (:data:`MAX_SEQUENCES`); a handshake
then costs a lookup and a few calls that run in C instead of a ``lower``, a sort key and a
comparison per header and pass (``gateway_headers`` went from ~26,000 to ~10,600 instructions
for a five-header handshake).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress
from operator import itemgetter
from typing import Any, TypeVar

__all__ = [
    "MAX_NAMES",
    "MAX_NAME_CHARS",
    "MAX_SEQUENCES",
    "event_headers",
    "gateway_headers",
    "single_and_multi",
]

_FIRST = itemgetter(0)

# The caches' bounds: at most MAX_SEQUENCES sequences of names, each of at most MAX_NAMES names
# of MAX_NAME_CHARS characters in all (longer ones are worked out each time and not kept); a
# full cache is emptied and fills again with the sequences in use.
MAX_SEQUENCES = 64
MAX_NAMES = 64
MAX_NAME_CHARS = 1024

_V = TypeVar("_V")


def _cached(
    cache: dict[tuple[str, ...], _V],
    names: tuple[str, ...],
    work_out: Callable[[tuple[str, ...]], _V],
) -> _V:
    """``work_out(names)``, kept in ``cache`` when ``names`` is small enough."""
    value = work_out(names)
    if len(names) <= MAX_NAMES and sum(map(len, names)) <= MAX_NAME_CHARS:
        if len(cache) >= MAX_SEQUENCES:
            cache.clear()
        cache[names] = value
    return value


# What API Gateway adds when the client sent none of that name, in the order appended (the sort
# puts them in place).
_ADDED = ("x-amzn-trace-id", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto")


class _GatewayPlan:
    """``gateway_headers`` for one sequence of names: the positions of the client's own
    ``X-Forwarded-For``, which of :data:`_ADDED` are added, and the sorted order."""

    __slots__ = ("add", "forwarded_for", "order", "plain")

    def __init__(self, names: tuple[str, ...]) -> None:
        lowered = [name.lower() for name in names]
        self.forwarded_for = tuple(
            i for i, lower in enumerate(lowered) if lower == "x-forwarded-for"
        )
        self.add = tuple(lower not in lowered for lower in _ADDED)
        self.plain = all(self.add)  # the usual case: the client sent none of them
        keys = lowered + [lower for lower, missing in zip(_ADDED, self.add, strict=True) if missing]
        # Stable: repeated names keep the client's order. There are always four entries or more
        # (each of _ADDED, sent or added), so the getter always returns a tuple.
        self.order: Callable[[list[tuple[str, str]]], tuple[tuple[str, str], ...]] = itemgetter(
            *sorted(range(len(keys)), key=keys.__getitem__)
        )


_GATEWAY_PLANS: dict[tuple[str, ...], _GatewayPlan] = {}


def gateway_headers(
    headers: Sequence[tuple[str, str]],
    *,
    source_ip: str,
    port: int,
    proto: str,
    trace_id: str,
) -> list[tuple[str, str]]:
    """The handshake headers as API Gateway passes them on, sorted by name (case-insensitively).

    API Gateway adds ``X-Amzn-Trace-Id``, ``X-Forwarded-For`` (the client's address),
    ``X-Forwarded-Port`` and ``X-Forwarded-Proto``. A client (or a proxy in front of hubbub) that
    sent its own keeps them: its ``X-Forwarded-For`` gets the peer address appended, as proxies
    do, and its port, protocol and trace id stand. Otherwise the port and protocol are those of
    the listener the client reached.
    """
    names = tuple(map(_FIRST, headers))
    plan = _GATEWAY_PLANS.get(names)
    if plan is None:
        plan = _cached(_GATEWAY_PLANS, names, _GatewayPlan)
    if plan.plain:
        return list(
            plan.order(
                [
                    *headers,
                    ("X-Amzn-Trace-Id", trace_id),
                    ("X-Forwarded-For", source_ip),
                    ("X-Forwarded-Port", str(port)),
                    ("X-Forwarded-Proto", proto),
                ]
            )
        )
    pairs = list(headers)
    for index in plan.forwarded_for:
        name, value = pairs[index]
        pairs[index] = (name, f"{value}, {source_ip}" if value else source_ip)
    trace, forwarded_for, forwarded_port, forwarded_proto = plan.add
    if trace:
        pairs.append(("X-Amzn-Trace-Id", trace_id))
    if forwarded_for:
        pairs.append(("X-Forwarded-For", source_ip))
    if forwarded_port:
        pairs.append(("X-Forwarded-Port", str(port)))
    if forwarded_proto:
        pairs.append(("X-Forwarded-Proto", proto))
    return list(plan.order(pairs))


def single_and_multi(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Group name/value pairs the way API Gateway does: the last value wins in the single map.

    Names are grouped by their exact spelling, as AWS preserves the case the client sent.
    """
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        values = multi.get(name)
        if values is None:
            multi[name] = [value]
        else:
            values.append(value)
    return single, multi


# Hop-by-hop headers of the upgrade: in the authorizer's input, not in the $connect event.
_NOT_IN_CONNECT = frozenset({"upgrade", "connection"})


def _kept(names: tuple[str, ...]) -> tuple[bool, ...] | None:
    kept = tuple(name.lower() not in _NOT_IN_CONNECT for name in names)
    return None if all(kept) else kept


_KEPT: dict[tuple[str, ...], tuple[bool, ...] | None] = {}
_UNKNOWN: Any = object()


def event_headers(
    headers: Sequence[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The ``headers`` and ``multiValueHeaders`` of a ``$connect`` event whose handshake (as
    :func:`gateway_headers` gives it) had ``headers``: all but ``Upgrade`` and ``Connection``."""
    names = tuple(map(_FIRST, headers))
    kept = _KEPT.get(names, _UNKNOWN)
    if kept is _UNKNOWN:
        kept = _cached(_KEPT, names, _kept)
    return single_and_multi(headers if kept is None else list(compress(headers, kept)))

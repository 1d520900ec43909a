"""Shared state behind small Protocols; one file per implementation, chosen by URL scheme
(the table in :mod:`hubbub.store.schemes`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from hubbub.errors import ConfigError
from hubbub.store.base import (
    Bus,
    BusHandler,
    ConnectionRecord,
    Delivery,
    Page,
    ReapHandler,
    Registry,
    Store,
)
from hubbub.store.schemes import STORE_SCHEMES, load, scheme_of


def open_store(
    url: str, *, node_id: str, key_prefix: str = "hubbub:", heartbeat_interval: float = 2.0
) -> Store:
    """Create (not start) the store named by ``url``.

    ``heartbeat_interval`` (seconds) matters to shared stores only: a node that misses three
    heartbeats is declared dead and its connections are reaped by the others.
    """
    scheme = scheme_of(url)
    if scheme is None or scheme.store is None:
        known = ", ".join(f"{s}://" for s in STORE_SCHEMES)
        raise ConfigError("store.url", f"unknown scheme {urlsplit(url).scheme!r} (known: {known})")
    factory = load(scheme.store, "store.url", scheme)
    try:
        store: Store = factory(
            url, node_id=node_id, key_prefix=key_prefix, heartbeat_interval=heartbeat_interval
        )
    except ValueError as exc:  # a malformed URL (hosts, service, database), a bad interval
        key = "store.heartbeat_interval" if "heartbeat" in str(exc) else "store.url"
        raise ConfigError(key, str(exc)) from exc
    return store


__all__ = [
    "STORE_SCHEMES",
    "Bus",
    "BusHandler",
    "ConnectionRecord",
    "Delivery",
    "Page",
    "ReapHandler",
    "Registry",
    "Store",
    "open_store",
]

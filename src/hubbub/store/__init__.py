"""Shared state behind small Protocols; one file per implementation, chosen by URL scheme."""

from __future__ import annotations

import importlib
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

# scheme -> "module:factory"; the factory takes (url, node_id=, key_prefix=, heartbeat_interval=).
_IMPLEMENTATIONS = {
    "memory": "hubbub.store.memory:open_memory",
    "redis": "hubbub.store.redis:open_redis",
    "rediss": "hubbub.store.redis:open_redis",
    "unix": "hubbub.store.redis:open_redis",
    "redis+sentinel": "hubbub.store.redis:open_redis",
    "redis+cluster": "hubbub.store.redis:open_redis",
}


# The schemes [store] url accepts (config.py validates against this table).
STORE_SCHEMES = tuple(_IMPLEMENTATIONS)


def open_store(
    url: str, *, node_id: str, key_prefix: str = "hubbub:", heartbeat_interval: float = 2.0
) -> Store:
    """Create (not start) the store named by ``url``.

    ``heartbeat_interval`` (seconds) matters to shared stores only: a node that misses three
    heartbeats is declared dead and its connections are reaped by the others.
    """
    scheme = urlsplit(url).scheme
    target = _IMPLEMENTATIONS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in _IMPLEMENTATIONS)
        raise ConfigError("store.url", f"unknown scheme {scheme!r} (known: {known})")
    module_name, _, factory = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            "store.url", f"{scheme}:// needs an extra package: pip install 'hubbub[redis]' ({exc})"
        ) from exc
    try:
        store: Store = getattr(module, factory)(
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

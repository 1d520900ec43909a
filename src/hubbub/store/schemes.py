"""The one table of URL schemes: which store and which history each opens, and what it supports.

``[store] url`` and ``[history] url`` are checked against it (:mod:`hubbub.config`), and
:func:`hubbub.store.open_store` and :func:`hubbub.store.recovery.open_recovery` open what it
names. Implementations are named as ``"module:attribute"`` and imported only when used, so a
scheme whose package is not installed (``redis``, an extra) fails with a message naming the extra,
and only when a URL asks for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hubbub.errors import ConfigError

_MEMORY_STORE = "hubbub.store.memory:open_memory"
_REDIS_STORE = "hubbub.store.redis:open_redis"
_MEMORY_HISTORY = "hubbub.store.recovery:open_memory_history"
_SQLITE_HISTORY = "hubbub.store.recovery_sqlite:open_sqlite_history"
_REDIS_HISTORY = "hubbub.store.recovery_redis:open_redis_history"


@dataclass(frozen=True)
class Scheme:
    """What one URL scheme opens and supports."""

    name: str
    # Opens a Store for [store] url: a factory taking (url, node_id=, key_prefix=,
    # heartbeat_interval=); None: not a store.
    store: str | None
    # The history (recovery) for [history] url, or for a [store] url it follows: a factory
    # taking (url, config).
    history: str
    # Several processes and nodes meet through it (workers, clusters); otherwise one process.
    shared: bool
    # The pip extra its implementations need, if any.
    extra: str | None = None


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("memory", _MEMORY_STORE, _MEMORY_HISTORY, shared=False),
        # History only: one node's history in a file, kept across restarts.
        Scheme("sqlite", None, _SQLITE_HISTORY, shared=False),
        Scheme("redis", _REDIS_STORE, _REDIS_HISTORY, shared=True, extra="redis"),
        Scheme("rediss", _REDIS_STORE, _REDIS_HISTORY, shared=True, extra="redis"),
        Scheme("unix", _REDIS_STORE, _REDIS_HISTORY, shared=True, extra="redis"),
        Scheme("redis+sentinel", _REDIS_STORE, _REDIS_HISTORY, shared=True, extra="redis"),
        Scheme("redis+cluster", _REDIS_STORE, _REDIS_HISTORY, shared=True, extra="redis"),
    )
}

# The schemes [store] url accepts, and those that several processes can share.
STORE_SCHEMES = tuple(name for name, s in SCHEMES.items() if s.store is not None)
SHARED_STORE_SCHEMES = tuple(name for name, s in SCHEMES.items() if s.shared)


def scheme_of(url: str) -> Scheme | None:
    """The table's entry for ``url``'s scheme, or None."""
    return SCHEMES.get(urlsplit(url).scheme)


def is_shared(url: str) -> bool:
    """Whether several processes can meet through the store at ``url``."""
    scheme = scheme_of(url)
    return scheme is not None and scheme.shared


def load(target: str, key: str, scheme: Scheme) -> Any:
    """The implementation ``"module:attribute"``; a ConfigError on ``key`` naming the missing
    extra when its package is not installed."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        install = f"pip install 'hubbub[{scheme.extra}]'"
        raise ConfigError(
            key, f"{scheme.name}:// needs an extra package: {install} ({exc})"
        ) from exc
    return getattr(module, attribute)

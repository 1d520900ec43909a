"""The scheme table: config validation, open_store and open_recovery all read it (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubbub.config import load_config
from hubbub.errors import ConfigError
from hubbub.store import open_store
from hubbub.store.memory import MemoryStore
from hubbub.store.recovery import MemoryRecovery, open_recovery
from hubbub.store.recovery_redis import RedisRecovery
from hubbub.store.recovery_sqlite import SqliteRecovery
from hubbub.store.redis import RedisStore
from hubbub.store.schemes import SCHEMES, SHARED_STORE_SCHEMES, STORE_SCHEMES, is_shared


def test_the_table_names_every_scheme_once_with_what_it_supports() -> None:
    assert STORE_SCHEMES == (
        "memory",
        "redis",
        "rediss",
        "unix",
        "redis+sentinel",
        "redis+cluster",
    )
    assert STORE_SCHEMES[1:] == SHARED_STORE_SCHEMES
    assert SCHEMES["sqlite"].store is None  # history only
    assert is_shared("redis://127.0.0.1:6379/0")
    assert not is_shared("memory://")
    assert not is_shared("postgres://x")


@pytest.mark.parametrize(
    ("url", "kind", "shared"),
    [("memory://", MemoryStore, False), ("redis://127.0.0.1:6379/0", RedisStore, True)],
)
def test_a_store_says_whether_it_is_shared(url: str, kind: type, shared: bool) -> None:
    store = open_store(url, node_id="n1")  # created, not started: no connection yet
    assert isinstance(store, kind)
    assert store.shared is shared is SCHEMES[url.partition(":")[0]].shared


def test_an_unknown_store_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        open_store("sqlite:///x.db", node_id="n1")
    assert caught.value.key == "store.url"
    assert "unknown scheme 'sqlite'" in str(caught.value)
    assert "memory://" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({}, MemoryRecovery),
        ({"history.url": "memory://"}, MemoryRecovery),
        ({"history.url": "sqlite:///h.db"}, SqliteRecovery),
        ({"store.url": "redis://127.0.0.1:6379/0"}, RedisRecovery),
        ({"history.url": "rediss://127.0.0.1:6379/0"}, RedisRecovery),
        # A Unix socket is a Redis URL like the others: accepted for the history too.
        ({"history.url": "unix:///tmp/redis.sock"}, RedisRecovery),
    ],
)
def test_open_recovery_opens_what_the_table_names(
    tmp_path: Path, overrides: dict[str, str], kind: type
) -> None:
    toml = tmp_path / "hubbub.toml"
    toml.write_text("")
    config = load_config(toml, env={}, overrides=overrides)
    recovery = open_recovery(config)
    assert isinstance(recovery, kind)
    if isinstance(recovery, SqliteRecovery):
        assert (tmp_path / "h.db").is_file()  # relative to the config's folder


def test_a_history_url_of_no_known_scheme_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, overrides={"history.url": "ftp://x"})
    assert caught.value.key == "history.url"
    assert "sqlite://" in str(caught.value)
    assert "'ftp://x'" in str(caught.value)

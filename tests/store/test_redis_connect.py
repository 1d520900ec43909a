"""Parsing ``redis+sentinel://`` and ``redis+cluster://`` URLs (no server needed)."""

from __future__ import annotations

import pytest
import redis.utils
from hypothesis import given
from hypothesis import strategies as st

from hubbub.store.redis_connect import Target, is_cluster, parse


def test_sentinel_url_names_hosts_service_and_database() -> None:
    assert parse("redis+sentinel://s1:26379,s2:26380,[::1]:26381/mymaster/3") == Target(
        "sentinel", (("s1", 26379), ("s2", 26380), ("::1", 26381)), service="mymaster", db=3
    )


def test_sentinel_database_defaults_to_zero() -> None:
    assert parse("redis+sentinel://s1:26379/cache").db == 0


def test_credentials_are_the_data_servers() -> None:
    target = parse("redis+cluster://app:p%40ss@n1:7000,n2:7001")
    assert (target.username, target.password) == ("app", "p@ss")
    assert target.hosts == (("n1", 7000), ("n2", 7001))
    assert parse("redis+cluster://:only-password@n1:7000").username is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "service"),
        ("redis+sentinel://s1:26379/a/b/c", "service"),
        ("redis+sentinel://s1:26379/mymaster/x", "database must be a number"),
        ("redis+sentinel:///mymaster", "names no host"),
        ("redis+sentinel://s1/mymaster", "is not host:port"),
        ("redis+cluster://n1:70000", "is not host:port"),
        ("redis+cluster://n1:7000/1", "database 0 only"),
        ("redis://n1:6379", "not a redis"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse(url)


def test_only_cluster_urls_are_sharded() -> None:
    assert is_cluster("redis+cluster://n1:7000")
    assert not is_cluster("redis+sentinel://s1:26379/m")
    assert not is_cluster("redis://n1:6379/0")


hosts = st.lists(
    st.tuples(
        st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
        st.integers(min_value=1, max_value=65535),
    ),
    min_size=1,
    max_size=5,
)


@given(hosts, st.integers(min_value=0, max_value=15))
def test_any_host_list_round_trips(pairs: list[tuple[str, int]], db: int) -> None:
    netloc = ",".join(f"{h}:{p}" for h, p in pairs)
    assert parse(f"redis+sentinel://{netloc}/svc/{db}").hosts == tuple(pairs)
    assert parse(f"redis+cluster://{netloc}").hosts == tuple(pairs)


@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    for scheme in ("redis+sentinel", "redis+cluster"):
        try:
            parse(f"{scheme}://{text}")
        except ValueError:
            pass


def test_the_redis_extra_parses_replies_in_c() -> None:
    """pyproject's ``redis`` extra brings hiredis: redis-py then parses each reply in C (about a
    quarter less CPU per call on the cross-node room path, docs/scaling.md)."""
    assert redis.utils.HIREDIS_AVAILABLE

"""Fixtures for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scripts.redis_ha import start_cluster, start_sentinel
from tests.store.redis_server import RedisUnavailable, find_redis


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 must never find real credentials or config on a developer machine.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # boto3's default session caches the credentials it found first; each test starts afresh.
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis server of the store, cluster and multi-node tests (found or started once)."""
    try:
        url, stop = find_redis()
    except RedisUnavailable as exc:
        pytest.fail(f"these tests need Redis: {exc}")
    yield url
    stop()


@pytest.fixture(scope="session")
def sentinel_url() -> Iterator[str]:
    """A ``redis+sentinel://`` URL: a private master, a replica and three Sentinels (started
    once per session; tests that kill the master start their own, see scripts/redis_ha.py)."""
    try:
        topology = start_sentinel()
    except RedisUnavailable as exc:
        pytest.fail(f"these tests need redis-server with Sentinel: {exc}")
    yield topology.url
    topology.close()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A ``redis+cluster://`` URL: a private three-master Redis Cluster (once per session)."""
    try:
        topology = start_cluster()
    except RedisUnavailable as exc:
        pytest.fail(f"these tests need redis-server and redis-cli for a cluster: {exc}")
    yield topology.url
    topology.close()

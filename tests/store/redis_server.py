"""Which Redis the store and cluster tests use (shared by their conftest files).

``HUBBUB_TEST_REDIS_URL`` wins; otherwise ``scripts/ensure_redis.py`` finds the server on
127.0.0.1:6379 or starts (and later stops) a private one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from hubbub.store.redis_connect import connect
from scripts.ensure_redis import RedisUnavailable, ensure_redis


def find_redis() -> tuple[str, Callable[[], None]]:
    """``(url, stop)`` of a Redis for tests; raises RedisUnavailable with the reason."""
    url = os.environ.get("HUBBUB_TEST_REDIS_URL")
    if url:
        return url, lambda: None
    return ensure_redis()


def unique_prefix() -> str:
    """A key prefix no other test (or concurrent test run) uses."""
    return f"hubbub-test-{uuid.uuid4().hex[:12]}:"


async def delete_prefix(url: str, key_prefix: str) -> None:
    """Remove every key a test's stores created (hash tags ``{prefix}``, ``{prefix/N}``)."""
    client = connect(url)  # a Cluster scans (and deletes on) every master
    try:
        # Registry keys carry the hash tag "{prefix}"; room history keys start with the prefix.
        batch = [
            key
            for pattern in ("{" + key_prefix + "*", key_prefix + "*")
            async for key in client.scan_iter(match=pattern, count=1000)
        ]
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


__all__ = ["RedisUnavailable", "delete_prefix", "find_redis", "unique_prefix"]

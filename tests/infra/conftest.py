"""A local DynamoDB for the import tests: moto's server mode (the dev extra's moto[server]),
on a free port, one per session; each test uses its own tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def dynamodb_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def dynamodb(dynamodb_url: str) -> str:
    """The local DynamoDB, emptied: no table of another test is left."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{dynamodb_url}/moto-api/reset", method="POST"))
    return dynamodb_url

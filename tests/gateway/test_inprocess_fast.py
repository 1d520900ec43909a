"""The PostToConnection fast path, in gateway/management/botocore_fast.py (``FastPost``).

Each comparison runs the same calls through a real boto3 client, as boto3 makes it, and through
its twin without the fast path (botocore's whole way, with hubbub's hooks), against a running
gateway, and compares what came back and what the WebSocket client received. Calls that take
botocore's way are counted at ``BaseClient._emit_api_params``, its first step after the
bookkeeping (``_make_api_call`` itself is not wrapped: a wrapper of it turns the fast path off).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import websockets
from botocore.client import BaseClient
from botocore.stub import Stubber

from hubbub.gateway.app import Gateway
from hubbub.gateway.management.botocore_fast import FastPost
from hubbub.testing import run_gateway
from tests.gateway.test_inprocess_caches import management_endpoints

HANDLERS = Path(__file__).parent / "handlers"
UNKNOWN_ID = "AAAAAAAAAAAAAAA="
SERVICE = "apigatewaymanagementapi"


def _client(endpoint: str, *, slow: bool = False, session: Any = None, **kwargs: Any) -> Any:
    client = (session or boto3.session.Session()).client(
        SERVICE,
        endpoint_url=endpoint,
        region_name=kwargs.pop("region_name", "us-east-1"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
        **kwargs,
    )
    assert isinstance(client._hubbub_fast, FastPost)
    if slow:  # botocore's whole way, hubbub's hooks answering before-call as without FastPost
        client._hubbub_fast = None
    return client


@pytest.fixture
def botocore_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How many calls each client (by id) made through botocore's own ``_make_api_call``."""
    calls: Counter[int] = Counter()
    original = BaseClient._emit_api_params

    def counting(self: Any, **kwargs: Any) -> Any:
        calls[id(self)] += 1
        return original(self, **kwargs)

    monkeypatch.setattr(BaseClient, "_emit_api_params", counting)
    return calls


@contextlib.asynccontextmanager
async def _connected() -> AsyncIterator[tuple[Gateway, str, Any]]:
    async with run_gateway({"api": {"domain_name": "gw.example.test"}}, base_dir=HANDLERS) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            yield gw, next(iter(gw.hub.connections)), ws


async def _received(ws: Any) -> list[Any]:
    """The messages the client has been sent, once no more come."""
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(await asyncio.wait_for(ws.recv(), 0.3))
    return got


def _outcome(call: Callable[[], Any]) -> tuple[str | None, Any]:
    """The exception's class and message, or the response without its request id."""
    try:
        response = dict(call())
    except Exception as exc:  # botocore's own, UnicodeEncodeError included
        return type(exc).__name__, str(exc)
    meta = dict(response.pop("ResponseMetadata"))
    request_id = meta.pop("RequestId", None)
    headers = dict(meta["HTTPHeaders"])
    assert headers.pop("x-amzn-requestid", None) == request_id
    headers.pop("date", None)
    return None, {**response, "ResponseMetadata": {**meta, "HTTPHeaders": headers}}


def _calls(client: Any, cid: str) -> list[Callable[[], Any]]:
    post = client.post_to_connection
    return [
        lambda: post(ConnectionId=cid, Data=b"bytes"),
        lambda: post(ConnectionId=cid, Data="text é"),
        lambda: post(ConnectionId=cid, Data=bytearray(b"bytearray")),
        lambda: post(ConnectionId=cid, Data=b""),
        lambda: post(ConnectionId=cid, Data=io.BytesIO(b"file-like")),  # botocore's way
        lambda: post(ConnectionId=UNKNOWN_ID, Data=b"x"),  # GoneException
        lambda: post(ConnectionId="a b/c+d?é", Data=b"x"),  # percent-encoded, GoneException
        lambda: post(ConnectionId=cid, Data=b"x" * 200_000),  # over the limit
        lambda: post(ConnectionId=cid, Data="\ud800"),  # not UTF-8 encodable
        lambda: post(Data=b"x"),  # ParamValidationError from here on
        lambda: post(ConnectionId=cid),
        lambda: post(ConnectionId=cid, Data=7),
        lambda: post(ConnectionId=7, Data=b"x"),
        lambda: post(ConnectionId=cid, Data=b"x", Extra=1),
    ]


_ONE_TRY = {"total_max_attempts": 1}
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "other region": {"region_name": "eu-west-1"},
    "adaptive retries": {
        "config": botocore.config.Config(
            retries={**_ONE_TRY, "mode": "adaptive"}, user_agent_extra="extra/1"
        )
    },
    "legacy retries": {"config": botocore.config.Config(retries={**_ONE_TRY, "mode": "legacy"})},
    "no validation": {"config": botocore.config.Config(parameter_validation=False)},
    "dual-stack": {"config": botocore.config.Config(use_dualstack_endpoint=True)},
    "fips": {"config": botocore.config.Config(use_fips_endpoint=True)},
    "client-side monitoring": {},  # AWS_CSM_ENABLED: botocore's monitor handles the events
}
# The four plain posts of a round, but the first of all (it resolves the endpoint).
FAST_POSTS = 2 * 4 - 1


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("endpoint", ["http", "https", "other stage", "domain name"])
async def test_fast_and_botocores_way_answer_alike(
    endpoint: str, config: str, botocore_calls: Counter[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if config == "client-side monitoring":
        monkeypatch.setenv("AWS_CSM_ENABLED", "true")
    async with _connected() as (gw, cid, ws):
        url = management_endpoints(gw)[endpoint]
        fast = _client(url, **CONFIGS[config])
        slow = _client(url, slow=True, **CONFIGS[config])
        results = []
        for client in (fast, slow):
            calls = _calls(client, cid) * 2
            outcomes = [await asyncio.to_thread(_outcome, call) for call in calls]
            results.append((outcomes, await _received(ws)))
            _close_monitor(client)
    assert results[0] == results[1]
    outcomes, messages = results[0]
    kinds = [kind for kind, _ in outcomes[:14]]
    invalid = ["ParamValidationError"] * 5 if config != "no validation" else kinds[9:]
    if endpoint == "other stage":
        assert kinds == ["ForbiddenException"] * 8 + ["UnicodeEncodeError", *invalid]
    else:
        sent = [None] * 5 + ["GoneException"] * 2 + ["PayloadTooLargeException"]
        assert kinds == [*sent, "UnicodeEncodeError", *invalid]
        if config != "no validation":  # botocore then sends some of the invalid ones
            assert messages == ["bytes", "text é", "bytearray", "", "file-like"] * 2
    assert botocore_calls[id(slow)] == 28
    taken = endpoint != "other stage" and config != "client-side monitoring"
    assert botocore_calls[id(fast)] == 28 - FAST_POSTS * taken


def _close_monitor(client: Any) -> None:
    """The UDP socket of botocore's client-side monitor, if the client has one."""
    emitter = client.meta.events._emitter
    for handler in emitter._handlers.prefix_search(f"after-call.{SERVICE}.PostToConnection"):
        publisher = getattr(getattr(handler, "__self__", None), "_publisher", None)
        if publisher is not None:
            publisher._socket.close()


EVENTS = [
    f"provide-client-params.{SERVICE}.PostToConnection",
    f"before-parameter-build.{SERVICE}",
    f"before-endpoint-resolution.{SERVICE}",
    "before-call",
    f"before-call.{SERVICE}.PostToConnection",
    f"after-call.{SERVICE}",
]


@pytest.mark.parametrize("event", EVENTS)
async def test_a_handler_on_an_event_of_the_call_takes_botocores_way(
    event: str, botocore_calls: Counter[int]
) -> None:
    """Registered after the fast path served the client, and unregistered again."""
    fired: list[str] = []

    def handler(event_name: str, **_: Any) -> None:
        fired.append(event_name)

    async with _connected() as (gw, cid, ws):
        client = _client(gw.management_url)

        async def post() -> None:
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")

        await post()
        await post()
        assert botocore_calls[id(client)] == 1  # the second came the fast way
        client.meta.events.register(event, handler)
        await post()
        assert botocore_calls[id(client)] == 2
        # hubbub's before-call handler, more specific, answers before a generic one.
        assert len(fired) == (event != "before-call")
        client.meta.events.unregister(event, handler)
        await post()
        assert botocore_calls[id(client)] == 2
        assert len(fired) == (event != "before-call")
        assert await _received(ws) == ["x"] * 4


async def test_a_session_handler_takes_botocores_way(botocore_calls: Counter[int]) -> None:
    fired: list[str] = []
    session = boto3.session.Session()
    session.events.register(
        f"after-call.{SERVICE}", lambda event_name, **_: fired.append(event_name)
    )
    async with _connected() as (gw, cid, ws):
        client = _client(gw.management_url, session=session)
        for _ in range(3):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")
        assert await _received(ws) == ["x"] * 3
    assert botocore_calls[id(client)] == 3
    assert fired == [f"after-call.{SERVICE}.PostToConnection"] * 3


async def test_a_stubbed_client_answers_from_its_stubber(botocore_calls: Counter[int]) -> None:
    """Even for a connection the gateway would post to (after the fast path served it)."""
    async with _connected() as (gw, cid, ws):
        client = _client(gw.management_url)
        for _ in range(2):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"real")
        with Stubber(client) as stub:
            stub.add_client_error("post_to_connection", "GoneException", http_status_code=410)
            with pytest.raises(client.exceptions.GoneException):
                await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")
            stub.assert_no_pending_responses()
        await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"real")
        assert await _received(ws) == ["real"] * 3
    assert botocore_calls[id(client)] == 2  # the first and the stubbed one


def _quotas(client: Any) -> Iterator[Any]:
    emitter = client.meta.events._emitter
    for handler in emitter._handlers.prefix_search(f"after-call.{SERVICE}.PostToConnection"):
        yield handler.__self__._quota


async def test_a_fast_post_gives_retry_quota_back_as_botocore_does(
    botocore_calls: Counter[int],
) -> None:
    async with _connected() as (gw, cid, _):
        clients = [_client(gw.management_url, slow=slow) for slow in (False, True)]
        for client in clients:
            (quota,) = _quotas(client)
            quota._available_capacity = 100  # as if retries had taken some
            for _ in range(5):
                await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")
    assert [q.available_capacity for c in clients for q in _quotas(c)] == [105, 105]
    assert botocore_calls[id(clients[0])] == 1


async def test_the_answer_is_botocores_parse_of_the_gateways_200(
    botocore_calls: Counter[int],
) -> None:
    """The same keys and values, in the same order, as botocore's way gives."""
    async with _connected() as (gw, cid, _):
        client = _client(gw.management_url)
        answers = [
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")
            for _ in range(2)
        ]
    assert botocore_calls[id(client)] == 1
    slow, fast = answers
    for answer in answers:
        meta = answer["ResponseMetadata"]
        assert meta["HTTPHeaders"]["x-amzn-requestid"] == meta.pop("RequestId")
        meta["HTTPHeaders"].pop("x-amzn-requestid")
    assert list(fast["ResponseMetadata"].items()) == list(slow["ResponseMetadata"].items())
    assert list(fast["ResponseMetadata"]["HTTPHeaders"]) == ["content-length"]
    assert fast == slow


class _Unhashable:
    """A handler botocore accepts though it cannot be a dict key or set member."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.calls = 0

    def __eq__(self, other: object) -> bool:
        return other is self

    def __call__(self, **_: Any) -> None:
        self.calls += 1


async def test_an_unhashable_handler_takes_botocores_way(botocore_calls: Counter[int]) -> None:
    handler = _Unhashable()
    async with _connected() as (gw, cid, ws):
        client = _client(gw.management_url)
        client.meta.events.register(f"before-parameter-build.{SERVICE}", handler)
        for _ in range(2):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")
        assert await _received(ws) == ["x"] * 2
    assert handler.calls == 2
    assert botocore_calls[id(client)] == 2


@pytest.mark.parametrize("wraps", [False, True])
async def test_a_wrapper_of_botocores_make_api_call_takes_botocores_way(
    wraps: bool, botocore_calls: Counter[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tracing libraries wrap it (AWS X-Ray, OpenTelemetry, ddtrace): each call is theirs to
    see. Wrapped after the fast path served the client."""
    traced: list[str] = []
    original = BaseClient._make_api_call

    def traced_call(self: Any, operation_name: str, api_params: Any) -> Any:
        traced.append(operation_name)
        return original(self, operation_name, api_params)

    async with _connected() as (gw, cid, ws):
        client = _client(gw.management_url)

        async def post() -> None:
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")

        await post()
        await post()
        assert botocore_calls[id(client)] == 1
        wrapper = functools.wraps(original)(traced_call) if wraps else traced_call
        monkeypatch.setattr(BaseClient, "_make_api_call", wrapper)
        await post()
        await post()
        assert await _received(ws) == ["x"] * 4
    assert traced == ["PostToConnection"] * 2
    assert botocore_calls[id(client)] == 3

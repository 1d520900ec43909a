"""The per-client caches of botocore's work for in-process calls, in
gateway/management/botocore_caches.py: ``_CachingResolver`` (the endpoint) and
``_CachingUserAgent`` (the User-Agent header).

Each test runs the same calls through a real boto3 client, as boto3 makes it (with the caches),
and through its twin with botocore's own resolver and user agent put back (without them), against
a running gateway, and compares what botocore built, what the handlers of its events saw, and
what came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import websockets
from botocore import useragent
from botocore.regions import EndpointRulesetResolver
from botocore.serialize import RestJSONSerializer
from botocore.stub import Stubber

from hubbub.gateway.app import Gateway
from hubbub.gateway.management import botocore_hooks
from hubbub.gateway.management.api import ManagementApi
from hubbub.gateway.transport_aiohttp import start_http
from hubbub.testing import run_gateway

HANDLERS = Path(__file__).parent / "handlers"
UNKNOWN_ID = "AAAAAAAAAAAAAAA="
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


def _client(endpoint: str, *, uncached: bool = False, **kwargs: Any) -> Any:
    client = boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=kwargs.pop("region_name", "us-east-1"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
        **kwargs,
    )
    if uncached:  # botocore's own resolver, user agent and serializer, as without hubbub
        client._ruleset_resolver.__class__ = EndpointRulesetResolver
        client._user_agent_creator.__class__ = useragent.UserAgentString
        client._serializer._serializer.__class__ = RestJSONSerializer
    return client


class _Seen:
    """What the handlers a user registers on one client's events saw, call after call."""

    def __init__(self, client: Any) -> None:
        self.events: list[tuple[str, Any]] = []
        self._agent = client._user_agent_creator
        events = client.meta.events
        events.register("before-endpoint-resolution.apigatewaymanagementapi", self._resolution)
        for operation in ("PostToConnection", "GetConnection", "DeleteConnection"):
            # Operation by operation, so before hubbub's (which may answer the call).
            events.register(f"before-call.apigatewaymanagementapi.{operation}", self._before_call)
        events.register("after-call.apigatewaymanagementapi", self._after_call)

    def _resolution(self, builtins: dict[str, Any], model: Any, params: Any, **_: Any) -> None:
        self.events.append(("before-endpoint-resolution", (model.name, sorted(params))))

    def _before_call(self, model: Any, params: dict[str, Any], context: Any, **_: Any) -> None:
        # Everything botocore built, but the client's own Config object.
        ctx = {k: v for k, v in context.items() if k != "client_config"}
        request = {k: v for k, v in params.items() if k != "context"}
        header = request["headers"]["User-Agent"]
        # The header botocore itself builds at this point of the call (same feature ids).
        assert header == useragent.UserAgentString.to_string(self._agent)
        # Feature ids come from a set: two clients may list the same ones in another order.
        request["headers"] = {
            **request["headers"],
            "User-Agent": " ".join(
                "m/" + ",".join(sorted(part[2:].split(","))) if part.startswith("m/") else part
                for part in header.split(" ")
            ),
        }
        self.events.append(("before-call", (model.name, request, ctx)))

    def _after_call(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        self.events.append(("after-call", http_response.status_code))


def _outcome(call: Callable[[], Any]) -> tuple[str | None, Any]:
    """The exception's class and message, or the response without its request id and date."""
    try:
        response = dict(call())
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        return type(exc).__name__, str(exc)
    meta = dict(response.pop("ResponseMetadata"))
    meta.pop("RequestId", None)
    meta["HTTPHeaders"] = {
        k: v for k, v in meta["HTTPHeaders"].items() if k not in ("date", "x-amzn-requestid")
    }
    response.pop("ConnectedAt", None)
    response.pop("LastActiveAt", None)
    return None, {**response, "ResponseMetadata": meta}


def _run(client: Any, cid: str) -> tuple[list[tuple[str | None, Any]], list[tuple[str, Any]]]:
    """The outcomes of a mix of calls, twice over (the second round from the caches), and what
    the client's event handlers saw meanwhile."""
    seen = _Seen(client)
    calls: list[Callable[[], Any]] = [
        lambda: client.post_to_connection(ConnectionId=cid, Data=b"x"),
        lambda: client.post_to_connection(ConnectionId=UNKNOWN_ID, Data=b"x"),
        lambda: client.get_connection(ConnectionId=UNKNOWN_ID),
        lambda: client.delete_connection(ConnectionId=UNKNOWN_ID),
        lambda: client.post_to_connection(Data=b"x"),  # ParamValidationError
        lambda: client.post_to_connection(ConnectionId=cid, Data=7),  # ParamValidationError
        lambda: client.post_to_connection(ConnectionId=cid, Data="text"),
        # Ids that need percent-encoding in the path (no such connection).
        lambda: client.post_to_connection(ConnectionId="a b/c+d?é", Data=b"x"),
        lambda: client.get_connection(ConnectionId="a b/c+d?é"),
    ]
    outcomes = [_outcome(call) for _ in range(2) for call in calls]
    return outcomes, seen.events


@contextlib.asynccontextmanager
async def _connected() -> AsyncIterator[tuple[Gateway, str]]:
    async with run_gateway({"api": {"domain_name": "gw.example.test"}}, base_dir=HANDLERS) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None):
            yield gw, next(iter(gw.hub.connections))


def management_endpoints(gw: Gateway) -> dict[str, str]:
    """The management endpoints a client may be given for ``gw``, by name (also used by
    test_inprocess_fast.py)."""
    return {
        "http": gw.management_url,
        "https": gw.management_https_url or gw.management_url,
        "other stage": gw.management_url.rsplit("/", 1)[0] + "/prod",
        "domain name": "https://gw.example.test/dev",
    }


CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {"config": NO_RETRIES},
    "other region": {"config": NO_RETRIES, "region_name": "eu-west-1"},
    "custom config": {
        "config": botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "adaptive"},
            user_agent_extra="extra/1",
            user_agent_appid="app-1",
            read_timeout=7,
        )
    },
    "dual-stack": {"config": botocore.config.Config(use_dualstack_endpoint=True)},
    "fips": {"config": botocore.config.Config(use_fips_endpoint=True)},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("endpoint", ["http", "https", "other stage", "domain name"])
async def test_cached_clients_build_and_answer_as_uncached_ones(endpoint: str, config: str) -> None:
    async with _connected() as (gw, cid):
        url = management_endpoints(gw)[endpoint]
        cached = _client(url, **CONFIGS[config])
        uncached = _client(url, uncached=True, **CONFIGS[config])
        assert type(cached._ruleset_resolver) is botocore_hooks._CachingResolver
        got, got_seen = await asyncio.to_thread(_run, cached, cid)
        want, want_seen = await asyncio.to_thread(_run, uncached, cid)
    assert got == want
    assert got_seen == want_seen
    # The second round came from the caches.
    assert cached._ruleset_resolver._hubbub_cache
    assert cached._user_agent_creator._hubbub_strings
    assert cached._serializer._serializer._hubbub_uris
    kinds = [kind for kind, _ in got[:9]]
    gone = None if endpoint != "other stage" else "ForbiddenException"
    assert kinds == [
        gone,
        gone or "GoneException",
        gone or "GoneException",
        gone or "GoneException",
        "ParamValidationError",
        "ParamValidationError",
        gone,
        gone or "GoneException",
        gone or "GoneException",
    ]
    # Every call resolves its endpoint (botocore validates afterwards), cached or not; the
    # calls that fail validation stop there.
    names = [name for name, _ in got_seen]
    assert names.count("before-endpoint-resolution") == 18
    assert names.count("before-call") == names.count("after-call") == 14


async def test_an_endpoint_resolution_error_is_raised_as_uncached_every_time() -> None:
    """A handler that takes the endpoint and region away leaves no endpoint to resolve."""

    def unset(builtins: dict[str, Any], **_: Any) -> None:
        builtins["SDK::Endpoint"] = builtins["AWS::Region"] = None

    async with _connected() as (gw, _):
        clients = [_client(gw.management_url, uncached=u, config=NO_RETRIES) for u in (False, True)]
        for client in clients:
            client.meta.events.register("before-endpoint-resolution.apigatewaymanagementapi", unset)
        outcomes = [
            await asyncio.to_thread(_outcome, lambda c=c: c.get_connection(ConnectionId="a="))
            for c in clients * 2
        ]
    assert outcomes[0][0] == "EndpointResolutionError"
    assert outcomes == [outcomes[0]] * 4


def _every_other_call_to(client: Any, endpoint: str) -> None:
    """A ``before-endpoint-resolution`` handler sending every other call to ``endpoint``."""
    calls = 0

    def redirect(builtins: dict[str, Any], **_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            builtins["SDK::Endpoint"] = endpoint

    client.meta.events.register("before-endpoint-resolution.apigatewaymanagementapi", redirect)


async def test_builtins_changed_by_a_handler_are_the_cache_key() -> None:
    """Each call goes where the handler sends it, as without the cache."""
    async with _connected() as (gw, cid):
        prod = gw.management_url.rsplit("/", 1)[0] + "/prod"
        results = []
        for uncached in (False, True):
            client = _client(gw.management_url, uncached=uncached, config=NO_RETRIES)
            _every_other_call_to(client, prod)
            post = functools.partial(client.post_to_connection, ConnectionId=cid, Data=b"x")
            results.append([await asyncio.to_thread(_outcome, post) for _ in range(4)])
    assert results[0] == results[1]
    assert [kind for kind, _ in results[0]] == [None, "ForbiddenException"] * 2


async def test_an_endpoint_that_is_not_a_gateway_of_this_process_is_not_cached() -> None:
    """A listener no gateway registered (standing in for AWS) gets each request over the
    network, signed, with botocore's own endpoint resolution every time."""
    async with _connected() as (gw, cid):
        api = ManagementApi(gw, stage=gw.config.api.stage, health=gw.health)
        listener = await start_http(
            host="127.0.0.1", port=0, handler=api.handle, max_body=gw.config.limits.max_post_bytes
        )
        try:
            url = f"http://127.0.0.1:{listener.port}/dev"
            cached = _client(url, config=NO_RETRIES)
            uncached = _client(url, uncached=True, config=NO_RETRIES)
            sent: list[str] = []
            cached.meta.events.register(
                "before-send", lambda request, **_: sent.append(request.headers["Authorization"])
            )
            got, got_seen = await asyncio.to_thread(_run, cached, cid)
            want, want_seen = await asyncio.to_thread(_run, uncached, cid)
        finally:
            await listener.close()
    assert got == want
    assert got_seen == want_seen
    assert len(sent) == 14  # every call that passed validation went to the network
    assert not cached._ruleset_resolver._hubbub_cache


async def test_a_stubbed_client_still_answers_from_its_stubber() -> None:
    async with _connected() as (gw, _):
        client = _client(gw.management_url, config=NO_RETRIES)
        with Stubber(client) as stub:
            for _ in range(2):
                stub.add_client_error("post_to_connection", "GoneException", http_status_code=410)
            for _ in range(2):
                with pytest.raises(client.exceptions.GoneException):
                    await asyncio.to_thread(client.post_to_connection, ConnectionId="a=", Data=b"x")
            stub.assert_no_pending_responses()

"""boto3 calls to the gateway's own management API are answered in-process
(gateway/management/inprocess.py, gateway/management/botocore_hooks.py).

Every test uses the real boto3 client. To prove a call never touched the network, the tests stop
the management listeners first: over the network the same call would then be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import websockets
from botocore.endpoint import convert_to_response_dict
from botocore.stub import Stubber

from hubbub.errors import LimitExceededError
from hubbub.gateway.app import Gateway
from hubbub.gateway.management import botocore_hooks
from hubbub.gateway.management.api import ManagementApi
from hubbub.gateway.management.inprocess import listener_origins, serve
from hubbub.gateway.management.targets import InProcessEndpoint
from hubbub.gateway.transport_aiohttp import Listener, start_http
from hubbub.testing import run_gateway
from hubbub.wire.http import HttpRequest, HttpResponse
from tests.helpers import eventually, free_port
from tests.store.redis_server import delete_prefix, unique_prefix

HANDLERS = Path(__file__).parent / "handlers"
UNKNOWN_ID = "AAAAAAAAAAAAAAA="
ROUTES = {
    "manage": {"handler": "boto_app.manage", "route_response": True},
    "seed": {"handler": "boto_app.seed"},
    "blocking": {"handler": "boto_app.blocking_on_the_loop"},
}
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


def _client(endpoint: str, **kwargs: Any) -> Any:
    return boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=kwargs.pop("key", "test"),
        aws_secret_access_key=kwargs.pop("secret", "test"),
        **kwargs,
    )


async def _offline(gw: Gateway) -> None:
    """Close the management listeners: from now on only the in-process path can answer."""
    for listener in (gw.management, gw.management_tls):
        if listener is not None:
            await listener.stop_accepting()


@contextlib.asynccontextmanager
async def _gateway(**raw: Any) -> AsyncIterator[Gateway]:
    async with run_gateway({"routes": ROUTES, **raw}, base_dir=HANDLERS) as gw:
        yield gw


async def _manage(ws: Any, **body: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"action": "manage", **body}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return reply


# -- the seed pattern, with the listeners closed ------------------------------------------------
async def test_a_plain_handler_posts_gets_and_deletes_without_the_network() -> None:
    async with _gateway() as gw:
        async with websockets.connect(gw.websocket_url, user_agent_header="ua/1") as ws:
            await _offline(gw)
            for endpoint in (gw.management_url, gw.management_https_url, None):
                post = {"action": "manage", "op": "post", "data": "hi", "endpoint": endpoint}
                await ws.send(json.dumps(post))
                assert await asyncio.wait_for(ws.recv(), 10) == "hi"
                assert await asyncio.wait_for(ws.recv(), 10) == '{"result": null}'
                got = await _manage(ws, op="get", endpoint=endpoint)
                assert got["result"] == {
                    "identity": {"SourceIp": "127.0.0.1", "UserAgent": "ua/1"},
                    "status": 200,
                }
            await ws.send(json.dumps({"action": "manage", "op": "delete"}))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000


async def test_the_seed_handler_with_websocket_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    async with _gateway() as gw:
        monkeypatch.setenv("WEBSOCKET_ENDPOINT", gw.management_url)
        async with websockets.connect(gw.websocket_url) as ws:
            await _offline(gw)
            await ws.send('{"action": "seed", "n": 1}')
            assert await asyncio.wait_for(ws.recv(), 10) == '{"action": "seed", "n": 1}'


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_endpoint_built_from_the_host_header_reaches_the_management_api(
    host: str,
) -> None:
    # On AWS headers.Host == domainName, so https://{Host}/{stage} is the management endpoint.
    routes = {
        **ROUTES,
        "$connect": {"handler": "boto_app.remember_host"},
        "via_host": {"handler": "boto_app.post_via_host"},
    }
    async with run_gateway({"routes": routes}, base_dir=HANDLERS) as gw:
        assert gw.public is not None
        url = f"ws://{host}:{gw.public.port}/dev"
        async with websockets.connect(url) as ws:
            await _offline(gw)
            await ws.send('{"action": "via_host"}')
            assert await asyncio.wait_for(ws.recv(), 10) == "via host"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST"])
async def test_loopback_spellings_of_the_listener_are_in_process(host: str) -> None:
    async with _gateway() as gw:
        assert gw.management is not None
        await _offline(gw)
        client = _client(f"http://{host}:{gw.management.port}/dev", config=NO_RETRIES)
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(client.get_connection, ConnectionId=UNKNOWN_ID)


async def test_a_configured_domain_name_is_in_process() -> None:
    async with _gateway(api={"domain_name": "gateway.example.test"}) as gw:
        await _offline(gw)
        client = _client("https://gateway.example.test/dev", config=NO_RETRIES)
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(client.get_connection, ConnectionId=UNKNOWN_ID)


# -- same answers as over HTTP ------------------------------------------------------------------
def _outcome(call: Any) -> dict[str, Any]:
    """What boto3 made of the answer: the exception class and the parsed response."""
    try:
        response = call()
        kind = None
    except botocore.exceptions.ClientError as exc:
        response, kind = exc.response, type(exc).__name__
    meta = response.pop("ResponseMetadata")
    headers = {
        k: v
        for k, v in meta["HTTPHeaders"].items()
        if k not in ("date", "server", "x-amzn-requestid")
    }
    return {"kind": kind, "status": meta["HTTPStatusCode"], "headers": headers, **response}


async def _outcomes(endpoint: str, cid: str) -> list[dict[str, Any]]:
    ok = _client(endpoint, config=NO_RETRIES)
    wrong_stage = _client(endpoint.rsplit("/", 1)[0] + "/prod", config=NO_RETRIES)
    calls = [
        lambda: ok.post_to_connection(ConnectionId=cid, Data=b"x"),
        lambda: ok.get_connection(ConnectionId=cid),
        lambda: ok.post_to_connection(ConnectionId=UNKNOWN_ID, Data=b"x"),
        lambda: ok.post_to_connection(ConnectionId=cid, Data=b"x" * (128 * 1024 + 1)),
        lambda: ok.get_connection(ConnectionId=UNKNOWN_ID),
        lambda: ok.delete_connection(ConnectionId=UNKNOWN_ID),
        lambda: wrong_stage.get_connection(ConnectionId=cid),
    ]
    return [await asyncio.to_thread(_outcome, call) for call in calls]


@contextlib.asynccontextmanager
async def _network_twin(gw: Gateway) -> AsyncIterator[str]:
    """The gateway's management API on one more listener, which no gateway registered: calls
    to it go over the network, to the same state."""
    api = ManagementApi(gw, stage=gw.config.api.stage, health=gw.health)
    max_body = gw.config.limits.max_post_bytes
    listener = await start_http(host="127.0.0.1", port=0, handler=api.handle, max_body=max_body)
    try:
        yield f"http://127.0.0.1:{listener.port}/{gw.config.api.stage}"
    finally:
        await listener.close()


async def test_responses_and_exceptions_match_the_http_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _gateway() as gw, _network_twin(gw) as network_url:
        async with websockets.connect(gw.websocket_url, max_size=None):
            cid = next(iter(gw.hub.connections))
            await _offline(gw)
            network = await _outcomes(network_url, cid)
            in_process = await _outcomes(gw.management_url, cid)
            # Older botocore does not pass the request context on to before-send: every call
            # is then answered there, none in before-call.
            monkeypatch.setattr(botocore_hooks, "_CONTEXT_REACHES_SEND", False)
            older_botocore = await _outcomes(gw.management_url, cid)
    assert in_process == network
    assert older_botocore == network
    assert network[1]["Identity"]["SourceIp"] == "127.0.0.1"
    assert [r["kind"] for r in network] == [
        None,
        None,
        "GoneException",
        "PayloadTooLargeException",
        "GoneException",
        "GoneException",
        "ForbiddenException",
    ]


class _Limited:
    """A stand-in for the service layer whose PostToConnection is always over a limit."""

    def __init__(self) -> None:
        self.calls = 0
        self.connections = self

    async def post(self, connection_id: str, data: bytes) -> None:
        self.calls += 1
        raise LimitExceededError("slow down")

    async def get(self, connection_id: str) -> dict[str, Any]:
        await asyncio.Event().wait()  # never answers
        raise AssertionError

    async def delete(self, connection_id: str) -> None:
        raise asyncio.CancelledError  # as when the gateway shuts down mid-call


@pytest.fixture
async def limited() -> AsyncIterator[tuple[_Limited, ManagementApi, Listener]]:
    service = _Limited()
    api = ManagementApi(service, stage="dev")  # type: ignore[arg-type]
    listener = await start_http(host="127.0.0.1", port=0, handler=api.handle, max_body=1024)
    try:
        yield service, api, listener
    finally:
        await listener.close()


@pytest.mark.parametrize("in_process", [True, False])
async def test_limit_exceeded_is_raised_and_retried_like_over_http(
    limited: tuple[_Limited, ManagementApi, Listener], in_process: bool
) -> None:
    service, api, listener = limited
    endpoint = serve(api.handle, listeners=[("http", listener)]) if in_process else None
    retry_once = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 2})
    client = _client(f"http://127.0.0.1:{listener.port}/dev", config=retry_once)
    try:
        if in_process:
            await listener.stop_accepting()
        with pytest.raises(client.exceptions.LimitExceededException) as caught:
            await asyncio.to_thread(client.post_to_connection, ConnectionId="abc=", Data=b"x")
    finally:
        if endpoint is not None:
            endpoint.close()
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert caught.value.response["Error"]["Message"] == "slow down"
    assert service.calls == 2


async def test_an_answer_slower_than_the_read_timeout_raises_read_timeout(
    limited: tuple[_Limited, ManagementApi, Listener],
) -> None:
    _, api, listener = limited
    endpoint = serve(api.handle, listeners=[("http", listener)])
    config = botocore.config.Config(read_timeout=0.2, retries={"total_max_attempts": 1})
    client = _client(f"http://127.0.0.1:{listener.port}/dev", config=config)
    try:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            await asyncio.to_thread(client.get_connection, ConnectionId="abc=")
    finally:
        endpoint.close()


@pytest.mark.parametrize("in_process", [True, False])
async def test_an_operation_cancelled_on_the_loop_is_a_closed_connection(
    limited: tuple[_Limited, ManagementApi, Listener], in_process: bool
) -> None:
    _, api, listener = limited
    endpoint = serve(api.handle, listeners=[("http", listener)]) if in_process else None
    client = _client(f"http://127.0.0.1:{listener.port}/dev", config=NO_RETRIES)
    try:
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            await asyncio.to_thread(client.delete_connection, ConnectionId="abc=")
    finally:
        if endpoint is not None:
            endpoint.close()


# -- what stays on the network -----------------------------------------------------------------
async def test_other_endpoints_are_untouched_and_still_signed(
    limited: tuple[_Limited, ManagementApi, Listener],
) -> None:
    """A listener no gateway registered (standing in for AWS) gets the request, signed."""
    _, _, listener = limited
    async with _gateway():
        client = _client(f"http://127.0.0.1:{listener.port}/dev", config=NO_RETRIES)
        seen: list[dict[str, str]] = []
        client.meta.events.register(
            "before-send", lambda request, **_: seen.append(dict(request.headers))
        )
        with pytest.raises(client.exceptions.LimitExceededException):
            await asyncio.to_thread(client.post_to_connection, ConnectionId="abc=", Data=b"x")
        assert "Authorization" in seen[0]
        # And it came over the network: with the listener closed, a new client cannot reach it.
        await listener.stop_accepting()
        fresh = _client(f"http://127.0.0.1:{listener.port}/dev", config=NO_RETRIES)
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            await asyncio.to_thread(fresh.post_to_connection, ConnectionId="abc=", Data=b"x")


async def test_in_process_false_uses_the_network() -> None:
    async with _gateway(management={"in_process": False}) as gw:
        assert gw.in_process is None
        await _offline(gw)
        client = _client(gw.management_url, config=NO_RETRIES)
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            await asyncio.to_thread(client.get_connection, ConnectionId=UNKNOWN_ID)


async def test_a_closed_gateway_is_no_longer_in_process() -> None:
    async with _gateway() as gw:
        url = gw.management_url
    client = _client(url, config=NO_RETRIES)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        await asyncio.to_thread(client.get_connection, ConnectionId=UNKNOWN_ID)


@dataclass
class _Bound:
    """Where a listener would be: enough for serve()."""

    host: str
    port: int


def test_a_gateway_whose_loop_is_gone_is_left_to_the_network() -> None:
    async def handle(request: HttpRequest) -> HttpResponse:
        raise AssertionError("never called")

    async def register() -> InProcessEndpoint:
        return serve(handle, listeners=[("http", _Bound("127.0.0.1", port))])  # type: ignore[list-item]

    port = free_port()
    loop = asyncio.new_event_loop()
    endpoint = loop.run_until_complete(register())
    loop.close()  # as after a crash: the gateway never closed its endpoint
    try:
        client = _client(f"http://127.0.0.1:{port}/dev", config=NO_RETRIES)
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            client.get_connection(ConnectionId=UNKNOWN_ID)
    finally:
        endpoint.close()


# -- signing -----------------------------------------------------------------------------------
def _signature_seen(client: Any) -> list[bool]:
    seen: list[bool] = []
    client.meta.events.register(
        "before-send", lambda request, **_: seen.append("Authorization" in request.headers)
    )
    return seen


async def test_auth_none_skips_signing_and_posts_skip_sending() -> None:
    async with _gateway() as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = next(iter(gw.hub.connections))
            await _offline(gw)
            client = _client(gw.management_url, config=NO_RETRIES)
            seen = _signature_seen(client)
            with pytest.raises(client.exceptions.GoneException):
                await asyncio.to_thread(client.get_connection, ConnectionId=UNKNOWN_ID)
            assert seen == [False]
            # A successful post is answered before botocore builds a request to send.
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            assert seen == [False]


async def test_a_post_to_a_local_connection_does_not_wait_for_the_loop() -> None:
    # The loop is held by a callback until the post returns: a post that waited for the loop
    # would only return after the callback's 10 s timeout, and the callback would see it unset.
    async with _gateway() as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = next(iter(gw.hub.connections))
            await _offline(gw)
            client = _client(gw.management_url, config=NO_RETRIES)
            posted = threading.Event()
            seen: list[bool] = []

            def post() -> None:
                client.post_to_connection(ConnectionId=cid, Data=b"one")
                client.post_to_connection(ConnectionId=cid, Data=b"two")
                posted.set()

            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: seen.append(posted.wait(10)))
            await asyncio.to_thread(post)
            assert seen == [True]
            # Sent on the loop afterwards, in the order posted.
            assert await asyncio.wait_for(ws.recv(), 10) == "one"
            assert await asyncio.wait_for(ws.recv(), 10) == "two"


async def test_posts_accepted_together_wake_the_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each wake-up of the loop from a thread is a system call (and often a context switch): the
    # posts a thread makes while the loop is busy go out in one batch, still in order.
    async with _gateway() as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = next(iter(gw.hub.connections))
            await _offline(gw)
            client = _client(gw.management_url, config=NO_RETRIES)
            loop = asyncio.get_running_loop()
            wakes: list[object] = []
            schedule = loop.call_soon_threadsafe

            def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
                if threading.current_thread().name == "poster":
                    wakes.append(callback)
                return schedule(callback, *args, **kwargs)

            monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
            posted = threading.Event()

            def post() -> None:
                for i in range(5):
                    client.post_to_connection(ConnectionId=cid, Data=f"m{i}".encode())
                posted.set()

            poster = threading.Thread(target=post, name="poster")
            loop.call_soon(lambda: posted.wait(10))  # the loop is busy while the thread posts
            poster.start()
            await asyncio.to_thread(poster.join, 10)
            assert posted.is_set()
            assert len(wakes) == 1
            assert [await asyncio.wait_for(ws.recv(), 10) for _ in range(5)] == [
                f"m{i}" for i in range(5)
            ]


def test_an_accepted_post_is_answered_as_botocores_parser_reads_it() -> None:
    # The hot path builds the parsed 200 itself instead of running botocore's parser.
    client = _client("http://127.0.0.1:9/dev")
    model = client.meta.service_model.operation_model("PostToConnection")
    url = "http://127.0.0.1:9/dev/%40connections/abc%3D"
    answer = HttpResponse(200, {"x-amzn-RequestId": "req-1"}, b"")
    http, parsed = botocore_hooks._accepted(url, answer)
    parser = botocore_hooks._parser(model.service_model.protocol)
    expected = parser.parse(convert_to_response_dict(http, model), model.output_shape)
    expected["ResponseMetadata"]["RetryAttempts"] = 0  # botocore's endpoint adds it
    assert parsed == expected
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"
    assert (http.status_code, http.content) == (200, b"")


async def test_posts_the_thread_cannot_answer_take_the_whole_way() -> None:
    # Unknown ids, closing connections and payloads over the limit get the loop's own answers.
    async with _gateway(limits={"max_post_bytes": 8}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = next(iter(gw.hub.connections))
            await _offline(gw)
            client = _client(gw.management_url, config=NO_RETRIES)
            with pytest.raises(client.exceptions.GoneException):
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId=UNKNOWN_ID, Data=b"x"
                )
            with pytest.raises(client.exceptions.PayloadTooLargeException):
                await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x" * 9)
            gw.hub.connections[cid].closing = True
            with pytest.raises(client.exceptions.GoneException):
                await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"x")
            gw.hub.connections[cid].closing = False
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"ok")
            assert await asyncio.wait_for(ws.recv(), 10) == "ok"


async def test_a_stubber_still_answers_first() -> None:
    async with _gateway() as gw:
        client = _client(gw.management_url, config=NO_RETRIES)
        with Stubber(client) as stubber:
            stubber.add_response(
                "post_to_connection", {}, {"ConnectionId": UNKNOWN_ID, "Data": b"x"}
            )
            await asyncio.to_thread(client.post_to_connection, ConnectionId=UNKNOWN_ID, Data=b"x")
            stubber.assert_no_pending_responses()


SIGV4 = {"auth": "sigv4", "credentials": [{"access_key_id": "AKIDOK", "secret_access_key": "s"}]}


async def test_auth_sigv4_still_verifies_signatures_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No credentials in the environment: handlers get the gateway's execution role.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with _gateway(management=SIGV4) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await _offline(gw)
            # A handler with the execution role hubbub gives it: accepted.
            got = await _manage(ws, op="get")
            assert got.get("result", {}).get("status") == 200, got
            good = _client(gw.management_url, key="AKIDOK", secret="s", config=NO_RETRIES)
            seen = _signature_seen(good)
            with pytest.raises(good.exceptions.GoneException):
                await asyncio.to_thread(good.get_connection, ConnectionId=UNKNOWN_ID)
            assert seen == [True]
            bad = _client(gw.management_url, key="AKIDOK", secret="wrong", config=NO_RETRIES)
            with pytest.raises(bad.exceptions.ForbiddenException):
                await asyncio.to_thread(bad.get_connection, ConnectionId=UNKNOWN_ID)
            other = _client(gw.management_url, key="AKIDNOBODY", secret="s", config=NO_RETRIES)
            with pytest.raises(other.exceptions.ForbiddenException):
                await asyncio.to_thread(other.get_connection, ConnectionId=UNKNOWN_ID)


# -- async def handlers ------------------------------------------------------------------------
async def test_blocking_boto3_in_an_async_handler_fails_fast(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _gateway() as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "blocking"}')
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["message"] == "Internal server error"
            # The loop was never blocked: the gateway keeps answering on this socket.
            assert (await _manage(ws, op="get"))["result"]["status"] == 200
    assert "BlockingCallError" in caplog.text
    assert "plain def" in caplog.text


# -- multi-node ---------------------------------------------------------------------------------
@pytest.mark.redis
async def test_a_post_to_a_connection_on_another_node(redis_url: str) -> None:
    prefix = unique_prefix()
    store = {"url": redis_url, "key_prefix": prefix}
    try:
        async with _gateway(store=store) as a, _gateway(store=store) as b:
            async with websockets.connect(a.websocket_url) as on_a:
                async with websockets.connect(b.websocket_url) as on_b:
                    cid_b = (await eventually(lambda: list(b.hub.connections)))[0]
                    await _offline(a)
                    await _offline(b)
                    reply = await _manage(on_a, op="post", target=cid_b, data="across")
                    assert reply == {"result": None}
                    assert await asyncio.wait_for(on_b.recv(), 10) == "across"
                    got = await _manage(on_a, op="get", target=cid_b)
                    assert got["result"]["status"] == 200
    finally:
        await delete_prefix(redis_url, prefix)


# -- registration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scheme", "host", "port", "expected"),
    [
        (
            "http",
            "127.0.0.1",
            8081,
            {"http://127.0.0.1:8081", "http://localhost:8081"},
        ),
        (
            "https",
            "0.0.0.0",
            443,
            {
                "https://0.0.0.0:443",
                "https://0.0.0.0",
                "https://localhost:443",
                "https://localhost",
                "https://127.0.0.1:443",
                "https://127.0.0.1",
            },
        ),
        (
            "http",
            "::",
            80,
            {
                "http://[::]:80",
                "http://[::]",
                "http://localhost:80",
                "http://localhost",
                "http://[::1]:80",
                "http://[::1]",
            },
        ),
        ("https", "Gateway.Example.TEST", 8443, {"https://gateway.example.test:8443"}),
    ],
)
def test_listener_origins(scheme: str, host: str, port: int, expected: set[str]) -> None:
    assert set(listener_origins(scheme, host, port)) == expected


_DEFAULT_SESSION_FIRST = textwrap.dedent(
    """
    import asyncio, boto3
    from hubbub.testing import run_gateway

    boto3.setup_default_session(
        region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )

    async def main():
        async with run_gateway({}) as gw:
            await gw.management.stop_accepting()
            await gw.management_tls.stop_accepting()
            client = boto3.client("apigatewaymanagementapi", endpoint_url=gw.management_url)
            try:
                await asyncio.to_thread(client.get_connection, ConnectionId="AAAAAAAAAAAAAAA=")
            except client.exceptions.GoneException:
                print("in-process")

    asyncio.run(main())
    """
)


def test_boto3s_default_session_made_before_the_gateway_is_hooked(tmp_path: Path) -> None:
    # A fresh interpreter: in this one, the hooks were installed long ago.
    out = subprocess.run(
        [sys.executable, "-c", _DEFAULT_SESSION_FIRST],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert out.stdout.strip() == "in-process", out.stderr

"""$connect authorizers and SigV4 on the management API (docs/security.md), end to end."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import ModuleType

import aiohttp
import boto3
import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually

AUTH = {
    "handler": "auth.handler",
    "identity_source": ["route.request.header.Authorization"],
}


async def _status(url: str, **kwargs: object) -> int:
    try:
        async with websockets.connect(url, **kwargs):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize(
    ("token", "status"),
    [("allow", 101), ("deny", 403), ("nope", 401), ("boom", 500), ("badctx", 500)],
)
async def test_authorizer_outcomes(
    gateway: GatewayFactory, app: ModuleType, token: str, status: int
) -> None:
    async with gateway(authorizer=AUTH, routes=routes(_connect="record")) as gw:
        got = await _status(gw.websocket_url, additional_headers={"Authorization": token})
    assert got == status
    assert bool(app.EVENTS) == (status == 101)  # $connect runs only after an Allow


async def test_missing_identity_source_is_401_without_calling_the_authorizer(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(authorizer=AUTH, routes=routes(_connect="record")) as gw:
        assert await _status(gw.websocket_url) == 401
        assert await _status(gw.websocket_url, additional_headers={"Authorization": ""}) == 401


async def test_authorizer_context_reaches_every_event(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    raw = {
        "authorizer": AUTH,
        "routes": routes(_connect="record", _disconnect="record", go="record"),
    }
    async with gateway(**raw) as gw:
        async with websockets.connect(
            gw.websocket_url, additional_headers={"Authorization": "allow"}
        ) as ws:
            await ws.send('{"action": "go"}')
            await eventually(lambda: len(app.EVENTS) >= 2)
        await eventually(lambda: len(app.EVENTS) >= 3)
    # Native types, principalId first, no integrationLatency: AWS-DG "Output from an API Gateway
    # Lambda authorizer" (for proxy integrations the context object is passed through to
    # requestContext.authorizer) and the one WebSocket capture with an authorizer, boto/boto3#3789
    # ("authorizer": {"principalId": "user"} on $disconnect). docs/compatibility.md has the rest.
    expected = {"principalId": "user-42", "tier": "gold", "score": 7, "admin": False}
    assert [e["requestContext"]["authorizer"] for e in app.EVENTS] == [expected] * 3


async def test_authorised_connection_is_bound_to_its_principal(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(authorizer=AUTH, routes=routes(_connect="record")) as gw:
        async with websockets.connect(
            gw.websocket_url, additional_headers={"Authorization": "allow"}
        ):
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            assert await gw.users.connections("user-42") == [cid]


async def test_authorizer_event_has_method_arn_and_connection_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    (tmp_path / "spy.py").write_text(
        "import json, os\n"
        "def handler(event, context):\n"
        "    with open(os.environ['SEEN'], 'w') as f:\n"
        "        f.write(json.dumps(event))\n"
        "    raise Exception('Unauthorized')\n"
    )
    from hubbub.testing import run_gateway

    config = {
        "authorizer": {"handler": "spy.handler", "identity_source": ["route.request.querystring.t"]}
    }
    async with run_gateway(config, base_dir=tmp_path) as gw:
        assert await _status(gw.websocket_url + "?t=x") == 401
    event = json.loads(seen.read_text())
    assert event["type"] == "REQUEST"
    assert event["methodArn"].startswith("arn:aws:execute-api:us-east-1:")
    assert event["methodArn"].endswith("/dev/$connect")
    assert event["requestContext"]["connectionId"]
    assert event["queryStringParameters"] == {"t": "x"}


async def test_the_authorizer_is_a_function_with_its_own_environment_and_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    (tmp_path / "spy.py").write_text(
        "import json, os, time\n"
        "def handler(event, context):\n"
        "    names = ['AUTH_ONLY', 'GLOBAL_VAR', 'AWS_LAMBDA_FUNCTION_NAME', '_HANDLER']\n"
        "    with open(os.environ['SEEN'], 'w') as f:\n"
        "        f.write(json.dumps({n: os.environ.get(n) for n in names}\n"
        "                           | {'function_name': context.function_name}))\n"
        "    if event['queryStringParameters'].get('t') == 'slow':\n"
        "        time.sleep(5)\n"
        "    raise Exception('Unauthorized')\n"
    )
    from hubbub.testing import run_gateway

    config = {
        "environment": {"GLOBAL_VAR": "g"},
        "authorizer": {
            "handler": "spy.handler",
            "identity_source": ["route.request.querystring.t"],
            "environment": {"AUTH_ONLY": "a"},
            "name": "chat-authorizer",
            "timeout": 0.5,
        },
    }
    async with run_gateway(config, base_dir=tmp_path) as gw:
        assert await _status(gw.websocket_url + "?t=x") == 401
        assert json.loads(seen.read_text()) == {
            "AUTH_ONLY": "a",
            "GLOBAL_VAR": "g",
            "AWS_LAMBDA_FUNCTION_NAME": "chat-authorizer",
            "_HANDLER": "spy.handler",
            "function_name": "chat-authorizer",
        }
        started = time.monotonic()
        assert await _status(gw.websocket_url + "?t=slow") == 500  # its own timeout, not 29 s
        assert time.monotonic() - started < 4


SECRET = "a-test-secret-that-is-long-enough-for-hs256!"


def _token(**claims: object) -> str:
    base = {"sub": "alice", "iss": "https://issuer.test", "aud": "hubbub", "exp": time.time() + 60}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


JWT_AUTH = {
    "identity_source": ["route.request.querystring.token"],
    "jwt": {"issuer": "https://issuer.test", "audience": "hubbub", "secret": SECRET},
}


@pytest.mark.parametrize(
    ("claims", "status"),
    [({}, 101), ({"exp": time.time() - 10}, 401), ({"aud": "other"}, 401), ({"iss": "x"}, 401)],
)
async def test_builtin_jwt_authorizer(
    gateway: GatewayFactory, app: ModuleType, claims: dict[str, object], status: int
) -> None:
    async with gateway(authorizer=JWT_AUTH, routes=routes(_connect="record")) as gw:
        assert await _status(f"{gw.websocket_url}?token={_token(**claims)}") == status
    if status == 101:
        authorizer = app.EVENTS[0]["requestContext"]["authorizer"]
        assert authorizer["principalId"] == "alice"
        assert authorizer["iss"] == "https://issuer.test"


async def test_jwt_with_a_wrong_signature_is_401(gateway: GatewayFactory) -> None:
    forged = jwt.encode(
        {"sub": "eve", "iss": "https://issuer.test", "aud": "hubbub", "exp": time.time() + 60},
        "another-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    async with gateway(authorizer=JWT_AUTH) as gw:
        assert await _status(f"{gw.websocket_url}?token={forged}") == 401


SIGV4 = {
    "auth": "sigv4",
    "credentials": [{"access_key_id": "AKIAHUBBUBTEST", "secret_access_key": "s3cret-key"}],
}


def _client(url: str, secret: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="AKIAHUBBUBTEST",
        aws_secret_access_key=secret,
    )


async def test_sigv4_accepts_the_right_key_and_refuses_a_wrong_one(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(management=SIGV4, routes=routes(_connect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            good = _client(gw.management_url, "s3cret-key")
            await asyncio.to_thread(good.post_to_connection, ConnectionId=cid, Data=b"signed")
            assert await ws.recv() == "signed"
            bad = _client(gw.management_url, "wrong")
            with pytest.raises(bad.exceptions.ForbiddenException):
                await asyncio.to_thread(bad.post_to_connection, ConnectionId=cid, Data=b"x")
            unsigned = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=gw.management_url,
                region_name="eu-west-1",
                config=__import__("botocore.config").config.Config(
                    signature_version=__import__("botocore").UNSIGNED
                ),
            )
            with pytest.raises(unsigned.exceptions.ForbiddenException):
                await asyncio.to_thread(unsigned.get_connection, ConnectionId=cid)


async def test_handler_without_credentials_is_authorised_under_sigv4(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like a Lambda's execution role: a handler with no credentials of its own is not refused.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with gateway(management=SIGV4, routes=routes(go="post_self_default_session")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "go"}')
            assert await asyncio.wait_for(ws.recv(), 10) == "posted with the default session"


async def test_handlers_see_their_function_environment(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    raw = {
        "environment": {"GLOBAL_VAR": "g"},
        "api": {"region": "ap-northeast-1"},
        "routes": {
            "a": {"handler": "app.env", "route_response": True, "environment": {"ROUTE_ONLY": "1"}},
            "b": {"handler": "app.env", "route_response": True},
        },
    }
    async with gateway(**raw) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "a"}')
            a = json.loads(await ws.recv())
            await ws.send('{"action": "b"}')
            b = json.loads(await ws.recv())
    assert a == {
        "AWS_REGION": "ap-northeast-1",
        "AWS_LAMBDA_FUNCTION_NAME": "hubbub-dev-a",
        "ROUTE_ONLY": "1",
        "GLOBAL_VAR": "g",
    }
    assert b["ROUTE_ONLY"] is None
    assert b["GLOBAL_VAR"] == "g"


async def test_tokens_and_secrets_never_reach_the_logs(
    gateway: GatewayFactory, app: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    good, expired = _token(), _token(exp=time.time() - 10)
    async with gateway(
        authorizer=JWT_AUTH, management=SIGV4, routes=routes(_connect="record")
    ) as gw:
        assert await _status(f"{gw.websocket_url}?token={good}") == 101
        assert await _status(f"{gw.websocket_url}?token={expired}") == 401
        bad = _client(gw.management_url, "wrong-secret-value")
        with pytest.raises(bad.exceptions.ForbiddenException):
            await asyncio.to_thread(bad.get_connection, ConnectionId="abc=")
    server_side = [r for r in caplog.records if r.name.startswith(("hubbub", "aiohttp"))]
    assert server_side  # the gateway did log (connects, invocations, refusals)
    text = "".join(f"{r.getMessage()} {r.__dict__}" for r in server_side)
    for secret in (good, expired, SECRET, "s3cret-key", "wrong-secret-value"):
        assert secret not in text


async def test_health_under_sigv4_shows_details_only_to_a_signed_request(
    gateway: GatewayFactory,
) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    async with gateway(management=SIGV4) as gw:
        assert gw.management is not None
        url = f"http://127.0.0.1:{gw.management.port}/health"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert (resp.status, await resp.json()) == (200, {"status": "ok"})
            request = AWSRequest(method="GET", url=url)
            credentials = Credentials("AKIAHUBBUBTEST", "s3cret-key")
            SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(request)
            async with http.get(url, headers=dict(request.headers.items())) as resp:
                details = await resp.json()
        assert details["status"] == "ok"
        assert details["node"] == gw.node_id
        assert details["connections"] == 0

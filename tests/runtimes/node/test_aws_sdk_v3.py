"""The AWS SDK for JavaScript v3 (the real ``@aws-sdk/client-apigatewaymanagementapi`` the
benchmark's function pins) under hubbub's Node.js runtime: PostToConnection to the management
listener takes the fast path of runtimes/node/aws_sdk_v3.js under ``auth = "none"``, with the
results and errors of the SDK's own way, and the SDK's own way everywhere else.

Whether a client's post went the SDK's own way shows without any hook: the SDK's NodeHttpHandler
resolves its ``config`` on its first request, so ``client.config.requestHandler.config`` stays
undefined while every post of that client took the fast path.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hubbub.testing import run_gateway
from tests.runtimes.helpers import TIMEOUT, config, connect, write
from tests.runtimes.node.seed_modules import bench_node_modules

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

HANDLER = """
const {
  ApiGatewayManagementApi,
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} = require('@aws-sdk/client-apigatewaymanagementapi');

const endpoint = `${process.env._HUBBUB_MANAGEMENT_URL}/dev`;
const sdkHttp = (client) => client.config.requestHandler.config !== undefined;
const post = (client, ConnectionId, Data) =>
  client.send(new PostToConnectionCommand({ ConnectionId, Data }));

function failure(error) {
  return {
    gone: error instanceof GoneException,
    name: error.name,
    message: error.message,
    fault: error.$fault,
    metadata: error.$metadata,
    keys: Object.keys(error),
  };
}

exports.handler = async (event) => {
  const id = event.requestContext.connectionId;
  const out = {};
  const client = new ApiGatewayManagementApiClient({ endpoint });
  out.send = await post(client, id, 'send');
  out.bytes = await post(client, id, Buffer.from('bytes'));
  out.callback = await new Promise((resolve, reject) => {
    client.send(new PostToConnectionCommand({ ConnectionId: id, Data: 'callback' }),
      (error, data) => (error ? reject(error) : resolve(data)));
  });
  const aggregated = new ApiGatewayManagementApi({ endpoint });
  out.aggregated = await aggregated.postToConnection({
    ConnectionId: id, Data: new TextEncoder().encode('aggregated'),
  });
  out.sdkHttp = [sdkHttp(client), sdkHttp(aggregated)];
  try {
    await post(client, 'R0NFMTIzNDU2Nzg5MA=', 'nobody');
    out.gone = 'no error';
  } catch (error) {
    out.gone = failure(error);
  }
  // User middleware: the SDK's way, and it runs.
  const watched = new ApiGatewayManagementApiClient({ endpoint });
  let calls = 0;
  watched.middlewareStack.add((next) => async (args) => { calls += 1; return next(args); },
    { step: 'build', name: 'countingMiddleware' });
  out.middleware = await post(watched, id, 'middleware');
  out.middlewareRan = [calls, sdkHttp(watched)];
  // Middleware added after a first post: the posts after it go the SDK's way.
  const late = new ApiGatewayManagementApiClient({ endpoint });
  let lateCalls = 0;
  await post(late, id, 'late-1');
  const before = sdkHttp(late);
  late.middlewareStack.add((next) => async (args) => { lateCalls += 1; return next(args); },
    { step: 'finalizeRequest', name: 'lateMiddleware' });
  await post(late, id, 'late-2');
  out.late = [before, lateCalls, sdkHttp(late)];
  // A requestHandler of the code's own (options for the SDK's handler): the SDK's way.
  const tuned = new ApiGatewayManagementApiClient({
    endpoint, requestHandler: { requestTimeout: 5000 },
  });
  await post(tuned, id, 'tuned');
  out.tuned = sdkHttp(tuned);
  return { statusCode: 200, body: JSON.stringify(out) };
};
"""

ESM = """
import { ApiGatewayManagementApiClient, PostToConnectionCommand }
  from '@aws-sdk/client-apigatewaymanagementapi';

const client = new ApiGatewayManagementApiClient({
  endpoint: `${process.env._HUBBUB_MANAGEMENT_URL}/dev`,
});

export const handler = async (event) => {
  const output = await client.send(new PostToConnectionCommand({
    ConnectionId: event.requestContext.connectionId, Data: 'esm',
  }));
  return { statusCode: 200, body: JSON.stringify({
    output, sdkHttp: client.config.requestHandler.config !== undefined,
    unsigned: process.env._HUBBUB_MANAGEMENT_UNSIGNED ?? null,
  }) };
};
"""

POSTS = ["send", "bytes", "callback", "aggregated", "middleware", "late-1", "late-2", "tuned"]


def _function(tmp_path: Path) -> Path:
    code = tmp_path / "fn"
    write(code / "index.js", HANDLER)
    write(code / "esm.mjs", ESM)
    (code / "node_modules").symlink_to(bench_node_modules())
    return code


def _route(handler: str, runtime: str, env: str = "") -> str:
    return f"""
        handler = "{handler}"
        runtime = "{runtime}"
        code = "fn"
        route_response = true
        timeout = 20
        {f"environment = {{ {env} }}" if env else ""}
    """


async def _run(ws: Any, action: str, posts: list[str]) -> Any:
    await ws.send(json.dumps({"action": action}))
    frames = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(len(posts) + 1)]
    assert frames[:-1] == posts  # each post delivered once, in order
    return json.loads(frames[-1])


def _without_request_ids(value: Any) -> Any:
    """``value`` with every ``requestId`` (new per call) checked and replaced by a marker."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "requestId":
                assert isinstance(item, str)
                assert item
                out[key] = "<request id>"
            else:
                out[key] = _without_request_ids(item)
        return out
    if isinstance(value, list):
        return [_without_request_ids(item) for item in value]
    return value


async def test_fast_path_answers_as_the_sdk_does(tmp_path: Path) -> None:
    _function(tmp_path)
    cfg = config(
        tmp_path,
        {
            "fast": _route("index.handler", "nodejs20.x"),
            # The same code with the fast path off: the SDK's own way for every post.
            "sdk": _route("index.handler", "nodejs20.x", 'HUBBUB_NODE_SDK_FAST_PATH = "0"'),
        },
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        assert gw.management is not None
        fast = await _run(ws, "fast", POSTS)
        sdk = await _run(ws, "sdk", POSTS)
    # The fast path served the plain clients; the SDK's handler never ran for them.
    assert fast.pop("sdkHttp") == [False, False]
    assert sdk.pop("sdkHttp") == [True, True]
    assert fast.pop("late") == [False, 1, True]
    assert sdk.pop("late") == [True, 1, True]
    # Everything else is what the SDK itself gives: outputs, the GoneException, middleware.
    assert _without_request_ids(fast) == _without_request_ids(sdk)
    metadata = {
        "httpStatusCode": 200,
        "requestId": "<request id>",
        "attempts": 1,
        "totalRetryDelay": 0,
    }
    assert _without_request_ids(fast["send"]) == {"$metadata": metadata}
    gone = fast["gone"]
    assert gone["gone"] is True
    assert gone["name"] == "GoneException"
    assert gone["metadata"]["httpStatusCode"] == 410
    assert fast["middlewareRan"] == [1, True]
    assert fast["tuned"] is True


async def test_output_keys_match_the_sdk(tmp_path: Path) -> None:
    """JSON drops undefined members: the fast output's own keys, in order, are the SDK's."""
    code = _function(tmp_path)
    write(
        code / "keys.js",
        """
        const { ApiGatewayManagementApiClient, PostToConnectionCommand } =
          require('@aws-sdk/client-apigatewaymanagementapi');
        const endpoint = `${process.env._HUBBUB_MANAGEMENT_URL}/dev`;
        exports.handler = async (event) => {
          const client = new ApiGatewayManagementApiClient({ endpoint });
          const output = await client.send(new PostToConnectionCommand({
            ConnectionId: event.requestContext.connectionId, Data: 'keys' }));
          return { statusCode: 200, body: JSON.stringify({
            keys: Object.keys(output), metadata: Object.keys(output.$metadata),
            sdkHttp: client.config.requestHandler.config !== undefined,
          }) };
        };
        """,
    )
    cfg = config(
        tmp_path,
        {
            "fast": _route("keys.handler", "nodejs20.x"),
            "sdk": _route("keys.handler", "nodejs20.x", 'HUBBUB_NODE_SDK_FAST_PATH = "0"'),
        },
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        fast = await _run(ws, "fast", ["keys"])
        sdk = await _run(ws, "sdk", ["keys"])
    assert (fast.pop("sdkHttp"), sdk.pop("sdkHttp")) == (False, True)
    assert fast == sdk
    assert fast["metadata"] == [
        "httpStatusCode",
        "requestId",
        "extendedRequestId",
        "cfId",
        "attempts",
        "totalRetryDelay",
    ]


async def test_an_es_module_handler_takes_the_fast_path(tmp_path: Path) -> None:
    _function(tmp_path)
    cfg = config(tmp_path, {"esm": _route("esm.handler", "nodejs22.x")})
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        answer = await _run(ws, "esm", ["esm"])
    assert answer["sdkHttp"] is False
    assert answer["unsigned"] == "1"
    assert answer["output"]["$metadata"]["httpStatusCode"] == 200


async def test_sigv4_management_keeps_the_signed_path(tmp_path: Path) -> None:
    _function(tmp_path)
    cfg = config(
        tmp_path,
        {
            # A key the listener accepts (tests/conftest.py sets AWS_ACCESS_KEY_ID=test, which
            # functions inherit instead of the execution role's).
            "esm": _route(
                "esm.handler",
                "nodejs20.x",
                'AWS_ACCESS_KEY_ID = "AKIDHUBBUBTEST", '
                'AWS_SECRET_ACCESS_KEY = "hubbub-test-secret"',
            )
        },
        extra=(
            'auth = "sigv4"\n[[management.credentials]]\n'
            'access_key_id = "AKIDHUBBUBTEST"\nsecret_access_key = "hubbub-test-secret"\n'
        ),
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        answer = await _run(ws, "esm", ["esm"])
    assert answer["sdkHttp"] is True  # signed, through the SDK's own handler
    assert answer["unsigned"] is None  # the bootstrap installs no fast path at all
    assert answer["output"]["$metadata"]["httpStatusCode"] == 200


async def test_posts_in_flight_at_once(tmp_path: Path) -> None:
    """Twenty posts of one client at once (Promise.all): each delivered once, on connections of
    their own, and those kept for later posts are reused."""
    code = _function(tmp_path)
    write(
        code / "many.js",
        """
        const { ApiGatewayManagementApiClient, PostToConnectionCommand } =
          require('@aws-sdk/client-apigatewaymanagementapi');
        const client = new ApiGatewayManagementApiClient({
          endpoint: `${process.env._HUBBUB_MANAGEMENT_URL}/dev`,
        });
        exports.handler = async (event) => {
          const id = event.requestContext.connectionId;
          const round = JSON.parse(event.body).round;
          const outputs = await Promise.all(Array.from({ length: 20 }, (_, i) =>
            client.send(new PostToConnectionCommand({ ConnectionId: id, Data: `${round}-${i}` }))));
          return { statusCode: 200, body: JSON.stringify({
            statuses: outputs.map((output) => output.$metadata.httpStatusCode),
            sdkHttp: client.config.requestHandler.config !== undefined,
          }) };
        };
        """,
    )
    cfg = config(tmp_path, {"many": _route("many.handler", "nodejs20.x")})
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        for round_ in range(2):
            await ws.send(json.dumps({"action": "many", "round": round_}))
            frames = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(21)]
            answer = json.loads(frames[-1])
            assert sorted(frames[:-1]) == sorted(f"{round_}-{i}" for i in range(20))
            assert answer == {"statuses": [200] * 20, "sdkHttp": False}

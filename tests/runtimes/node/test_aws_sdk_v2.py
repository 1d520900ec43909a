"""The AWS SDK for JavaScript v2 (the real ``aws-sdk`` the seed pins) under hubbub's Node.js
runtime: AWS_ENDPOINT_URL_<SERVICE> applies to it, and every way a handler writes the management
endpoint reaches hubbub."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from hubbub.testing import run_gateway
from tests.runtimes.helpers import TIMEOUT, config, connect, write
from tests.runtimes.node.seed_modules import seed_node_modules

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

ALIAS = "abc123defg.execute-api.us-east-1.amazonaws.com"

HANDLER = """
const AWS = require('aws-sdk');
const DynamoDB = require('aws-sdk/clients/dynamodb');

exports.handler = async (event) => {
  const { connectionId, domainName, stage } = event.requestContext;
  const forms = JSON.parse(event.body).forms;
  // As AWS's simple-websockets-chat-app writes it: no scheme, from the event.
  forms.push(domainName + '/' + stage);
  for (const endpoint of forms) {
    const api = new AWS.ApiGatewayManagementApi({ apiVersion: '2018-11-29', endpoint });
    await api.postToConnection({ ConnectionId: connectionId, Data: 'via ' + endpoint }).promise();
  }
  return { statusCode: 200, body: JSON.stringify({
    documentClient: new AWS.DynamoDB.DocumentClient().service.endpoint.href,
    singleClient: new DynamoDB().endpoint.href,
    explicit: new AWS.DynamoDB({ endpoint: 'http://127.0.0.1:2' }).endpoint.href,
    other: new AWS.SQS().endpoint.href,
  }) };
};
"""


async def test_endpoints_for_the_v2_sdk(tmp_path: Path) -> None:
    modules = seed_node_modules()
    code = tmp_path / "fn"
    write(code / "index.js", HANDLER)
    write(
        code / "esm.mjs",
        """
        import AWS from 'aws-sdk';
        export const handler = async () => ({
          statusCode: 200,
          body: new AWS.DynamoDB.DocumentClient().service.endpoint.href,
        });
        """,
    )
    (code / "node_modules").symlink_to(modules)
    cfg = config(
        tmp_path,
        {
            "post": """
                handler = "index.handler"
                runtime = "nodejs18.x"
                code = "fn"
                route_response = true
                timeout = 20
                environment = { AWS_ENDPOINT_URL_DYNAMODB = "http://127.0.0.1:1" }
            """,
            "esm": """
                handler = "esm.handler"
                runtime = "nodejs22.x"
                code = "fn"
                route_response = true
                timeout = 20
            """,
        },
        extra=f'[api]\naliases = ["{ALIAS}"]\n[environment]\nAWS_ENDPOINT_URL = "http://127.0.0.1:3"\n',
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        assert gw.management is not None
        forms = [
            f"{ALIAS}/dev",  # the host/stage a template derives, v2 adds https://
            f"https://{ALIAS}/dev",
            f"127.0.0.1:{gw.management.port}/dev",  # the plain listener, without a scheme
            f"http://127.0.0.1:{gw.management.port}/dev",
        ]
        await ws.send(json.dumps({"action": "post", "forms": forms}))
        frames = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(len(forms) + 2)]
        # An ES module importing the CommonJS SDK: the same wrapper (AWS_ENDPOINT_URL here).
        await ws.send(json.dumps({"action": "esm"}))
        from_esm = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert frames[: len(forms)] == [f"via {form}" for form in forms]
    assert frames[len(forms)].startswith("via 127.0.0.1:")  # domainName/stage
    endpoints = json.loads(frames[-1])
    assert endpoints == {
        "documentClient": "http://127.0.0.1:1/",
        "singleClient": "http://127.0.0.1:1/",
        "explicit": "http://127.0.0.1:2/",  # the code's own endpoint wins, as in SDK v3
        "other": "http://127.0.0.1:3/",  # AWS_ENDPOINT_URL: every service without its own
    }
    assert from_esm == "http://127.0.0.1:3/"

"""Node.js CPU per ``client.send(new PostToConnectionCommand(...))`` in a hubbub environment.

    python -m bench.node_post_cpu                 # 2000 posts per pass
    python -m bench.node_post_cpu --posts 5000

One gateway (``hubbub.testing.run_gateway``, management ``auth = "none"``) runs a Node.js function
with the JavaScript SDK v3 of bench/functions/node (``npm ci`` there first). The function posts
``--posts`` messages back to the caller through the management API, one at a time, as
bench/functions/node/handler.js ``post`` does per invocation, and reports the Node process's CPU
(``process.cpuUsage``: user + system) per post. It runs twice per pass: with hubbub's fast path
for SDK v3 posts (runtimes/node/aws_sdk_v3.js) and with it off (``HUBBUB_NODE_SDK_FAST_PATH=0``:
the SDK's own middleware, signing and node:http). The first pass warms both up; the last one is
printed. Wall clock is not measured: CPU time of the one process is what the fast path changes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import websockets

from hubbub.config import load_config
from hubbub.testing import run_gateway

HERE = Path(__file__).resolve().parent
MODULES = HERE / "functions" / "node" / "node_modules"

HANDLER = """
const { ApiGatewayManagementApiClient, PostToConnectionCommand } =
  require('@aws-sdk/client-apigatewaymanagementapi');
let client = null;
exports.handler = async (event) => {
  const { connectionId } = event.requestContext;
  const posts = JSON.parse(event.body).posts;
  if (client === null) {
    client = new ApiGatewayManagementApiClient({
      endpoint: `${process.env._HUBBUB_MANAGEMENT_URL}/dev`,
    });
  }
  const start = process.cpuUsage();
  for (let i = 0; i < posts; i++) {
    await client.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: 'x' }));
  }
  const used = process.cpuUsage(start);
  return { statusCode: 200, body: JSON.stringify({
    usPerPost: (used.user + used.system) / posts,
    sdkHttp: client.config.requestHandler.config !== undefined,
  }) };
};
"""

CONFIG = """
[server]
port = 0
[management]
port = 0
tls = false
[routes."fast"]
runtime = "nodejs20.x"
code = "fn"
handler = "index.handler"
route_response = true
reserved_concurrency = 1
timeout = 120
[routes."sdk"]
runtime = "nodejs20.x"
code = "fn"
handler = "index.handler"
route_response = true
reserved_concurrency = 1
timeout = 120
environment = { HUBBUB_NODE_SDK_FAST_PATH = "0" }
"""


async def _pass(ws: Any, action: str, posts: int) -> dict[str, Any]:
    await ws.send(json.dumps({"action": action, "posts": posts}))
    for _ in range(posts):
        await asyncio.wait_for(ws.recv(), 60)
    result: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 60))
    return result


async def measure(posts: int, passes: int) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="hubbub-node-post-") as tmp:
        root = Path(tmp)
        code = root / "fn"
        code.mkdir()
        (code / "index.js").write_text(textwrap.dedent(HANDLER))
        (code / "node_modules").symlink_to(MODULES)
        (root / "hubbub.toml").write_text(CONFIG)
        config = load_config(root / "hubbub.toml", env={})
        async with run_gateway(config) as gw, websockets.connect(gw.websocket_url) as ws:
            results: dict[str, dict[str, Any]] = {}
            for _ in range(passes):
                for action in ("sdk", "fast"):
                    results[action] = await _pass(ws, action, posts)
            return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node_post_cpu", description=__doc__)
    parser.add_argument("--posts", type=int, default=2000, help="posts per pass (2000)")
    parser.add_argument("--passes", type=int, default=2, help="passes; the last is printed (2)")
    args = parser.parse_args(argv)
    if not (MODULES / "@aws-sdk" / "client-apigatewaymanagementapi").is_dir():
        print(f"npm ci in {MODULES.parent} first", file=sys.stderr)
        return 2
    results = asyncio.run(measure(args.posts, args.passes))
    for action, label in (("sdk", "SDK's own way"), ("fast", "hubbub fast path")):
        result = results[action]
        print(
            f"{label:18s} {result['usPerPost']:8.1f} µs of Node CPU per post"
            f" (SDK's http handler used: {str(result['sdkHttp']).lower()})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

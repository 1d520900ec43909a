"""MESSAGE routes: selection, one-way vs two-way, error frames, concurrency
(docs/compatibility.md, "Route selection" and "Handler results")."""

from __future__ import annotations

import asyncio
import json
import re
import time
from types import ModuleType

import websockets

from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually

FRAME = re.compile(
    r'^\{"message": "(?P<message>[^"]+)", "connectionId":"(?P<cid>[A-Za-z0-9_=-]{16})", '
    r'"requestId":"(?P<rid>[A-Za-z0-9_=-]{16})"\}$'
)


async def test_message_event_reaches_the_selected_route(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(sendMessage="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "sendMessage", "text": "hi"}')
            await eventually(lambda: app.EVENTS)
    event = app.EVENTS[0]
    assert set(event) == {"requestContext", "body", "isBase64Encoded"}
    assert event["body"] == '{"action": "sendMessage", "text": "hi"}'
    rc = event["requestContext"]
    assert rc["routeKey"] == "sendMessage"
    assert rc["eventType"] == "MESSAGE"
    assert rc["messageId"] != rc["requestId"]
    assert re.match(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$", rc["requestTime"])
    assert abs(rc["requestTimeEpoch"] - time.time() * 1000) < 60_000


async def test_unmatched_message_goes_to_default(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_default="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send("not json at all")
            await ws.send('{"action": "unknown"}')
            await eventually(lambda: len(app.EVENTS) == 2)
    assert {e["requestContext"]["routeKey"] for e in app.EVENTS} == {"$default"}


async def test_no_route_and_no_default_sends_forbidden_and_keeps_the_socket(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(echo={"handler": "echo", "route_response": True})) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "nope"}')
            frame = await ws.recv()
            match = FRAME.match(str(frame))
            assert match, frame
            assert match["message"] == "Forbidden"
            await ws.send('{"action": "echo"}')  # still open
            assert await ws.recv() == '{"action": "echo"}'


async def test_one_way_route_sends_nothing_back(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(
        routes=routes(quiet="echo", loud={"handler": "echo", "route_response": True})
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "quiet"}')
            await ws.send('{"action": "loud"}')
            # Ordered by arrival: had the one-way route answered, its body would come first.
            assert await ws.recv() == '{"action": "loud"}'


async def test_handler_error_sends_internal_server_error_and_keeps_the_socket(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(
        routes=routes(fail="boom", echo={"handler": "echo", "route_response": True})
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "fail"}')
            match = FRAME.match(str(await ws.recv()))
            assert match
            assert match["message"] == "Internal server error"
            assert match["cid"] == app.EVENTS[0]["requestContext"]["connectionId"]
            assert match["rid"] == app.EVENTS[0]["requestContext"]["requestId"]
            await ws.send('{"action": "echo"}')
            assert await ws.recv() == '{"action": "echo"}'


async def test_invalid_handler_result_sends_internal_server_error(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(bad={"handler": "bad_result", "route_response": True})) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "bad"}')
            assert "Internal server error" in str(await ws.recv())


async def test_handler_timeout_sends_internal_server_error(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    slow = {"handler": "async_slow", "route_response": True, "timeout": 0.2}
    async with gateway(routes=routes(slow=slow)) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "slow", "seconds": 5}')
            assert "Internal server error" in str(await ws.recv())


async def test_a_blocking_handler_does_not_stall_other_messages(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(
        routes=routes(
            slow={"handler": "slow", "route_response": True},
            echo={"handler": "echo", "route_response": True},
        )
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "slow", "seconds": 1}')
            started = time.monotonic()
            await ws.send('{"action": "echo"}')
            assert await ws.recv() == '{"action": "echo"}'
            assert time.monotonic() - started < 0.5
            assert await ws.recv() == "slow done"
    threads = {c["thread"] for c in app.CONTEXTS if "thread" in c}
    assert all(t.startswith("hubbub-handler") for t in threads)


async def test_messages_of_one_connection_run_concurrently(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    slow = {"handler": "async_slow", "route_response": True}
    async with gateway(routes=routes(slow=slow)) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            started = time.monotonic()
            for _ in range(5):
                await ws.send('{"action": "slow", "seconds": 0.3}')
            for _ in range(5):
                assert await ws.recv() == "async slow done"
            assert time.monotonic() - started < 1.0  # 5 x 0.3 s would be 1.5 s in series


async def test_per_connection_cap_answers_a_busy_frame(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    slow = {"handler": "async_slow", "route_response": True}
    async with gateway(
        routes=routes(slow=slow), limits={"max_invocations_per_connection": 1}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "slow", "seconds": 0.3}')
            await ws.send('{"action": "slow", "seconds": 0.3}')
            match = FRAME.match(str(await ws.recv()))
            assert match
            assert match["message"] == "Too many concurrent requests"
            assert await ws.recv() == "async slow done"


async def test_lambda_context_is_provided(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(
        routes=routes(go={"handler": "record"}), limits={"handler_timeout": 7}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "go"}')
            await eventually(lambda: app.CONTEXTS)
    ctx = app.CONTEXTS[0]
    assert ctx["aws_request_id"] != app.EVENTS[0]["requestContext"]["requestId"]
    assert 6000 < ctx["remaining"] <= 7000
    assert ctx["function_name"] == "hubbub-dev-go"


async def test_async_handler_uses_the_in_process_api(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(go="in_process")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "go"}')
            assert await ws.recv() == 'in-process:{"action": "go"}'
            assert json.loads(await ws.recv()) == {"sourceIp": "127.0.0.1"}


async def test_sync_handler_uses_the_blocking_facade(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(go="sync_in_process")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "go"}')
            assert await ws.recv() == "sync-in-process"


async def test_boto3_post_back_from_a_plain_handler(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(go="post_self")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "go"}')
            assert await asyncio.wait_for(ws.recv(), 10) == 'posted:{"action": "go"}'


async def test_custom_selection_expression_with_template(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    raw = {
        "api": {"route_selection_expression": "${request.body.service}/${request.body.op}"},
        "routes": routes(**{"chat/join": "record"}),
    }
    async with gateway(**raw) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"service": "chat", "op": "join"}')
            await eventually(lambda: app.EVENTS)
    assert app.EVENTS[0]["requestContext"]["routeKey"] == "chat/join"

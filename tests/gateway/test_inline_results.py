"""What an inline handler returns, as the client gets it: the common result
``{"statusCode": 200, "body": "<ASCII text>"}`` takes Invoker.answer_now's shortcut (its body is
the reply, no ProxyResult is built); every other result is parsed by parse_proxy_result. Each
reply here, on a real socket, must be what parse_proxy_result says of the same result."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import websockets

from hubbub.aws.results import parse_proxy_result
from hubbub.errors import InvalidProxyResult
from hubbub.gateway import invoke
from hubbub.integrations.base import LambdaFunction
from hubbub.integrations.python import HandlerPool, PythonIntegration
from tests.gateway.conftest import GatewayFactory

ROUTES = {
    "result": {"handler": "inline.result", "route_response": True},
    "echo": {"handler": "inline.echo", "route_response": True},
}
ERROR = re.compile(r'^\{"message": "Internal server error", "connectionId":')

# (the handler's result, whether answer_now's shortcut may take it)
RESULTS: list[tuple[Any, bool]] = [
    ({"statusCode": 200, "body": "plain text"}, True),
    ({"statusCode": 200, "body": ""}, True),
    ({"body": "first", "statusCode": 200}, True),
    ({"statusCode": 200, "body": "h\u00e9llo \u2603"}, False),  # not ASCII: checked as text
    ({"statusCode": 201, "body": "created"}, False),
    ({"statusCode": 500, "body": "failed"}, False),
    ({"statusCode": 200.0, "body": "a float status"}, False),
    ({"statusCode": True, "body": "a bool status"}, False),
    ({"statusCode": "200", "body": "a text status"}, False),
    ({"statusCode": 200, "body": None}, False),
    ({"statusCode": 200, "body": 5}, False),
    ({"statusCode": 200, "body": ["a", 1]}, False),
    ({"statusCode": 200, "isBase64Encoded": False}, False),
    ({"statusCode": 200}, False),
    ({"statusCode": 200, "body": "eA==", "isBase64Encoded": True}, False),
    ({"statusCode": 200, "body": "x", "isBase64Encoded": False}, False),
    ({"statusCode": 200, "body": "x", "headers": {"a": "b"}}, False),
    ("a bare string", False),
    (None, False),
    (42, False),
]


def _expected(result: Any) -> str | None:
    """The reply the parsed path sends: the body text, None (no reply) or "error"."""
    try:
        return parse_proxy_result(result).body_text()
    except InvalidProxyResult:
        return "error"


@pytest.mark.parametrize(("result", "shortcut"), RESULTS, ids=[json.dumps(r) for r, _ in RESULTS])
async def test_each_result_is_answered_as_parse_proxy_result_says(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch, result: Any, shortcut: bool
) -> None:
    parsed: list[object] = []

    def counting(value: object) -> Any:
        parsed.append(value)
        return parse_proxy_result(value)

    monkeypatch.setattr(invoke, "parse_proxy_result", counting)
    expected = _expected(result)
    async with gateway(routes=ROUTES) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for _ in range(2):  # the first message takes the read loop, the next the transport's
                await ws.send(json.dumps({"action": "result", "result": result}))
                echo = json.dumps({"action": "echo"})
                await ws.send(echo)  # tells "no reply" from a late one: the echo comes first
                reply = await ws.recv()
                if expected is None:
                    assert reply == echo
                    continue
                if expected == "error":
                    assert ERROR.match(str(reply)), reply
                else:
                    assert reply == expected
                assert await ws.recv() == echo
        # The shortcut took exactly the results it may take (the echo's is one of them).
        assert parsed == ([] if shortcut else [result, result])
        stats = gw.routes["result"].stats
        assert len(stats.samples) == 2
        failed = expected == "error" or (
            expected is not None and not 200 <= parse_proxy_result(result).status_code < 300
        )
        assert stats.failures == (2 if failed else 0)


def test_without_a_free_slot_answer_now_runs_nothing() -> None:
    # The message path's free-slot check is answer_now's own: NOT_NOW sends the message to the
    # queued path (test_inline.py::test_inline_route_waits_for_a_slot_when_the_global_cap_is_reached
    # on real sockets); invoke_now, which must not run past the cap, refuses.
    ran: list[object] = []

    async def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ran.append(event)
        return {"statusCode": 200, "body": event["body"]}

    route = invoke.Route(
        key="r",
        integration=PythonIntegration("fn", handler, HandlerPool(1, "fn")),
        timeout=3,
        inline=handler,
        function=LambdaFunction("fn", region="us-east-1", account_id="000000000000"),
    )
    invoker = invoke.Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    assert invoker.answer_now(route, {"body": "free"}, "c", "r") == "free"
    invoker.in_flight = 1  # the one slot is held
    assert invoker.answer_now(route, {"body": "held"}, "c", "r") is invoke.NOT_NOW
    with pytest.raises(RuntimeError, match="without a free slot"):
        invoker.invoke_now(route, {"body": "held"}, connection_id="c", request_id="r")
    invoker.in_flight = 0
    invoker._waiting = 1  # a free slot, promised to a waiter
    assert invoker.answer_now(route, {"body": "promised"}, "c", "r") is invoke.NOT_NOW
    assert ran == [{"body": "free"}]

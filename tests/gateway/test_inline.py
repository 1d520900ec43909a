"""Inline invocations: ``async def`` handlers without ``await`` run without a task of their own,
with the same event, context, environment, answers and limits as any other handler."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sys
import uuid
from types import ModuleType
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hubbub.aws.results import parse_proxy_result
from hubbub.gateway.app import Gateway
from hubbub.gateway.invoke import Invoker, Outcome, Route
from hubbub.gateway.routing import never_suspends
from hubbub.integrations.base import LambdaContext, LambdaFunction
from hubbub.integrations.python import HandlerPool, PythonIntegration, load_handler
from tests.gateway.conftest import HANDLERS, GatewayFactory
from tests.helpers import eventually

FRAME = re.compile(
    r'^\{"message": "(?P<message>[^"]+)", "connectionId":"[A-Za-z0-9_=-]{16}", '
    r'"requestId":"[A-Za-z0-9_=-]{16}"\}$'
)


@pytest.fixture
def inline() -> ModuleType:
    """handlers/inline.py as the gateway loads it, with fresh events for ``hold``."""
    module = sys.modules[load_handler("inline.echo", HANDLERS).__module__]
    module.reset()
    return module


def _routes(**handlers: str | dict[str, Any]) -> dict[str, Any]:
    """Two-way routes to handlers of handlers/inline.py: ``_routes(echo="echo")``."""
    out: dict[str, Any] = {}
    for key, spec in handlers.items():
        extra = {"handler": spec} if isinstance(spec, str) else spec
        out[key] = {"route_response": True, **extra, "handler": f"inline.{extra['handler']}"}
    return out


def _message(action: str) -> str:
    return json.dumps({"action": action})


async def _error_message(ws: websockets.ClientConnection) -> str:
    match = FRAME.match(str(await ws.recv()))
    assert match, "expected an error frame"
    return match["message"]


# -- which handlers run inline -------------------------------------------------------------------
async def _no_await(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


async def _awaits(event: dict[str, Any], context: Any) -> None:
    await asyncio.sleep(0)


async def _async_with(event: dict[str, Any], context: Any) -> None:
    async with asyncio.Lock():
        pass


async def _async_for(event: Any, context: Any) -> list[Any]:
    return [item async for item in event]


async def _nested_await(event: dict[str, Any], context: Any) -> Any:
    async def later() -> None:
        await asyncio.sleep(0)

    return later


def _plain(event: dict[str, Any], context: Any) -> None:
    return None


def test_an_async_def_without_await_never_suspends() -> None:
    assert never_suspends(_no_await)


def test_await_in_a_nested_function_does_not_count() -> None:
    assert never_suspends(_nested_await)


def test_await_async_with_and_async_for_may_suspend() -> None:
    assert not any(never_suspends(f) for f in (_awaits, _async_with, _async_for))


def test_plain_functions_and_wrappers_are_not_inline() -> None:
    assert not never_suspends(_plain)
    assert not never_suspends(functools.partial(_no_await))


async def test_only_await_free_async_handlers_get_an_inline_route(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    raw = _routes(echo="echo", hold="hold")
    raw["plain"] = {"handler": "app.record_echo", "route_response": True}
    async with gateway(routes=raw) as gw:
        assert gw.routes["echo"].inline is inline.echo
        assert gw.routes["hold"].inline is None
        assert gw.routes["plain"].inline is None


def test_an_inline_invocation_ends_in_one_step() -> None:
    route = Route(
        key="r",
        integration=PythonIntegration("fn", _no_await, HandlerPool(1, "fn")),
        timeout=1,
        inline=_no_await,
    )
    invoker = Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    step = invoker.invoke_inline(route, {}, connection_id="c", request_id="r")
    with pytest.raises(StopIteration) as returned:  # it never yields to an event loop
        step.send(None)
    assert returned.value.value.result.status_code == 200
    assert invoker.in_flight == 0


def test_a_parsed_outcome_is_a_whole_outcome() -> None:
    # Built with tuple.__new__ on the hot path: every field must be there, with its default.
    invoker = Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    route = Route(
        key="r", integration=PythonIntegration("fn", _no_await, HandlerPool(1, "fn")), timeout=1
    )
    outcome = invoker._parsed(route, {"statusCode": 200, "body": "x"}, "c")
    assert type(outcome) is Outcome
    assert outcome == Outcome(parse_proxy_result({"statusCode": 200, "body": "x"}))
    assert (outcome.error, outcome.rejected, outcome.raw, outcome.exception) == (
        None,
        False,
        None,
        None,
    )


def _inline_route(handler: Any, key: str = "r") -> Route:
    return Route(
        key=key,
        integration=PythonIntegration("fn", handler, HandlerPool(1, "fn")),
        timeout=3,
        inline=handler,
        function=LambdaFunction("fn", region="us-east-1", account_id="000000000000"),
    )


def _invoker() -> Invoker:
    return Invoker(max_concurrent=4, region="us-east-1", account_id="000000000000")


async def _echo_body(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


async def _raises(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise ValueError("no")


def test_invoke_now_goes_on_after_a_handler_raised() -> None:
    # The generator driving the coroutines ends with the exception: the next one gets a new one.
    invoker = _invoker()
    echo, boom = _inline_route(_echo_body), _inline_route(_raises)
    for body in ("a", "b"):
        failed = invoker.invoke_now(boom, {"body": body}, connection_id="c", request_id="r")
        assert failed is not None
        assert failed.result is None
        assert isinstance(failed.exception, ValueError)
        outcome = invoker.invoke_now(echo, {"body": body}, connection_id="c", request_id="r")
        assert outcome is not None
        assert outcome.result is not None
        assert outcome.result.body == body
    assert invoker.in_flight == 0


def test_invoke_now_closes_a_handler_that_suspends_after_all() -> None:
    # never_suspends rules such handlers out; invoke_now still never leaves one half run.
    finished = []

    async def suspends(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            await asyncio.sleep(0)
        finally:
            finished.append(True)
        return {"statusCode": 200}

    invoker = _invoker()
    outcome = invoker.invoke_now(
        _inline_route(suspends), {"body": ""}, connection_id="c", request_id="r"
    )
    assert outcome is not None
    assert outcome.result is None
    assert str(outcome.exception) == "an inline handler suspended"
    assert finished == [True]  # closed: its finally ran
    echo = invoker.invoke_now(
        _inline_route(_echo_body), {"body": "x"}, connection_id="c", request_id="r"
    )
    assert echo is not None
    assert echo.result is not None
    assert echo.result.body == "x"
    assert invoker.in_flight == 0


def test_invoke_now_inside_an_inline_handler_gets_its_own_driver() -> None:
    invoker = _invoker()
    inner = _inline_route(_echo_body, "inner")
    seen: list[Outcome | None] = []

    async def outer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(invoker.invoke_now(inner, {"body": "in"}, connection_id="c", request_id="i"))
        return {"statusCode": 200, "body": "out"}

    outcome = invoker.invoke_now(_inline_route(outer), {}, connection_id="c", request_id="o")
    assert outcome is not None
    assert outcome.result is not None
    assert outcome.result.body == "out"
    inner_outcome = seen[0]
    assert inner_outcome is not None
    assert inner_outcome.result is not None
    assert inner_outcome.result.body == "in"
    assert invoker.in_flight == 0


CONTEXT_ATTRIBUTES = (
    "function_name",
    "function_version",
    "invoked_function_arn",
    "memory_limit_in_mb",
    "log_group_name",
    "log_stream_name",
    "identity",
    "client_context",
    "gateway",
)


def test_invoke_now_gives_the_same_context_as_lambda_context() -> None:
    # invoke_now makes the context from its function's context_type, not LambdaContext(...).
    contexts: list[LambdaContext] = []

    async def keep(event: dict[str, Any], context: LambdaContext) -> None:
        contexts.append(context)

    route = _inline_route(keep)
    invoker = _invoker()
    invoker.invoke_now(route, {}, connection_id="c", request_id="r")
    invoker.invoke_now(route, {}, connection_id="c", request_id="r")
    made = contexts[0]
    assert route.function is not None
    expected = LambdaContext(route.function, route.timeout, invoker.async_api)
    assert isinstance(made, LambdaContext)
    for name in CONTEXT_ATTRIBUTES:
        assert getattr(made, name) == getattr(expected, name), name
    assert 2000 < made.get_remaining_time_in_millis() <= 3000
    first_read = made.aws_request_id
    assert uuid.UUID(first_read)
    assert made.aws_request_id == first_read  # made once, then kept
    assert contexts[1].aws_request_id != made.aws_request_id


def test_what_a_handler_sets_on_its_context_stays_on_that_context() -> None:
    # Contexts of one function share their class: an assignment must not reach the next one.
    function = LambdaFunction("fn", region="us-east-1", account_id="000000000000")
    first = function.context(3, None)
    first.function_name = "changed"
    first.identity = {"who": 1}
    second = function.context(3, None)
    assert (first.function_name, first.identity) == ("changed", {"who": 1})
    assert (second.function_name, second.identity) == ("fn", None)
    assert function.context_type().function_name == "fn"


# -- the same contract as any handler --------------------------------------------------------
async def test_inline_handler_sees_its_context(gateway: GatewayFactory) -> None:
    async with gateway(routes=_routes(describe="describe"), limits={"handler_timeout": 7}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("describe"))
            seen = json.loads(await ws.recv())
    # Lambda's own invocation id: a UUID, not API Gateway's requestId.
    assert str(uuid.UUID(seen.pop("aws_request_id"))) != seen.pop("requestId")
    assert 6000 < seen.pop("remaining") <= 7000
    stream = seen.pop("log_stream_name")
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", stream)
    name = "hubbub-dev-describe"  # {api}-{stage}-{route} without a route name
    assert seen == {
        "function_name": name,
        "function_version": "$LATEST",
        "invoked_function_arn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        "memory_limit_in_mb": "128",
        "log_group_name": f"/aws/lambda/{name}",
        "identity": None,
        "client_context": None,
        "environ": {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            "LAMBDA_TASK_ROOT": str(HANDLERS),
            "_HANDLER": "inline.describe",
            "ROUTE_ONLY": None,
        },
    }


async def test_each_invocation_has_its_own_request_id(gateway: GatewayFactory) -> None:
    async with gateway(routes=_routes(describe="describe")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            ids = set()
            for _ in range(3):
                await ws.send(_message("describe"))
                ids.add(json.loads(await ws.recv())["aws_request_id"])
    assert len(ids) == 3


async def test_a_route_name_names_the_function(gateway: GatewayFactory) -> None:
    route = {"handler": "describe", "name": "chat-describe"}
    async with gateway(routes=_routes(describe=route)) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("describe"))
            seen = json.loads(await ws.recv())
    assert seen["function_name"] == "chat-describe"
    assert seen["invoked_function_arn"].endswith(":function:chat-describe")
    assert seen["log_group_name"] == "/aws/lambda/chat-describe"
    assert seen["environ"]["AWS_LAMBDA_FUNCTION_NAME"] == "chat-describe"


async def test_inline_handler_environment_stays_with_its_route(gateway: GatewayFactory) -> None:
    own = {"handler": "describe", "environment": {"ROUTE_ONLY": "yes"}}
    async with gateway(routes=_routes(own=own, other="describe")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("own"))
            assert json.loads(await ws.recv())["environ"]["ROUTE_ONLY"] == "yes"
            await ws.send(_message("other"))
            assert json.loads(await ws.recv())["environ"]["ROUTE_ONLY"] is None


async def test_inline_handler_error_sends_internal_server_error_and_keeps_the_socket(
    gateway: GatewayFactory,
) -> None:
    async with gateway(routes=_routes(boom="boom", echo="echo")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("boom"))
            assert await _error_message(ws) == "Internal server error"
            await ws.send(_message("echo"))
            assert await ws.recv() == _message("echo")


async def test_inline_timeout_error_sends_internal_server_error(gateway: GatewayFactory) -> None:
    async with gateway(routes=_routes(late="times_out")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("late"))
            assert await _error_message(ws) == "Internal server error"


async def test_inline_invalid_result_sends_internal_server_error(gateway: GatewayFactory) -> None:
    async with gateway(routes=_routes(bad="bad_result")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("bad"))
            assert await _error_message(ws) == "Internal server error"


async def test_inline_body_that_is_not_unicode_text_sends_internal_server_error(
    gateway: GatewayFactory,
) -> None:
    async with gateway(routes=_routes(half="lone_surrogate", echo="echo")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("half"))
            assert await _error_message(ws) == "Internal server error"
            await ws.send(_message("echo"))
            assert await ws.recv() == _message("echo")


@pytest.mark.parametrize("handler", ["unprintable_header", "unprintable_header_after_await"])
async def test_a_result_that_breaks_parsing_sends_internal_server_error(
    gateway: GatewayFactory, handler: str
) -> None:
    async with gateway(routes=_routes(odd=handler, echo="echo")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("odd"))
            assert await _error_message(ws) == "Internal server error"
            await ws.send(_message("echo"))
            assert await ws.recv() == _message("echo")


async def test_inline_handler_cancelling_itself_answers_nothing_and_keeps_the_socket(
    gateway: GatewayFactory,
) -> None:
    async with gateway(routes=_routes(cancels="cancels", echo="echo")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("cancels"))
            await ws.send(_message("echo"))
            assert await ws.recv() == _message("echo")  # the first frame is the echo's


# -- limits ------------------------------------------------------------------------------------
def _only_connection(gw: Gateway) -> Any:
    (conn,) = gw.hub.connections.values()
    return conn


async def test_inline_route_waits_for_a_slot_when_the_global_cap_is_reached(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    async with gateway(
        routes=_routes(hold="hold", echo="echo"), limits={"max_concurrent_invocations": 1}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("hold"))
            await inline.STARTED.wait()
            await ws.send(_message("echo"))
            # Queued for the slot in a task of its own rather than run inline past the cap.
            await eventually(lambda: _only_connection(gw).in_flight == 2)
            inline.RELEASE.set()
            assert await ws.recv() == "released"
            assert await ws.recv() == _message("echo")


async def test_inline_route_answers_busy_when_the_connection_cap_is_reached(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    async with gateway(
        routes=_routes(hold="hold", echo="echo"), limits={"max_invocations_per_connection": 1}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("hold"))
            await inline.STARTED.wait()
            await ws.send(_message("echo"))
            assert await _error_message(ws) == "Too many concurrent requests"
            inline.RELEASE.set()
            assert await ws.recv() == "released"


# -- $connect and $disconnect ------------------------------------------------------------------
def _lifecycle(connect: str = "connect", **limits: Any) -> dict[str, Any]:
    return {
        "routes": {
            "$connect": {"handler": f"inline.{connect}"},
            "$disconnect": {"handler": "inline.disconnect"},
        },
        "limits": limits,
    }


async def _connect_status(url: str) -> int | str:
    """The handshake's HTTP status, or how it failed without one."""
    try:
        async with websockets.connect(url, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
    except Exception as exc:
        return type(exc).__name__


async def test_connect_and_disconnect_run_inline(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    async with gateway(**_lifecycle()) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            assert ws.response.headers["X-Caller"] == "invoke_inline"
        await eventually(lambda: inline.DISCONNECTS, message="$disconnect")
    assert inline.DISCONNECTS == [("$disconnect", "invoke_inline")]


async def test_connect_and_disconnect_wait_for_a_slot_when_the_global_cap_is_reached(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    raw = _lifecycle(max_concurrent_invocations=1)
    raw["routes"]["hold"] = {"handler": "inline.hold", "route_response": True}
    async with gateway(**raw) as gw:
        async with websockets.connect(gw.websocket_url) as holder:
            await holder.send(_message("hold"))
            await inline.STARTED.wait()
            opening = asyncio.ensure_future(websockets.connect(gw.websocket_url))
            await asyncio.sleep(0.2)
            assert not opening.done()  # queued for the slot rather than run inline past the cap
            inline.RELEASE.set()
            async with await opening as ws:
                # Awaited by the invoker's _run (PythonIntegration.invoke hands the coroutine
                # over without a frame of its own), not by invoke_inline.
                assert ws.response.headers["X-Caller"] == "_run"
            assert await holder.recv() == "released"
        await eventually(lambda: len(inline.DISCONNECTS) == 2, message="two $disconnects")


@pytest.mark.parametrize("status", [301, 401, 403, 501])
async def test_inline_non_2xx_connect_rejects_with_that_status(
    gateway: GatewayFactory, inline: ModuleType, status: int
) -> None:
    inline.CONNECT_RESULT.update(statusCode=status, body="go away")
    async with gateway(**_lifecycle()) as gw:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == status
    assert info.value.response.headers["X-Caller"] == "invoke_inline"
    assert info.value.response.body == b"go away"
    assert inline.DISCONNECTS == []  # a refused connection never existed


@pytest.mark.parametrize("handler", ["boom", "bad_result", "times_out", "unprintable_header"])
async def test_inline_connect_failure_rejects_with_502(
    gateway: GatewayFactory, inline: ModuleType, handler: str
) -> None:
    async with gateway(**_lifecycle(handler)) as gw:
        assert await _connect_status(gw.websocket_url) == 502
        assert inline.DISCONNECTS == []


async def test_inline_connect_headers_and_subprotocol_go_into_the_101(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    inline.CONNECT_RESULT["headers"] = {"X-Hello": "world", "Sec-WebSocket-Protocol": "chat"}
    async with gateway(**_lifecycle()) as gw:
        async with websockets.connect(gw.websocket_url, subprotocols=["chat"]) as ws:
            assert ws.response.headers["X-Hello"] == "world"
            assert ws.subprotocol == "chat"


async def test_connect_cancelling_itself_ends_the_handshake_as_from_a_task(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    async with gateway(**_lifecycle("cancels")) as gw:
        inline_status = await _connect_status(gw.websocket_url)
    async with gateway(**_lifecycle("cancels_after_await")) as gw:
        task_status = await _connect_status(gw.websocket_url)
    assert inline_status == task_status != 101


async def test_a_connect_handler_that_awaits_keeps_its_timeout(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    async with gateway(**_lifecycle("sleeps", handler_timeout=0.2)) as gw:
        assert await _connect_status(gw.websocket_url) == 502


async def test_route_responses_arrive_whole_at_every_frame_length_boundary(
    gateway: GatewayFactory,
) -> None:
    # Hub.send frames a short ASCII reply itself and hands the others to frame_message: replies
    # either side of the 126-byte boundary, a 16-bit and a 64-bit length, and non-ASCII text
    # (UTF-8 longer than its characters) come back as the text the client sent.
    limits = {"max_frame_bytes": 70_000, "max_message_bytes": 70_000}
    async with gateway(routes=_routes(echo="echo"), limits=limits) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            base = len(json.dumps({"action": "echo", "p": ""}))
            sizes = [base, 124, 125, 126, 127, 65535, 65536, 69000]
            texts = [json.dumps({"action": "echo", "p": "x" * (size - base)}) for size in sizes]
            texts += [
                json.dumps({"action": "echo", "p": "é€😀" * n}, ensure_ascii=False)
                for n in (1, 30, 40)
            ]
            for text in texts:
                await ws.send(text)
                reply = await ws.recv()
                assert isinstance(reply, str)
                assert reply == text
        assert gw.hub.writes >= len(texts)


async def test_the_access_log_of_inline_invocations_follows_level_changes_while_serving(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Invoker.answer_now reads the logger's cached answer: a level set while messages flow (the
    # cache holds "off" by then), and a logger disabled by logging.config, still take effect.
    access = logging.getLogger("hubbub.access")
    caplog.set_level(logging.WARNING, logger="hubbub.access")

    def invokes() -> list[str]:
        return [r.__dict__["fields"]["route"] for r in caplog.records if r.getMessage() == "invoke"]

    async with gateway(routes=_routes(echo="echo", other="echo")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(_message("echo"))
            assert json.loads(await ws.recv()) == {"action": "echo"}
            assert invokes() == []
            caplog.set_level(logging.INFO, logger="hubbub.access")
            await ws.send(_message("other"))
            await ws.recv()
            assert invokes() == ["other"]
            access.disabled = True
            try:
                await ws.send(_message("echo"))
                await ws.recv()
            finally:
                access.disabled = False
            assert invokes() == ["other"]
            await ws.send(_message("echo"))
            await ws.recv()
            assert invokes() == ["other", "echo"]

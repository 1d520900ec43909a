"""The Lambda Runtime API as a runtime sees it: this test plays the runtime over real HTTP
against one environment's endpoint (its process only sleeps), and checks statuses, headers and
error bodies."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hubbub.errors import InvocationError
from hubbub.runtimes import http11, protocol
from hubbub.runtimes.environment import Environment, Invocation

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
async def envs(tmp_path: Path) -> AsyncIterator[list[Environment]]:
    made = [Environment("fn", SLEEPER, tmp_path, {}, on_exit=lambda env: None) for _ in range(2)]
    for env in made:
        await env.start()
    yield made
    for env in made:
        await env.stop(0.5)


def _invocation(request_id: str = "11111111-2222-3333-4444-555555555555") -> Invocation:
    deadline = int(time.time() * 1000) + 3000
    return Invocation(request_id, b'{"hello": "event"}', deadline, ARN, asyncio.get_running_loop())


def _url(env: Environment, path: str) -> str:
    return f"http://{env.runtime_api}/2018-06-01/runtime/{path}"


async def test_next_response_and_the_headers(envs: list[Environment]) -> None:
    env = envs[0]
    invocation = _invocation()
    result = asyncio.ensure_future(env.invoke(invocation))
    async with aiohttp.ClientSession() as http:
        async with http.get(_url(env, "invocation/next")) as next_:
            assert next_.status == 200
            assert await next_.read() == b'{"hello": "event"}'
            headers = next_.headers
        assert headers[protocol.REQUEST_ID] == invocation.request_id
        assert headers[protocol.DEADLINE] == str(invocation.deadline_ms)
        assert headers[protocol.FUNCTION_ARN] == ARN
        assert headers[protocol.TRACE_ID].startswith("Root=1-")
        assert "Lambda-Runtime-Client-Context" not in headers
        path = f"invocation/{invocation.request_id}/response"
        async with http.post(_url(env, path), data=b'{"statusCode": 200}') as answer:
            assert answer.status == 202
            assert await answer.json() == {"status": "OK"}
        assert await result == {"statusCode": 200}
        async with http.post(_url(env, path), data=b"{}") as again:
            assert again.status == 400
            assert (await again.json())["errorType"] == "InvalidRequestID"


async def test_error_reports_become_the_invocations_failure(envs: list[Environment]) -> None:
    env = envs[0]
    invocation = _invocation()
    result = asyncio.ensure_future(env.invoke(invocation))
    async with aiohttp.ClientSession() as http:
        async with http.get(_url(env, "invocation/next")) as next_:
            assert next_.status == 200
        body = b'{"errorMessage": "bad input", "errorType": "ValueError", "stackTrace": []}'
        path = f"invocation/{invocation.request_id}/error"
        headers = {protocol.ERROR_TYPE: "Unhandled"}
        async with http.post(_url(env, path), data=body, headers=headers) as answer:
            assert answer.status == 202
    with pytest.raises(InvocationError, match=r"^ValueError: bad input$"):
        await result


async def test_one_environment_cannot_answer_anothers_invocation(
    envs: list[Environment],
) -> None:
    mine, other = envs
    invocation = _invocation()
    result = asyncio.ensure_future(mine.invoke(invocation))
    async with aiohttp.ClientSession() as http:
        async with http.get(_url(mine, "invocation/next")) as next_:
            assert next_.status == 200
        path = f"invocation/{invocation.request_id}/response"
        async with http.post(_url(other, path), data=b'"forged"') as forged:
            assert forged.status == 400
            assert await forged.json() == {
                "errorMessage": f"no invocation {invocation.request_id} here",
                "errorType": "InvalidRequestID",
            }
        assert not result.done()
        async with http.post(_url(mine, path), data=b'"mine"') as answer:
            assert answer.status == 202
    assert await result == "mine"


async def test_a_response_over_6_mb_is_413(envs: list[Environment]) -> None:
    env = envs[0]
    invocation = _invocation()
    result = asyncio.ensure_future(env.invoke(invocation))
    async with aiohttp.ClientSession() as http:
        async with http.get(_url(env, "invocation/next")) as next_:
            assert next_.status == 200
        path = f"invocation/{invocation.request_id}/response"
        big = io.BytesIO(b'"' + b"x" * protocol.MAX_RESPONSE_BYTES + b'"')
        async with http.post(_url(env, path), data=big) as answer:
            assert answer.status == 413
            assert (await answer.json())["errorType"] == "RequestEntityTooLarge"
    with pytest.raises(InvocationError, match=r"Function\.ResponseSizeTooLarge"):
        await result


async def test_a_response_that_is_not_json_fails_the_invocation(
    envs: list[Environment],
) -> None:
    env = envs[0]
    invocation = _invocation()
    result = asyncio.ensure_future(env.invoke(invocation))
    async with aiohttp.ClientSession() as http:
        async with http.get(_url(env, "invocation/next")) as next_:
            assert next_.status == 200
        path = f"invocation/{invocation.request_id}/response"
        async with http.post(_url(env, path), data=b"not json") as answer:
            assert answer.status == 202
    with pytest.raises(InvocationError, match=r"Runtime\.InvalidResponse"):
        await result


async def test_init_error_fails_the_waiting_invocation(envs: list[Environment]) -> None:
    env = envs[0]
    result = asyncio.ensure_future(env.invoke(_invocation()))
    await asyncio.sleep(0)
    body = (
        b'{"errorMessage": "Unable to import module \'app\'",'
        b' "errorType": "Runtime.ImportModuleError"}'
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(_url(env, "init/error"), data=body) as answer:
            assert answer.status == 202
    with pytest.raises(InvocationError, match=r"^Runtime.ImportModuleError: Unable to import"):
        await result
    assert env.retiring


async def test_init_error_after_init_is_403(envs: list[Environment]) -> None:
    env = envs[0]
    async with aiohttp.ClientSession() as http:
        waiting = asyncio.ensure_future(http.get(_url(env, "invocation/next")))
        await asyncio.sleep(0.2)  # the long poll has reached the endpoint: initialised
        async with http.post(_url(env, "init/error"), data=b"{}") as late:
            assert late.status == 403
            assert (await late.json())["errorType"] == "InvalidStateTransition"
        waiting.cancel()


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", "invocation/nope", 404, "NotFound"),
        ("POST", "invocation/next", 405, "MethodNotAllowed"),
        ("GET", "init/error", 405, "MethodNotAllowed"),
    ],
)
async def test_unknown_paths_and_methods(
    envs: list[Environment], method: str, path: str, status: int, error_type: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, _url(envs[0], path)) as answer:
            assert answer.status == status
            assert (await answer.json())["errorType"] == error_type


def test_parse_call() -> None:
    prefix = "/2018-06-01/runtime"
    assert protocol.parse_call("GET", f"{prefix}/invocation/next") == protocol.Call("next")
    assert protocol.parse_call("POST", f"{prefix}/invocation/abc/response") == protocol.Call(
        "response", "abc"
    )
    assert protocol.parse_call("POST", f"{prefix}/invocation/abc/error") == protocol.Call(
        "error", "abc"
    )
    assert protocol.parse_call("POST", f"{prefix}/init/error") == protocol.Call("init_error")
    assert protocol.parse_call("POST", "/2015-03-31/functions").status == 404  # type: ignore[union-attr]
    assert protocol.parse_call("POST", f"{prefix}/invocation//response").status == 404  # type: ignore[union-attr]


def test_parse_function_error() -> None:
    assert protocol.parse_function_error(
        b'{"errorMessage": "m", "errorType": "T"}', "Unhandled"
    ) == ("T", "m")
    assert protocol.parse_function_error(b"plain text", "Runtime.Unknown") == (
        "Runtime.Unknown",
        "plain text",
    )
    assert protocol.parse_function_error(b"", None) == ("Unhandled", "")
    assert str(protocol.FunctionError("T", "")) == "T"


def test_trace_id_format() -> None:
    trace = protocol.trace_id(0x5F000000)
    root, parent, sampled = trace.split(";")
    assert root.startswith("Root=1-5f000000-")
    assert len(root.split("-")[2]) == 24
    assert parent.startswith("Parent=")
    assert len(parent) == len("Parent=") + 16
    assert sampled == "Sampled=0"


def test_trace_ids_differ() -> None:
    assert len({protocol.trace_id(0x5F000000) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("keep_alive", [True, False])
def test_invocation_answer_is_framed_as_http11_answer(
    keep_alive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = "Root=1-5f000000-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0"
    monkeypatch.setattr(protocol, "trace_id", lambda: trace)
    event = '{"body": "h\u00e9llo"}'.encode()
    arn = "arn:aws:lambda:us-east-1:000000000000:function:f"
    made = protocol.invocation_answer(event, "r-1", 1_700_000_000_123, arn, keep_alive)
    headers = {
        "Lambda-Runtime-Aws-Request-Id": "r-1",
        "Lambda-Runtime-Deadline-Ms": "1700000000123",
        "Lambda-Runtime-Invoked-Function-Arn": arn,
        "Lambda-Runtime-Trace-Id": trace,
    }
    assert made == http11.answer(200, event, headers, keep_alive=keep_alive)

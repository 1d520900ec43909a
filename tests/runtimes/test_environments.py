"""Execution environments as on Lambda: timeouts, crashes and init errors replace only the
environment concerned; reserved_concurrency caps the processes; logs carry the request id."""

from __future__ import annotations

import asyncio
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from hubbub.testing import run_gateway
from tests.helpers import eventually
from tests.runtimes.helpers import TIMEOUT, ask, config, connect, write

HANDLER = """
import json, os, time

def handler(event, context):
    body = json.loads(event.get("body") or "{}")
    if body.get("sleep"):
        time.sleep(body["sleep"])
    if body.get("crash"):
        os._exit(3)
    if body.get("fail"):
        raise ValueError("bad input")
    print("handled in", os.getpid())
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
"""


def _route(extra: str = "") -> str:
    return (
        """
        handler = "app.handler"
        code = "fn"
        isolation = "process"
        route_response = true
        """
        + extra
    )


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pools(gw: Any) -> list[Any]:
    return list(gw.route_factory.runtimes.pools.values())


async def test_a_timed_out_invocation_replaces_its_environment(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route("timeout = 1")})
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        first = await ask(ws, {"action": "go"})
        reply = await ask(ws, {"action": "go", "sleep": 30})
        assert reply["message"] == "Internal server error"
        await eventually(lambda: not _alive(first["pid"]), TIMEOUT, "the stuck process killed")
        after = await ask(ws, {"action": "go"})
    assert after["pid"] != first["pid"]


async def test_a_crash_fails_only_its_own_invocation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route("timeout = 20")})
    async with (
        run_gateway(cfg) as gw,
        connect(gw.websocket_url) as slow,
        connect(gw.websocket_url) as crashing,
    ):
        (pool,) = _pools(gw)
        await slow.send(json.dumps({"action": "go", "sleep": 1}))
        await eventually(lambda: pool.size == 1, TIMEOUT, "one environment")
        crashed = await ask(crashing, {"action": "go", "crash": True})
        assert pool.size == 1  # the crashed one is gone, the busy one stays
        slow_reply = json.loads(await asyncio.wait_for(slow.recv(), TIMEOUT))
        again = await ask(crashing, {"action": "go"})
    assert crashed["message"] == "Internal server error"
    assert "pid" in slow_reply  # the other environment's invocation went through
    assert again["pid"] == slow_reply["pid"]  # the survivor, warm
    failures = [r for r in caplog.records if r.getMessage() == "handler raised"]
    assert "Runtime.ExitError: Runtime exited with error: exit status 3" in str(
        failures[0].exc_info[1]  # type: ignore[index]
    )


async def test_a_handler_error_keeps_the_environment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route()})
    caplog.set_level("INFO")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        before = await ask(ws, {"action": "go"})
        failed = await ask(ws, {"action": "go", "fail": True})
        after = await ask(ws, {"action": "go"})
    assert failed["message"] == "Internal server error"
    assert before["pid"] == after["pid"]  # a raised exception does not end the environment
    # The function's own log line, as Lambda's Python runtime writes it, and hubbub's.
    messages = [r.getMessage() for r in caplog.records]
    assert "[ERROR] ValueError: bad input" in messages
    (raised,) = [r for r in caplog.records if r.getMessage() == "handler raised"]
    assert str(raised.exc_info[1]) == "ValueError: bad input"  # type: ignore[index]


@pytest.mark.parametrize(
    ("files", "handler", "error"),
    [
        ({"app.py": "import not_installed_anywhere\n"}, "app.handler", "Runtime.ImportModuleError"),
        ({"app.py": "x = 1\n"}, "app.handler", "Runtime.HandlerNotFound"),
        ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError"),
    ],
)
async def test_init_errors_are_reported_like_lambda(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    files: dict[str, str],
    handler: str,
    error: str,
) -> None:
    for name, text in files.items():
        write(tmp_path / "fn" / name, text)
    route = f"""
        handler = "{handler}"
        code = "fn"
        isolation = "process"
    """
    cfg = config(tmp_path, {"$connect": route, "go": route + "\nroute_response = true"})
    caplog.set_level("INFO")
    async with run_gateway(cfg) as gw:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.websocket_url):
                pass
        assert refused.value.response.status_code == 502
    init_failures = [r for r in caplog.records if r.getMessage() == "function init failed"]
    assert init_failures
    assert init_failures[0].fields["errorType"] == error  # type: ignore[attr-defined]


async def test_an_init_error_on_a_message_route_is_the_error_frame(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "app.py", "import not_installed_anywhere\n")
    cfg = config(tmp_path, {"go": _route()})
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        for _ in range(2):  # each invocation tries a fresh environment, as on Lambda
            reply = await ask(ws, {"action": "go"})
            assert reply["message"] == "Internal server error"
        await eventually(lambda: sum(p.size for p in _pools(gw)) == 0, TIMEOUT, "no env left")


async def test_reserved_concurrency_caps_the_environments(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route("reserved_concurrency = 2\ntimeout = 20")})
    async with run_gateway(cfg) as gw:
        (pool,) = _pools(gw)
        sizes: list[int] = []

        async def one() -> Any:
            async with connect(gw.websocket_url) as ws:
                reply = await ask(ws, {"action": "go", "sleep": 0.3})
                sizes.append(pool.size)
                return reply

        replies = await asyncio.gather(*(one() for _ in range(5)))
    assert all("pid" in reply for reply in replies)  # the others waited for a free one
    assert len({reply["pid"] for reply in replies}) <= 2
    assert max(sizes) <= 2


async def test_output_lines_are_logged_with_function_and_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route('name = "worker"')})
    caplog.set_level("INFO", logger="hubbub.function")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        reply = await ask(ws, {"action": "go"})
        await eventually(
            lambda: any(r.getMessage().startswith("handled in") for r in caplog.records),
            TIMEOUT,
            "the handler's print in hubbub's log",
        )
    (line,) = [r for r in caplog.records if r.getMessage().startswith("handled in")]
    assert line.getMessage() == f"handled in {reply['pid']}"
    assert line.fields["function"] == "worker"  # type: ignore[attr-defined]
    assert re.fullmatch(r"[0-9a-f-]{36}", line.fields["requestId"])  # type: ignore[attr-defined]


async def test_close_stops_every_environment(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route()})
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        reply = await ask(ws, {"action": "go"})
        assert _alive(reply["pid"])
    assert not _alive(reply["pid"])
    assert os.getpid() != reply["pid"]


async def test_recycle_replaces_environments_once_their_invocation_ends(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "app.py", HANDLER)
    cfg = config(tmp_path, {"go": _route("timeout = 20")})
    async with (
        run_gateway(cfg) as gw,
        connect(gw.websocket_url) as busy,
        connect(gw.websocket_url) as ws,
    ):
        (pool,) = _pools(gw)
        await busy.send(json.dumps({"action": "go", "sleep": 1.5}))
        await eventually(lambda: pool.size == 1, TIMEOUT, "a busy environment")
        idle = await ask(ws, {"action": "go"})  # a second one, idle after this
        assert pool.size == 2
        pool.recycle()
        await eventually(lambda: not _alive(idle["pid"]), TIMEOUT, "the idle one stopped")
        busy_reply = json.loads(await asyncio.wait_for(busy.recv(), TIMEOUT))  # finished
        assert busy_reply["pid"] != idle["pid"]
        await eventually(lambda: not _alive(busy_reply["pid"]), TIMEOUT, "the busy one stopped")
        fresh = await ask(ws, {"action": "go"})
    assert fresh["pid"] not in (idle["pid"], busy_reply["pid"])


AUTHORIZER = """
def handler(event, context):
    allowed = event["queryStringParameters"].get("token") == "let-me-in"
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": "Allow" if allowed else "Deny",
                "Resource": event["methodArn"],
            }],
        },
    }
"""


async def test_an_authorizer_in_its_own_process(tmp_path: Path) -> None:
    write(tmp_path / "auth" / "authorizer.py", AUTHORIZER)
    write(tmp_path / "fn" / "app.py", HANDLER)
    extra = """
        [authorizer]
        handler = "authorizer.handler"
        code = "auth"
        isolation = "process"
        identity_source = ["route.request.querystring.token"]
    """
    cfg = config(tmp_path, {"go": _route()}, extra=textwrap.dedent(extra))
    async with run_gateway(cfg) as gw:
        async with connect(gw.websocket_url + "?token=let-me-in") as ws:
            assert "pid" in await ask(ws, {"action": "go"})
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.websocket_url + "?token=nope"):
                pass
        assert refused.value.response.status_code == 403
        kinds = sorted(pool.function.name for pool in _pools(gw))
    assert kinds == ["hubbub-dev-authorizer", "hubbub-dev-go"]

"""Gateway bugs the fuzzer found, one regression test each (fixed; see bench/fuzz/known.py).

Each test states the correct behaviour. While a bug is open its test carries a strict xfail
marker and an entry in ``bench.fuzz.known.KNOWN``; both go when it is fixed, and the test stays.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from bench.fuzz.invariants import ErrorRecorder
from bench.fuzz.wire import Peer, close_payload, frame, upgrade_request
from hubbub.aws.selection import compile_route_selection, select_route
from hubbub.config import load_config
from hubbub.errors import ConfigError
from hubbub.gateway.app import Gateway
from hubbub.gateway.logs import TextFormatter
from hubbub.integrations.python import load_handler
from hubbub.testing import run_gateway
from tests.helpers import TIME_SCALE, eventually

HANDLERS = Path(__file__).parent / "handlers"
READ_TIMEOUT = 3.0 * TIME_SCALE


@pytest.fixture
def app() -> ModuleType:
    module = sys.modules[load_handler("fuzzapp.record", HANDLERS).__module__]
    module.EVENTS.clear()
    return module


def _routes(**routes: str) -> dict[str, dict[str, object]]:
    return {
        "routes": {
            key.replace("_", "$", 1) if key.startswith("_") else key: {
                "handler": f"fuzzapp.{handler}",
                **({"route_response": True} if not key.startswith(("_connect", "_dis")) else {}),
            }
            for key, handler in routes.items()
        }
    }


@pytest.fixture
async def echo_gateway(app: ModuleType) -> AsyncIterator[Gateway]:
    async with run_gateway(_routes(_default="echo"), base_dir=HANDLERS) as gw:
        yield gw


async def _raw_upgrade(gw: Gateway, request: bytes) -> tuple[Peer, int | None]:
    assert gw.public is not None
    peer = await Peer.open("127.0.0.1", gw.public.port)
    await peer.send(request)
    status, _ = await asyncio.wait_for(peer.read_head(), READ_TIMEOUT)
    return peer, status


def _request(gw: Gateway, **headers: bytes) -> bytes:
    assert gw.public is not None
    req = upgrade_request(random.Random(0), f"127.0.0.1:{gw.public.port}".encode(), "dev")
    for name, value in headers.items():
        wire = name.replace("_", "-").encode()
        req.headers = [(n, v) for n, v in req.headers if n.lower() != wire.lower()]
        req.headers.append((wire, value))
    return req.render()


# -- frames -------------------------------------------------------------------------------------
async def test_unmasked_client_frame_closes_with_1002(echo_gateway: Gateway) -> None:
    peer, status = await _raw_upgrade(echo_gateway, _request(echo_gateway))
    assert status == 101
    try:
        await peer.send(frame(0x1, b'{"action":"echo"}', mask=False))
        code, _ = await asyncio.wait_for(peer.read_until_close(), READ_TIMEOUT)
        assert code == 1002
    finally:
        peer.abort()


async def test_message_of_exactly_128_kb_is_accepted(echo_gateway: Gateway) -> None:
    async with connect(echo_gateway.websocket_url, max_size=None, proxy=None) as ws:
        fragments = ["m" * (32 * 1024)] * 4  # 131,072 bytes in four 32 KB frames
        await ws.send(fragments)
        reply = await asyncio.wait_for(ws.recv(), READ_TIMEOUT)
    assert reply == "".join(fragments)


# -- route selection -----------------------------------------------------------------------------
def _nested(depth: int) -> str:
    return '{"action":' * depth + '"x"' + "}" * depth


def test_select_route_survives_deep_nesting() -> None:
    selector = compile_route_selection("$request.body.action")
    assert select_route(selector, _nested(1000), {"$default"}) == "$default"


async def test_deeply_nested_action_is_routed_not_dropped(echo_gateway: Gateway) -> None:
    body = _nested(600)
    async with connect(echo_gateway.websocket_url, proxy=None) as ws:
        await ws.send(body)
        reply = await asyncio.wait_for(ws.recv(), READ_TIMEOUT)
    assert reply == body


# -- handshake -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        {"Sec_WebSocket_Version": b"1\xff3"},
        {"Sec_WebSocket_Key": b"OSmJgd9mGMya\xffVH4lOrM/0w=="},
    ],
    ids=["version", "key"],
)
async def test_non_ascii_upgrade_header_is_answered_not_500(
    echo_gateway: Gateway, header: dict[str, bytes]
) -> None:
    peer, status = await _raw_upgrade(echo_gateway, _request(echo_gateway, **header))
    peer.abort()
    assert status is not None
    assert 400 <= status < 500


async def test_invalid_upgrade_never_reaches_connect(app: ModuleType) -> None:
    async with run_gateway(_routes(_connect="record"), base_dir=HANDLERS) as gw:
        peer, status = await _raw_upgrade(gw, _request(gw, Sec_WebSocket_Key=b"short"))
        peer.abort()
    assert status == 400
    assert app.EVENTS == []


async def test_client_gone_during_handshake_logs_no_traceback(echo_gateway: Gateway) -> None:
    recorder = ErrorRecorder()
    recorder.install()
    try:
        baseline = len(asyncio.all_tasks())
        assert echo_gateway.public is not None
        for _ in range(20):  # the request and the RST must arrive in one read: try a few times
            peer = await Peer.open("127.0.0.1", echo_gateway.public.port)
            await peer.send(_request(echo_gateway))
            peer.abort()
        await eventually(
            lambda: len(asyncio.all_tasks()) <= baseline, message="the handshakes to end"
        )
    finally:
        recorder.remove()
    assert recorder.describe() == []


# -- logs --------------------------------------------------------------------------------------
@given(reason=st.text(max_size=40))
def test_client_text_in_a_field_stays_on_one_log_line(reason: str) -> None:
    record = logging.LogRecord("hubbub.access", logging.INFO, __file__, 1, "disconnect", None, None)
    record.__dict__["fields"] = {"connectionId": "abc=", "code": 4000, "reason": reason}
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line


# -- config --------------------------------------------------------------------------------------
def test_nan_is_rejected_for_number_keys(tmp_path: Path) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text("[limits]\nidle_timeout = nan\n")
    with pytest.raises(ConfigError, match="idle_timeout"):
        load_config(path, env={})


async def test_raw_helpers_speak_websocket(echo_gateway: Gateway) -> None:
    peer, status = await _raw_upgrade(echo_gateway, _request(echo_gateway))
    assert status == 101
    try:
        await peer.send(frame(0x1, b"hello"))
        reply = await asyncio.wait_for(peer.read_frame(), READ_TIMEOUT)
        await peer.send(frame(0x8, close_payload(1000)))
        code, _ = await asyncio.wait_for(peer.read_until_close(), READ_TIMEOUT)
    finally:
        peer.abort()
    assert reply == (0x1, b"hello")
    assert code == 1000

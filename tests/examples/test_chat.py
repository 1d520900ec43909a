"""The seed chat example, end to end: real gateway from its own hubbub.toml, real clients, boto3."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import websockets

from hubbub.config import load_config
from hubbub.testing import run_gateway
from tests.helpers import eventually

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"


def _rows(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        try:
            return {r[0] for r in conn.execute("SELECT connection_id FROM connections")}
        except sqlite3.OperationalError:
            return set()


async def _next_message(ws: websockets.ClientConnection) -> dict[str, object]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("action") == "message":
            return frame  # type: ignore[no-any-return]


async def test_two_clients_chat_and_a_gone_connection_is_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "chat.sqlite3"
    monkeypatch.setenv("CHAT_DB", str(db))
    # Every port moved: the handler builds its endpoint from the event's domainName, as on AWS.
    overrides = {
        "server.port": 0,
        "management.port": 0,
        "management.tls_port": 0,
        "management.state_dir": str(tmp_path / "state"),
    }
    config = load_config(CHAT / "hubbub.toml", env={}, overrides=overrides)
    async with run_gateway(config) as gw:
        a = await websockets.connect(gw.websocket_url)
        b = await websockets.connect(gw.websocket_url)
        await eventually(lambda: len(_rows(db)) == 2, message="both connections stored")
        # A stale id, as if a client vanished without its $disconnect reaching the table.
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO connections VALUES ('R1kmxc2VNjMCFIA=')")
        await a.send(json.dumps({"action": "sendMessage", "message": "hello b"}))
        for ws in (a, b):
            message = await _next_message(ws)
            assert message["message"] == "hello b"
        # The post to the stale id answered 410 GoneException and the handler deleted it.
        await eventually(lambda: "R1kmxc2VNjMCFIA=" not in _rows(db), message="410 cleanup")
        await b.close()
        await eventually(lambda: len(_rows(db)) == 1, message="$disconnect removes b")
        await a.send(json.dumps({"action": "sendMessage", "message": "alone now"}))
        assert (await _next_message(a))["message"] == "alone now"
        await a.close()


async def test_chat_page_is_served(tmp_path: Path) -> None:
    import aiohttp

    config = load_config(
        CHAT / "hubbub.toml",
        env={},
        overrides={"server.port": 0, "management.port": 0, "management.tls": False},
    )
    async with run_gateway(config) as gw, aiohttp.ClientSession() as http:
        async with http.get(gw.http_url + "/") as resp:
            assert resp.status == 200
            assert "<input" in await resp.text()
        async with http.get(gw.http_url + "/hubbub.js") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/javascript"

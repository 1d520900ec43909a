"""A recovery session belongs to its principal and to one live connection (issue 17, item 9).

The attack: bob, holding alice's session token, resumed it and received ``@users/alice`` posts;
and two connections resumed one token at once. Both run on real sockets, on the memory store and
on Redis (sessions and their claims live there then).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import websockets

from hubbub.gateway.app import Gateway
from hubbub.testing import run_gateway
from tests.gateway.conftest import HANDLERS
from tests.helpers import eventually
from tests.store.redis_server import delete_prefix, unique_prefix

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
JWT_AUTH = {
    "identity_source": ["route.request.querystring.token"],
    "jwt": {"issuer": "https://issuer.test", "audience": "hubbub", "secret": SECRET},
}


def _token(sub: str) -> str:
    claims = {"sub": sub, "iss": "https://issuer.test", "aud": "hubbub", "exp": time.time() + 60}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    if request.param == "memory":
        yield {"url": "memory://"}
        return
    url = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    yield {"url": url, "key_prefix": prefix}
    await delete_prefix(url, prefix)


async def _json(ws: websockets.ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[no-any-return]


async def _open(gw: Gateway, user: str | None = None) -> tuple[websockets.ClientConnection, str]:
    """An opted-in connection (as ``user`` when given); its session token."""
    url = gw.websocket_url + (f"?token={_token(user)}" if user else "")
    ws = await websockets.connect(url, subprotocols=["hubbub.v1"])
    session = await _json(ws)
    assert session["hubbub"] == "session"
    return ws, session["token"]


async def _resume(ws: websockets.ClientConnection, token: str) -> dict[str, Any]:
    await ws.send(json.dumps({"hubbub": "resume", "token": token, "rooms": {}}))
    return await _json(ws)


async def _session_saved(gw: Gateway, token: str) -> None:
    assert gw.recovery is not None
    recovery = gw.recovery
    saved: list[bool] = []

    async def probe() -> None:
        saved.append(await recovery.load_session(token) is not None)

    deadline = time.monotonic() + 5
    while not (saved and saved[-1]) and time.monotonic() < deadline:
        await probe()
        await asyncio.sleep(0.01)
    assert saved[-1], "the closed connection's session was saved"


async def test_another_principal_cannot_resume_a_session(store: dict[str, str]) -> None:
    async with run_gateway({"store": store, "authorizer": JWT_AUTH}, base_dir=HANDLERS) as gw:
        alice, token = await _open(gw, "alice")
        await alice.close()
        await _session_saved(gw, token)
        bob, _ = await _open(gw, "bob")
        report = await _resume(bob, token)
        assert (report["recovered"], report["reason"]) == (False, "session not yours")
        # bob did not become alice: posts to @users/alice reach nobody.
        assert await gw.users.connections("alice") == []
        assert await gw.users.send("alice", "for alice only") == 0
        # The refusal did not spend the session: alice still resumes it.
        alice2, _ = await _open(gw, "alice")
        report = await _resume(alice2, token)
        assert (report["recovered"], report["reason"]) == (True, None)
        assert await gw.users.send("alice", "hello alice") == 1
        assert await alice2.recv() == "hello alice"
        await bob.close()
        await alice2.close()


async def test_two_live_connections_cannot_hold_one_session(store: dict[str, str]) -> None:
    async with run_gateway({"store": store}, base_dir=HANDLERS) as gw:
        first, token = await _open(gw)
        await gw.users.bind("ann", next(iter(gw.hub.connections)))
        await first.close()
        await _session_saved(gw, token)
        one, _ = await _open(gw)
        two, _ = await _open(gw)
        # Both present the token at the same moment: exactly one gets the session.
        reports = await asyncio.gather(_resume(one, token), _resume(two, token))
        outcomes = sorted((r["recovered"], r["reason"] or "") for r in reports)
        assert outcomes == [(False, "session in use"), (True, "")]
        assert len(await gw.users.connections("ann")) == 1
        holder, other = (one, two) if reports[0]["recovered"] else (two, one)
        # Once the holder is gone, the token may be resumed again (the client's fallback
        # when a socket dies during its resume).
        await holder.close()
        await eventually(lambda: len(gw.hub.connections) == 1)

        async def resumed_again() -> dict[str, Any]:
            return await _resume(other, token)

        deadline = time.monotonic() + 5
        report = await resumed_again()
        while report["reason"] == "session in use" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the holder's release follows its close
            report = await resumed_again()
        assert (report["recovered"], report["reason"]) == (True, None)
        await other.close()

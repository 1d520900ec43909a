"""Rooms, users, broadcast, listing and attributes through real HTTP and real sockets (issue 4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType

import aiohttp
import pytest
import websockets

from hubbub.errors import GoneError
from hubbub.gateway.app import Gateway
from hubbub.gateway.transport_aiohttp import _FD_UNKNOWN
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


@asynccontextmanager
async def clients(
    gw: Gateway, app: ModuleType, n: int
) -> AsyncIterator[tuple[list[websockets.ClientConnection], list[str]]]:
    sockets = [await websockets.connect(gw.websocket_url) for _ in range(n)]
    await eventually(lambda: len(app.EVENTS) >= n)
    ids = [e["requestContext"]["connectionId"] for e in app.EVENTS[:n]]
    try:
        yield sockets, ids
    finally:
        for ws in sockets:
            await ws.close()


async def test_room_rows_join_send_members_leave(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw, aiohttp.ClientSession() as http:
        base = gw.management_url
        async with clients(gw, app, 3) as (ws, ids):
            for cid in ids[:2]:
                async with http.put(f"{base}/@rooms/lobby/connections/{cid}") as resp:
                    assert resp.status == 204
            async with http.get(f"{base}/@rooms/lobby") as resp:
                assert await resp.json() == {"room": "lobby", "count": 2, "connections": ids[:2]}
            async with http.post(f"{base}/@rooms/lobby", data=b"to the lobby") as resp:
                assert await resp.json() == {"delivered": 2}
            assert await ws[0].recv() == "to the lobby"
            assert await ws[1].recv() == "to the lobby"
            async with http.post(f"{base}/@rooms/lobby?exclude={ids[0]}", data=b"not you") as resp:
                assert await resp.json() == {"delivered": 1}
            assert await ws[1].recv() == "not you"
            async with http.delete(f"{base}/@rooms/lobby/connections/{ids[1]}") as resp:
                assert resp.status == 204
            async with http.get(f"{base}/@rooms/lobby") as resp:
                assert (await resp.json())["connections"] == [ids[0]]
            # The third client, never a member, received nothing: its next frame is this post.
            await gw.connections.post(ids[2], "direct")
            assert await ws[2].recv() == "direct"


async def test_user_rows(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw, aiohttp.ClientSession() as http:
        base = gw.management_url
        async with clients(gw, app, 3) as (ws, ids):
            for cid in ids[:2]:
                async with http.put(f"{base}/@users/alice/connections/{cid}") as resp:
                    assert resp.status == 204
            async with http.get(f"{base}/@users/alice") as resp:
                assert await resp.json() == {"user": "alice", "count": 2, "connections": ids[:2]}
            async with http.post(f"{base}/@users/alice", data=b"hi alice") as resp:
                assert await resp.json() == {"delivered": 2}
            assert [await ws[0].recv(), await ws[1].recv()] == ["hi alice", "hi alice"]
            async with http.delete(f"{base}/@users/alice") as resp:
                assert resp.status == 204
            for sock in ws[:2]:
                await sock.wait_closed()
                assert sock.close_code == 1000
            async with http.get(f"{base}/@users/alice") as resp:
                assert (await resp.json())["count"] == 0


async def test_broadcast_and_listing(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw, aiohttp.ClientSession() as http:
        base = gw.management_url
        async with clients(gw, app, 5) as (ws, ids):
            async with http.post(f"{base}/@broadcast", data=b"everyone") as resp:
                assert await resp.json() == {"delivered": 5}
            for sock in ws:
                assert await sock.recv() == "everyone"
            seen: list[str] = []
            cursor = None
            while True:
                query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
                async with http.get(f"{base}/@connections{query}") as resp:
                    page = await resp.json()
                seen += page["connections"]
                cursor = page["next"]
                if cursor is None:
                    break
            assert seen == ids


async def test_attributes_reach_get_connection_and_later_events(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with (
        gateway(routes=routes(_connect="record", go="record")) as gw,
        aiohttp.ClientSession() as http,
    ):
        base = gw.management_url
        async with clients(gw, app, 1) as (ws, ids):
            cid = ids[0]
            attrs = {"nick": "ann", "score": 3}
            async with http.put(f"{base}/@connections/{cid}/attributes", json=attrs) as resp:
                assert resp.status == 204
            async with http.get(f"{base}/@connections/{cid}/attributes") as resp:
                assert await resp.json() == attrs
            async with http.get(f"{base}/@connections/{cid}") as resp:
                assert (await resp.json())["attributes"] == attrs
            await ws[0].send('{"action": "go"}')
            await eventually(lambda: len(app.EVENTS) >= 2)
            assert app.EVENTS[1]["requestContext"]["attributes"] == attrs
            async with http.put(f"{base}/@connections/{cid}/attributes", data=b"[1]") as resp:
                assert resp.status == 400
            big = {"x": "y" * 5000}
            async with http.put(f"{base}/@connections/{cid}/attributes", json=big) as resp:
                assert resp.status == 400
                assert "4096" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/@rooms/r/connections/nope="),
        ("DELETE", "/@rooms/r/connections/nope="),
        ("PUT", "/@users/u/connections/nope="),
        ("PUT", "/@connections/nope=/attributes"),
        ("GET", "/@connections/nope=/attributes"),
    ],
)
async def test_unknown_connections_answer_410(
    gateway: GatewayFactory, method: str, path: str
) -> None:
    async with gateway() as gw, aiohttp.ClientSession() as http:
        async with http.request(method, gw.management_url + path, json={}) as resp:
            assert resp.status == 410
            assert resp.headers["x-amzn-ErrorType"] == "GoneException"


async def test_bad_names_answer_400(gateway: GatewayFactory) -> None:
    async with gateway() as gw, aiohttp.ClientSession() as http:
        long_name = "r" * 129
        async with http.post(f"{gw.management_url}/@rooms/{long_name}", data=b"x") as resp:
            assert resp.status == 400
            assert "1-128" in (await resp.json())["message"]
        async with http.post(f"{gw.management_url}/@rooms/a%0Ab", data=b"x") as resp:
            assert resp.status == 400


async def test_percent_encoded_room_names_are_decoded(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw, aiohttp.ClientSession() as http:
        async with clients(gw, app, 1) as (_ws, ids):
            url = f"{gw.management_url}/@rooms/caf%C3%A9%20au%2Flait/connections/{ids[0]}"
            async with http.put(url) as resp:
                assert resp.status == 204
            assert await gw.rooms.members("café au/lait") == ids


async def test_disconnect_leaves_rooms_and_users(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 2) as (ws, ids):
            for cid in ids:
                await gw.rooms.join("r", cid)
                await gw.users.bind("u", cid)
            await ws[0].close()
            await eventually(lambda: ids[0] not in gw.hub.connections)
            assert await gw.rooms.members("r") == [ids[1]]
            assert await gw.users.connections("u") == [ids[1]]
            assert set(gw.hub.rooms["r"]) == {ids[1]}
        await eventually(lambda: not gw.hub.connections)
        assert await gw.rooms.members("r") == []
        assert "r" not in gw.hub.rooms
        assert "u" not in gw.hub.users


async def test_in_process_api_from_a_handler(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_connect="record", join="room_join", say="room_say")) as gw:
        async with clients(gw, app, 3) as (ws, _ids):
            await ws[0].send('{"action": "join", "room": "x"}')
            await ws[1].send('{"action": "join", "room": "x"}')
            await eventually(lambda: len(gw.hub.rooms.get("x", {})) == 2)
            await ws[0].send('{"action": "say", "room": "x", "text": "hello"}')
            assert json.loads(await ws[1].recv()) == {"room": "x", "text": "hello"}


async def test_room_send_frames_once_and_touches_only_members(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """O(room): the work of a room send counts members, not connections."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 60) as (ws, ids):
            for cid in ids[:10]:
                await gw.rooms.join("small", cid)
            frames, writes = gw.hub.frames_built, gw.hub.writes
            assert await gw.rooms.send("small", "ping") == 10
            assert gw.hub.frames_built - frames == 1  # framed once
            assert gw.hub.writes - writes == 10  # written only to the members
            for sock in ws[:10]:
                assert await sock.recv() == "ping"


@pytest.mark.parametrize("sent_before", [False, True])
async def test_room_send_skips_a_member_whose_closing_handshake_has_begun(
    gateway: GatewayFactory, app: ModuleType, sent_before: bool
) -> None:
    """After the close frame no data frame may follow (RFC 6455 §5.5.1), though TCP is still up.

    ``sent_before``: a send that found every member open came first, so the room's lean members
    are looked at again only because the close was counted (Socket.closes_begun)."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 2) as (ws, ids):
            for cid in ids:
                await gw.rooms.join("r", cid)
            if sent_before:
                assert gw.hub.send_room("r", b"before") == 2
                assert [await w.recv() for w in ws] == ["before", "before"]
            loop = asyncio.get_running_loop()
            closing = loop.create_task(gw.hub.connections[ids[0]].close(1000, "bye"))
            # Callbacks run in order: this one right after the task's first step has sent the
            # close frame, before anything (the read loop, the peer's reply) could react to it.
            delivered: asyncio.Future[int] = loop.create_future()
            loop.call_soon(lambda: delivered.set_result(gw.hub.send_room("r", b"after close")))
            assert await delivered == 1
            assert await ws[1].recv() == "after close"
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws[0].recv()
            await closing


async def test_a_room_send_reaches_whoever_joined_left_or_closed_since_the_last_send(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """Between sends a room keeps its members laid out for the send loop
    (hubbub.gateway.hub.Members.recipients): a join, a leave and a client that closes must all
    show in the next send, on real sockets written by descriptor."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 3) as (ws, ids):
            for cid in ids[:2]:
                await gw.rooms.join("r", cid)
            assert await gw.rooms.send("r", "one") == 2
            await gw.rooms.join("r", ids[2])
            assert await gw.rooms.send("r", "two") == 3
            await gw.rooms.leave("r", ids[0])
            assert await gw.rooms.send("r", "three") == 2
            await ws[1].close()
            await eventually(lambda: ids[1] not in gw.hub.connections)
            assert await gw.rooms.send("r", "four") == 1
            assert await gw.rooms.send("r", "five", exclude=ids[2]) == 0
            assert [await ws[0].recv() for _ in range(2)] == ["one", "two"]
            assert [await ws[1].recv() for _ in range(3)] == ["one", "two", "three"]
            assert [await ws[2].recv() for _ in range(3)] == ["two", "three", "four"]
            await gw.connections.post(ids[0], "direct")  # nothing else was sent to it
            assert await ws[0].recv() == "direct"


async def test_room_sends_stay_in_order_for_every_member_while_one_falls_behind(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """While one member's transport holds frames, the others are still written by descriptor
    (Socket.broadcast then checks each socket in turn): everyone gets every message in order."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 2) as (ws, ids):
            for cid in ids:
                await gw.rooms.join("r", cid)
            slow = gw.hub.connections[ids[0]].socket
            ws[0].transport.pause_reading()
            chunk = "x" * 20_000
            sent = 0
            while sent < 20 or slow.buffered() == 0:  # until the slow one's transport queues
                assert await gw.rooms.send("r", f"{sent:06d}{chunk}") == 2
                assert await ws[1].recv() == f"{sent:06d}{chunk}"
                sent += 1
            for n in range(sent, sent + 20):
                assert await gw.rooms.send("r", f"{n:06d}{chunk}") == 2
            assert [await ws[1].recv() for _ in range(20)] == [
                f"{n:06d}{chunk}" for n in range(sent, sent + 20)
            ]
            ws[0].transport.resume_reading()
            got = [await asyncio.wait_for(ws[0].recv(), 5) for _ in range(sent + 20)]
            assert got == [f"{n:06d}{chunk}" for n in range(sent + 20)]


async def test_a_member_aborted_between_two_room_sends_is_skipped(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """A member whose transport is aborted stays in the room until the hub removes it; a send
    in between (same callback, before anything can react) must not write to its descriptor."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 2) as (ws, ids):
            for cid in ids:
                await gw.rooms.join("r", cid)
            assert await gw.rooms.send("r", "both") == 2
            gw.hub.connections[ids[0]].socket.abort()
            assert gw.hub.send_room("r", b"only the second") == 1
            assert [await ws[1].recv() for _ in range(2)] == ["both", "only the second"]
            assert await ws[0].recv() == "both"
            with pytest.raises(websockets.ConnectionClosed):
                await ws[0].recv()


async def test_a_room_of_plain_and_compressed_members_honours_exclude(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record"), server={"compression": True}) as gw:
        plain = [await websockets.connect(gw.websocket_url, compression=None) for _ in range(2)]
        deflated = await websockets.connect(gw.websocket_url, compression="deflate")
        await eventually(lambda: len(app.EVENTS) >= 3)
        plain_id, _, deflated_id = (e["requestContext"]["connectionId"] for e in app.EVENTS[:3])
        for event in app.EVENTS[:3]:
            await gw.rooms.join("mix", event["requestContext"]["connectionId"])
        assert await gw.rooms.send("mix", "not to plain", exclude=plain_id) == 2
        assert await gw.rooms.send("mix", "not to deflated", exclude=deflated_id) == 2
        assert await plain[0].recv() == "not to deflated"
        assert [await plain[1].recv() for _ in range(2)] == ["not to plain", "not to deflated"]
        assert await deflated.recv() == "not to plain"
        for ws in (*plain, deflated):
            await ws.close()


async def test_slow_consumer_is_dropped_and_reported(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    limits = {"send_queue_bytes": 64 * 1024}
    async with gateway(routes=routes(_connect="record", _disconnect="record"), limits=limits) as gw:
        slow = await websockets.connect(gw.websocket_url, max_queue=1)
        fast = await websockets.connect(gw.websocket_url)
        await eventually(lambda: len(app.EVENTS) >= 2)
        slow_id, fast_id = (e["requestContext"]["connectionId"] for e in app.EVENTS[:2])
        # The slow client stops reading at the socket level: pause its transport.
        slow.transport.pause_reading()
        for cid in (slow_id, fast_id):
            await gw.rooms.join("feed", cid)
        chunk = "z" * 16_000
        for i in range(400):  # ~6.4 MB: far past the kernel buffers and the 64 KB queue
            await gw.rooms.send("feed", chunk)
            assert await fast.recv() == chunk, i
            if slow_id not in gw.hub.connections:
                break
        await eventually(lambda: slow_id not in gw.hub.connections)
        await eventually(
            lambda: [e for e in app.EVENTS if e["requestContext"]["routeKey"] == "$disconnect"]
        )
        event = next(e for e in app.EVENTS if e["requestContext"]["routeKey"] == "$disconnect")
        assert event["requestContext"]["disconnectStatusCode"] == 1013
        assert event["requestContext"]["disconnectReason"] == "Send queue full"
        assert await gw.rooms.members("feed") == [fast_id]
        await fast.close()
        slow.transport.abort()


async def test_a_slow_consumer_of_direct_posts_is_dropped(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """Replies and posts go through Hub.send: the same send queue limit as room sends."""
    limits = {"send_queue_bytes": 64 * 1024}
    async with gateway(routes=routes(_connect="record", _disconnect="record"), limits=limits) as gw:
        slow = await websockets.connect(gw.websocket_url, max_queue=1)
        await eventually(lambda: len(app.EVENTS) >= 1)
        slow_id = app.EVENTS[0]["requestContext"]["connectionId"]
        slow.transport.pause_reading()
        chunk = "z" * 16_000
        gone = False
        for _ in range(400):  # ~6.4 MB: far past the kernel buffers and the 64 KB queue
            try:
                await gw.connections.post(slow_id, chunk)
            except GoneError:  # dropped: the posts after the one that filled the queue
                gone = True
                break
        assert gone
        await eventually(
            lambda: [e for e in app.EVENTS if e["requestContext"]["routeKey"] == "$disconnect"]
        )
        event = next(e for e in app.EVENTS if e["requestContext"]["routeKey"] == "$disconnect")
        assert event["requestContext"]["disconnectStatusCode"] == 1013
        slow.transport.abort()


async def test_a_post_after_the_close_frame_is_gone_and_not_written(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """After the close frame no data frame may follow (RFC 6455 §5.5.1), though TCP is still up
    and the connection has not been marked closing yet."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 1) as (ws, ids):
            loop = asyncio.get_running_loop()
            closing = loop.create_task(gw.hub.connections[ids[0]].socket.close(1000, "bye"))
            # Right after the task's first step has sent the close frame (see above).
            sent: asyncio.Future[bool] = loop.create_future()
            conn = gw.hub.connections[ids[0]]
            loop.call_soon(lambda: sent.set_result(gw.hub.send(conn, b"after close")))
            assert await sent is False
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws[0].recv()
            await closing


async def test_compressed_connections_get_room_messages_in_order(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record"), server={"compression": True}) as gw:
        plain = await websockets.connect(gw.websocket_url, compression=None)
        deflated = await websockets.connect(gw.websocket_url, compression="deflate")
        assert "permessage-deflate" in deflated.response.headers.get("Sec-WebSocket-Extensions", "")
        await eventually(lambda: len(app.EVENTS) >= 2)
        for event in app.EVENTS[:2]:
            await gw.rooms.join("z", event["requestContext"]["connectionId"])
        for i in range(50):
            await gw.rooms.send("z", f"message {i} " + "x" * 200)
        for ws in (plain, deflated):
            assert [str(await ws.recv()).split()[1] for _ in range(50)] == [
                str(i) for i in range(50)
            ]
            await ws.close()


async def test_room_sends_stay_in_order_when_a_member_falls_behind(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """A room send writes straight to the socket while its transport holds nothing, and through
    the transport once the kernel stops taking bytes: a member that stops reading for a while
    still gets every message, whole and in order."""
    async with gateway(routes=routes(_connect="record")) as gw:
        async with clients(gw, app, 1) as (ws, ids):
            (sock,) = (c.socket for c in gw.hub.connections.values())
            assert sock._fd == _FD_UNKNOWN  # not looked up at the handshake (a system call)
            await gw.rooms.join("r", ids[0])
            ws[0].transport.pause_reading()
            chunk = "x" * 20_000
            sent = 0
            while sent < 20 or sock.buffered() == 0:  # until the transport queues
                assert await gw.rooms.send("r", f"{sent:06d}{chunk}") == 1
                assert sock._fd >= 0  # a plain TCP socket: written by descriptor
                sent += 1
            for n in range(sent, sent + 20):  # these go after the queued ones
                await gw.rooms.send("r", f"{n:06d}{chunk}")
            ws[0].transport.resume_reading()
            got = [await asyncio.wait_for(ws[0].recv(), 5) for _ in range(sent + 20)]
            assert got == [f"{n:06d}{chunk}" for n in range(sent + 20)]

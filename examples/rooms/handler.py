"""A chat with rooms, written for hubbub (not portable to AWS): no connection table at all.

The handlers call hubbub's in-process management API (``context.gateway``): the gateway keeps room
membership, so nothing is scanned to broadcast and a closed connection leaves its rooms by itself.
Compare ``examples/chat``, the AWS-portable version that keeps its own table.

Rooms are joined with presence on (docs/rooms-and-users.md, "Presence"): the gateway lists who is
in each room, with each member's nick as its presence data, and tells the pages (which speak
hubbub.v1) when someone joins or leaves; a page that only reconnects is not reported as leaving.

Actions:
    {"action": "join", "room": "lobby", "nick": "ann"}
    {"action": "leave", "room": "lobby"}
    {"action": "send", "room": "lobby", "text": "hi"}
Frames sent to the page:
    {"type": "joined" | "left", "room": ..., "nick": ..., "members": n}
    {"type": "message", "room": ..., "nick": ..., "text": ..., "sentAt": epoch ms}
    {"type": "error", "message": ...}
"""

from __future__ import annotations

import json
import time
from typing import Any

MAX_TEXT = 2000


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(body)}


async def join(event: dict[str, Any], context: Any) -> dict[str, Any]:
    cid = event["requestContext"]["connectionId"]
    body = json.loads(event["body"])
    room = str(body.get("room") or "").strip()
    nick = str(body.get("nick") or "anon").strip()[:32]
    if not room:
        return _reply({"type": "error", "message": "room is required"})
    gateway = context.gateway
    # The nick rides along with the connection: later events carry it in requestContext.
    await gateway.connections.set_attributes(cid, {"nick": nick})
    await gateway.rooms.join(room, cid, data={"nick": nick})  # presence data: who is online
    members = len(await gateway.rooms.members(room))
    note = {"type": "joined", "room": room, "nick": nick, "members": members}
    await gateway.rooms.send(room, json.dumps(note))
    return {"statusCode": 200}


async def leave(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rc = event["requestContext"]
    room = str(json.loads(event["body"]).get("room") or "")
    nick = (rc.get("attributes") or {}).get("nick", "anon")
    await context.gateway.rooms.leave(room, rc["connectionId"])
    members = len(await context.gateway.rooms.members(room))
    note = {"type": "left", "room": room, "nick": nick, "members": members}
    await context.gateway.rooms.send(room, json.dumps(note))
    return _reply(note)


async def send(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rc = event["requestContext"]
    body = json.loads(event["body"])
    room = str(body.get("room") or "")
    text = str(body.get("text") or "")[:MAX_TEXT]
    if not room or not text:
        return _reply({"type": "error", "message": "room and text are required"})
    message = {
        "type": "message",
        "room": room,
        "nick": (rc.get("attributes") or {}).get("nick", "anon"),
        "text": text,
        "sentAt": int(time.time() * 1000),
    }
    await context.gateway.rooms.send(room, json.dumps(message))
    return {"statusCode": 200}


async def default(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _reply({"type": "error", "message": "actions: join, leave, send"})

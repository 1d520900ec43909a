"""A Python client for hubbub and any AWS API Gateway compatible WebSocket API.

::

    import hubbub.client

    async with hubbub.client.connect("ws://127.0.0.1:8080/dev") as ws:
        ws.on("reconnected", lambda event: print("back after", event.downtime, "s"))
        ws.on_reconnect_send({"action": "join", "room": "lobby"})  # replayed after reconnects
        await ws.send_json({"action": "join", "room": "lobby"})
        async for message in ws:
            print(message)

It reconnects by itself with exponential backoff and full jitter, decides by close code (and
handshake HTTP status) whether reconnecting makes sense, replays registered messages after every
reconnect, queues sends made while disconnected, and never has two sockets open at once. With
``connect(url, recovery=True)`` it speaks hubbub's recovery protocol: after a reconnect the gateway
restores its rooms and replays the room messages it missed (each exactly once, in order), or says
what was lost (the ``recovered`` / ``not_recovered`` events), and ``ws.room(name)`` gives a room's
presence (:mod:`hubbub.client.presence`). Built on aiohttp's client; see
``docs/clients.md`` for the policy table and every option.
"""

from __future__ import annotations

from hubbub.client.backoff import (
    CLOSE_RULES,
    RECONNECT,
    STATUS_RULES,
    STOP,
    Action,
    Backoff,
    close_action,
    status_action,
)
from hubbub.client.connection import ClientConnection, Message, State, connect
from hubbub.client.errors import (
    ClientError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRejected,
    RetriesExhausted,
    SendQueueFull,
)
from hubbub.client.events import (
    Close,
    Event,
    EventName,
    NotRecovered,
    Open,
    Reconnected,
    Reconnecting,
    Recovered,
)
from hubbub.client.presence import Member, PresenceError, PresenceEvent, PresenceSet, Room
from hubbub.client.recovery import Position, Received, RoomReport

__all__ = [
    "CLOSE_RULES",
    "RECONNECT",
    "STATUS_RULES",
    "STOP",
    "Action",
    "Backoff",
    "ClientConnection",
    "ClientError",
    "Close",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Event",
    "EventName",
    "HandshakeRejected",
    "Member",
    "Message",
    "NotRecovered",
    "Open",
    "Position",
    "PresenceError",
    "PresenceEvent",
    "PresenceSet",
    "Received",
    "Reconnected",
    "Reconnecting",
    "Recovered",
    "RetriesExhausted",
    "Room",
    "RoomReport",
    "SendQueueFull",
    "State",
    "close_action",
    "connect",
    "status_action",
]

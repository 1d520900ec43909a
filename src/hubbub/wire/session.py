"""The frames of the opt-in recovery protocol (``hubbub.v1``) that the gateway sends.

docs/recovery.md describes the protocol; :mod:`hubbub.gateway.recovery` runs it. In short:

- ``{"hubbub": "session", "token": T, "connectionId": C}`` right after the handshake;
- room messages with history wrapped as ``{"hubbub": "room", "room": R, "epoch": E, "offset": N,
  "data": "<the message text>"}`` (:class:`Envelope`);
- ``{"hubbub": "recovered", ...}`` answering a client's ``{"hubbub": "resume", ...}``;
- ``{"hubbub": "error", "message": ...}`` answering a control message it cannot follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

SUBPROTOCOL = "hubbub.v1"
# How a control message of an opted-in client starts: the read loop tells them from application
# messages by this prefix, without parsing.
CONTROL_PREFIX = '{"hubbub"'


def wants_recovery(requested_protocols: str | None, query: list[tuple[str, str]] | None) -> bool:
    """The client opted in by subprotocol or query flag."""
    if requested_protocols and SUBPROTOCOL in (p.strip() for p in requested_protocols.split(",")):
        return True
    return any(k == "hubbub" and v in ("1", "true") for k, v in (query or ()))


def session_frame(token: str, connection_id: str) -> bytes:
    return orjson.dumps({"hubbub": "session", "token": token, "connectionId": connection_id})


def envelope(room: str, epoch: str, offset: int, data: bytes) -> bytes:
    """A room message as recovery-enabled members get it: with its room position."""
    return orjson.dumps(
        {
            "hubbub": "room",
            "room": room,
            "epoch": epoch,
            "offset": offset,
            "data": data.decode("utf-8", "replace"),
        }
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A room message's position; the wrapped payload is built only if a member needs it."""

    room: str
    epoch: str
    offset: int
    data: bytes

    def payload(self) -> bytes:
        return envelope(self.room, self.epoch, self.offset, self.data)


def recovered_frame(recovered: bool, rooms: dict[str, Any], reason: str | None = None) -> bytes:
    """The answer to a resume: whether every room was recovered, and each room's report."""
    return orjson.dumps(
        {"hubbub": "recovered", "recovered": recovered, "reason": reason, "rooms": rooms}
    )


def not_resumed_frame(reason: str) -> bytes:
    """The answer to a resume that restored nothing (``reason``: why)."""
    return orjson.dumps({"hubbub": "recovered", "recovered": False, "reason": reason, "rooms": {}})


def control_error(message: str) -> bytes:
    """The answer to a control message the gateway cannot follow."""
    return orjson.dumps({"hubbub": "error", "message": message})

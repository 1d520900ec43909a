"""The client side of hubbub's opt-in recovery protocol (``hubbub.v1``): pure state, no I/O.

Theory of operation. The gateway's half is described in ``docs/recovery.md``; on the wire, an
opted-in socket first receives ``{"hubbub": "session", "token": T, ...}``, then room messages as
envelopes ``{"hubbub": "room", "room": R, "epoch": E, "offset": N, "data": "<text>"}``. After a
reconnect the client's first message is ``{"hubbub": "resume", "token": <previous T>, "rooms":
{R: {"epoch": E, "offset": N}}}``; the gateway rejoins the rooms, replays the missed envelopes and
answers ``{"hubbub": "recovered", ...}``.

A :class:`SessionState` sees every text frame of an opted-in socket (:meth:`~SessionState.receive`)
and says what it is:

- a :class:`Received` for the application: a plain message, or a room envelope unwrapped, *unless*
  its offset is not after the last one delivered for that room in the same epoch (a duplicate:
  replays and live delivery may overlap; it is counted in ``duplicates`` and dropped);
- an :class:`Answer` (the ``recovered`` frame of the resume in progress): the caller reports it;
- ``None`` for everything else that is the protocol's business (``session``, ``error``, a late
  answer, a malformed envelope). Control frames never reach the application.

It keeps what the next reconnect needs: the last delivered position per room and the session token.
Every connection brings a new token, and the newest one is kept, with one exception: while a
resume is in progress the new connection's session is not complete yet (the gateway is still
restoring it), so if that socket dies before the answer, the next resume presents the previous
token again (whose session the gateway still holds) rather than the half-restored one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hubbub.client.queues import Data

__all__ = [
    "CONTROL_PREFIX",
    "SUBPROTOCOL",
    "Answer",
    "Position",
    "Received",
    "RoomReport",
    "SessionState",
]

log = logging.getLogger("hubbub.client")

SUBPROTOCOL: Final = "hubbub.v1"
# Every control frame the gateway writes starts with exactly these bytes (compact JSON).
CONTROL_PREFIX: Final = '{"hubbub"'


@dataclass(frozen=True, slots=True)
class Position:
    """Where a room's stream stands: ``offset`` (1, 2, 3, ...) within ``epoch``."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Received:
    """One message for the application.

    ``data`` is what the application sent (a room envelope's ``data`` text, unwrapped). For room
    messages on a recovery socket, ``room``, ``epoch`` and ``offset`` say where it belongs, and
    ``replayed`` is True when it was written during a resume (missed while away, or published
    while the gateway was restoring the session). All four are ``None``/False otherwise.
    """

    data: Data
    room: str | None = None
    epoch: str | None = None
    offset: int | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class RoomReport:
    """The gateway's answer for one room.

    ``recovered``: every missed message was replayed (``replayed`` of them); otherwise ``reason``
    says why not (``"window passed"``, ``"epoch changed"``). ``epoch``/``offset``: the room's
    position when the gateway answered.
    """

    room: str
    recovered: bool
    replayed: int = 0
    reason: str | None = None
    epoch: str | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A ``recovered`` frame. ``resumed``: the session was found (rooms, users and attributes are
    back), even if some rooms have a gap; ``recovered``: nothing at all was missed."""

    recovered: bool
    resumed: bool
    reason: str | None
    rooms: Mapping[str, RoomReport]


class SessionState:
    """What a recovery client remembers across sockets; see the module docstring."""

    def __init__(self) -> None:
        self.token: str | None = None  # presented by the next resume
        self.connection_id: str | None = None  # the current (or last) socket's id
        self.positions: dict[str, Position] = {}
        self.resuming = False  # a resume was sent and its answer has not come
        self.duplicates = 0  # envelopes dropped because their offset was already delivered
        self._pending_token: str | None = None
        # Takes the other control frames it knows (presence); returns False for the rest.
        self.on_control: Callable[[Mapping[str, Any]], bool] | None = None

    def start_resume(self) -> str | None:
        """The resume message for a new socket (its first message), or None without a token."""
        if self.token is None:
            return None
        self.resuming = True
        rooms = {room: {"epoch": p.epoch, "offset": p.offset} for room, p in self.positions.items()}
        return json.dumps(
            {"hubbub": "resume", "token": self.token, "rooms": rooms}, separators=(",", ":")
        )

    def settle(self) -> None:
        """The resume is over without an answer on this socket (a timeout): this socket's session
        is the one to resume from now on."""
        self.resuming = False
        if self._pending_token is not None:
            self.token, self._pending_token = self._pending_token, None

    def socket_closed(self) -> None:
        """The socket ended; a resume still waiting is abandoned (the next socket resumes again,
        from the previous token)."""
        self.resuming = False
        self._pending_token = None

    def receive(self, text: str) -> Received | Answer | None:
        """Classify one text frame (see the module docstring)."""
        if not text.startswith(CONTROL_PREFIX):
            return Received(text)
        try:
            frame = json.loads(text)
        except ValueError:
            return Received(text)  # not JSON after all: the application's
        if not isinstance(frame, dict):
            return Received(text)
        kind = frame.get("hubbub")
        if kind == "room":
            return self._envelope(frame)
        if kind == "session":
            self._session(frame)
        elif kind == "recovered":
            return self._answer(frame)
        elif self.on_control is not None and self.on_control(frame):
            pass  # presence: events and answers (hubbub.client.presence)
        elif kind == "error":
            log.warning("the gateway refused a recovery message: %s", frame.get("message"))
        else:
            log.debug("ignored an unknown hubbub control frame: %.200s", text)
        return None

    # -- frames ------------------------------------------------------------------------------
    def _session(self, frame: Mapping[str, Any]) -> None:
        token = frame.get("token")
        if not isinstance(token, str):
            return
        cid = frame.get("connectionId")
        self.connection_id = cid if isinstance(cid, str) else None
        if self.resuming:
            self._pending_token = token
        else:
            self.token = token

    def _envelope(self, frame: Mapping[str, Any]) -> Received | None:
        room, epoch, offset, data = (frame.get(k) for k in ("room", "epoch", "offset", "data"))
        if not (
            isinstance(room, str)
            and isinstance(epoch, str)
            and _is_int(offset)
            and isinstance(data, str)
        ):
            log.warning("dropped a malformed room envelope for room %r", room)
            return None
        assert isinstance(offset, int)
        last = self.positions.get(room)
        if last is not None and last.epoch == epoch and offset <= last.offset:
            self.duplicates += 1
            return None
        self.positions[room] = Position(epoch, offset)
        return Received(data, room, epoch, offset, replayed=self.resuming)

    def _answer(self, frame: Mapping[str, Any]) -> Answer | None:
        reason = frame.get("reason")
        rooms: dict[str, RoomReport] = {}
        raw_rooms = frame.get("rooms")
        for room, raw in (raw_rooms if isinstance(raw_rooms, dict) else {}).items():
            if isinstance(room, str) and isinstance(raw, dict):
                rooms[room] = _report(room, raw)
                self._advance(rooms[room])
        awaited = self.resuming
        self.settle()
        if not awaited:
            return None  # late (after a timeout): positions updated, nobody waits for it
        return Answer(
            recovered=frame.get("recovered") is True,
            resumed=reason is None,
            reason=reason if isinstance(reason, str) else None,
            rooms=rooms,
        )

    def _advance(self, report: RoomReport) -> None:
        # The answer's position is the room's head when the gateway read the history; live
        # messages delivered since may already be past it (same epoch: keep the larger).
        if report.epoch is None or report.offset is None:
            return
        last = self.positions.get(report.room)
        if last is None or last.epoch != report.epoch or last.offset < report.offset:
            self.positions[report.room] = Position(report.epoch, report.offset)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _report(room: str, raw: Mapping[str, Any]) -> RoomReport:
    replayed, reason, epoch, offset = (
        raw.get(k) for k in ("replayed", "reason", "epoch", "offset")
    )
    return RoomReport(
        room=room,
        recovered=raw.get("recovered") is True,
        replayed=replayed if isinstance(replayed, int) and not isinstance(replayed, bool) else 0,
        reason=reason if isinstance(reason, str) else None,
        epoch=epoch if isinstance(epoch, str) else None,
        offset=offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
    )

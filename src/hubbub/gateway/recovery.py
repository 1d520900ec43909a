"""The opt-in recovery protocol (``hubbub.v1``): sessions, room envelopes, resume.

Its frames are built in :mod:`hubbub.wire.session`; this module runs the protocol.

Plain AWS-style clients never see any of this. A client opts in with the subprotocol ``hubbub.v1``
or the query flag ``?hubbub=1``; from then on:

- right after the handshake it receives ``{"hubbub": "session", "token": T, "connectionId": C}``;
- room messages arrive wrapped: ``{"hubbub": "room", "room": R, "epoch": E, "offset": N,
  "data": "<the message text>"}`` (direct posts and broadcasts are not wrapped: they have no
  history);
- after reconnecting (a new socket, a new connection id; ``$connect`` runs again, as for any new
  connection — it is a new connection to the application too), its first message is
  ``{"hubbub": "resume", "token": T, "rooms": {R: {"epoch": E, "offset": N}, ...}}``; the gateway
  restores the old connection's rooms, user bindings and attributes onto the new one, replays every
  room message after each given position in order (as envelopes), and answers
  ``{"hubbub": "recovered", "recovered": true|false, "rooms": {R: {"recovered": bool, "replayed": n,
  "reason": null|"epoch changed"|"window passed"}}, "reason": null|"session expired"}``.

Room messages published while a resume runs are held back and written after the replay, so none
arrives twice from one resume; clients still drop offsets they have already seen (at-least-once
across reconnects).

A token is a bearer secret, but not only that: a session belongs to the authorizer principal of
the connection that made it, so another principal's connection holding the token is answered
``"reason": "session not yours"`` (it would otherwise inherit ``@users/{principal}`` posts), and
one live connection at a time may resume it: a second one is answered ``"session in use"`` until
the first ends. Neither refusal touches the session, so its owner can still resume it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from hubbub.errors import UnavailableError
from hubbub.store.recovery import Missed, Position, Recovery, Session, new_token
from hubbub.wire.session import control_error, envelope, not_resumed_frame, recovered_frame

if TYPE_CHECKING:
    from hubbub.gateway.connection import Connection
    from hubbub.gateway.hub import Hub
    from hubbub.gateway.management.services import GatewayApi
    from hubbub.gateway.presence import RoomPresence

log = logging.getLogger("hubbub.recovery")


def principal_of(conn: Connection) -> str | None:
    """The authorizer's ``principalId`` of a connection (None without an authorizer)."""
    principal = (conn.context.authorizer or {}).get("principalId")
    return None if principal is None else str(principal)


def _position(value: Any) -> Position | None:
    if not isinstance(value, Mapping):
        return None
    epoch, offset = value.get("epoch"), value.get("offset")
    if isinstance(epoch, str) and isinstance(offset, int) and not isinstance(offset, bool):
        return Position(epoch, offset)
    return None


class Resumer:
    """Handles control messages of opted-in connections."""

    def __init__(
        self,
        recovery: Recovery,
        api: GatewayApi,
        hub: Hub,
        *,
        session_ttl: float,
        presence: RoomPresence | None = None,
    ) -> None:
        self._recovery = recovery
        self._api = api
        self._hub = hub
        self._ttl = session_ttl
        # Resume requests by outcome (resumed, partial, expired, not_yours, in_use): /metrics.
        self.outcomes: Counter[str] = Counter()
        self.presence = presence  # answers the presence.* control messages
        self._keeper: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Keep the history of every room a recovery-enabled connection of this node is in,
        where the history needs it (``Recovery.keep_interval``): a history shared by several
        nodes records a room only while it is kept, however quiet the room is."""
        interval = self._recovery.keep_interval
        if interval is not None:
            self._keeper = asyncio.get_running_loop().create_task(
                self._keep_loop(interval), name="hubbub-history-keep"
            )

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    async def _keep_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.keep()

    async def keep(self) -> int:
        """One round of the keeper: how many rooms it kept (0 when the history is down: the
        next round tries again, well within the TTL)."""
        rooms = self._hub.rooms_with_sessions()
        if not rooms:
            return 0
        try:
            await self._recovery.keep(rooms)
        except UnavailableError as exc:
            log.warning("room history not kept", extra={"fields": {"error": str(exc)}})
            return 0
        return len(rooms)

    def new_session(self) -> str:
        return new_token()

    async def save(self, token: str, session: Session) -> None:
        """Keep a closed connection's state for ``ttl`` seconds, for its client to resume."""
        await self._recovery.save_session(token, session, self._ttl)

    async def release(self, conn: Connection) -> None:
        """``conn`` ends: the session it resumed may be resumed by another connection."""
        token, conn.resumed = conn.resumed, None
        if token is not None:
            await self._recovery.release_session(token, conn.id)

    async def control(self, conn: Connection, text: str) -> bytes | None:
        """Answer one control message; the reply frame payload, or None to ignore it."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return control_error("invalid control message")
        kind = message.get("hubbub") if isinstance(message, dict) else None
        if isinstance(kind, str) and kind.startswith("presence.") and self.presence is not None:
            assert isinstance(message, dict)
            return await self.presence.control(conn, message)
        if not isinstance(message, dict) or kind != "resume":
            return control_error("unknown control message")
        token = message.get("token")
        rooms = message.get("rooms") or {}
        if not isinstance(token, str) or not isinstance(rooms, dict):
            return control_error("resume needs token and rooms")
        return await self._resume(conn, token, rooms)

    def _not_resumed(self, reason: str, outcome: str) -> bytes:
        self.outcomes[outcome] += 1
        return not_resumed_frame(reason)

    async def _resume(self, conn: Connection, token: str, positions: dict[str, Any]) -> bytes:
        session = await self._recovery.load_session(token)
        if session is None:
            return self._not_resumed("session expired", "expired")
        if session.principal != principal_of(conn):
            log.warning(
                "resume refused: the session belongs to another principal",
                extra={"fields": {"connectionId": conn.id}},
            )
            return self._not_resumed("session not yours", "not_yours")
        if conn.resumed is not None and conn.resumed != token:
            return self._not_resumed(
                "session in use", "in_use"
            )  # one resumed session per connection
        if not await self._recovery.claim_session(token, conn.id, self._ttl):
            log.info(
                "resume refused: another live connection holds the session",
                extra={"fields": {"connectionId": conn.id}},
            )
            return self._not_resumed("session in use", "in_use")
        conn.resumed = token
        api = self._api
        if session.attributes:
            await api.connections.set_attributes(conn.id, session.attributes)
        for user in session.users:
            await api.users.bind(user, conn.id)
        report: dict[str, Any] = {}
        recovered = True
        replayed_up_to: dict[str, int] = {}
        conn.held = []  # live room messages wait until the replay is written
        try:
            for room in session.rooms:
                # Live delivery first, then fill the gap. Presence kept by the session is
                # taken over below (no leave/join pair), not entered anew.
                await api.rooms.join(
                    room, conn.id, presence=False if room in session.presence else None
                )
                # The client's own position, else where its old connection joined the room.
                known = _position(positions.get(room)) or session.joined.get(room)
                missed: Missed = await self._recovery.since(room, known)
                head = missed.position
                replayed_up_to[room] = head.offset
                if known is None:
                    # Nothing known about this room: rejoined, nothing to replay.
                    report[room] = {
                        "recovered": True,
                        "replayed": 0,
                        "reason": None,
                        "epoch": head.epoch,
                        "offset": head.offset,
                    }
                    continue
                if missed.complete:
                    for offset, data in missed.messages:
                        self._hub.send(conn, envelope(room, head.epoch, offset, data))
                else:
                    recovered = False
                report[room] = {
                    "recovered": missed.complete,
                    "replayed": len(missed.messages) if missed.complete else 0,
                    "reason": missed.reason,
                    "epoch": head.epoch,
                    "offset": head.offset,
                }
        finally:
            held, conn.held = conn.held, None
            for room, offset, payload in held:
                if offset > replayed_up_to.get(room, 0):
                    self._hub.send(conn, payload)
        self.outcomes["resumed" if recovered else "partial"] += 1
        if session.presence and self.presence is not None:
            await self.presence.resumed(conn, session)
        log.info(
            "session resumed",
            extra={
                "fields": {
                    "connectionId": conn.id,
                    "rooms": len(session.rooms),
                    "recovered": recovered,
                }
            },
        )
        return recovered_frame(recovered, report)

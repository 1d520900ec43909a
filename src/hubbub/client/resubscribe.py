"""What a client sends again on every new socket after a reconnect (``on_reconnect_send``).

No asyncio here: a :class:`Resubscriptions` keeps the registrations in order and turns them into
the list of frames to write, given whether the gateway resumed the session (hubbub's recovery
protocol rejoins the rooms itself, so joins registered with ``skip_if_resumed`` are left out).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hubbub.client.queues import Data

__all__ = ["Message", "MessageSource", "Resubscriptions", "encode"]

log = logging.getLogger("hubbub.client")

# What on_reconnect_send and send_json accept: text and bytes go as they are, the rest as JSON.
Message = Data | Mapping[str, Any] | Sequence[Any] | int | float | bool | None
# A callable replayed at each reconnect: an iterable of messages, or one text/bytes/dict message.
MessageSource = Callable[[], Iterable[Message] | Data | Mapping[str, Any]]


def encode(message: Message) -> Data:
    """Text and bytes unchanged; anything else as compact JSON text."""
    if isinstance(message, str | bytes):
        return message
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass(eq=False, slots=True)
class _Entry:
    """One registration (compared by identity, so its remover removes exactly it)."""

    value: Data | MessageSource
    skip_if_resumed: bool


class Resubscriptions:
    """The ``on_reconnect_send`` registrations of one client, in registration order."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def add(
        self, message: Message | MessageSource, *, skip_if_resumed: bool = False
    ) -> Callable[[], None]:
        """Register ``message`` (encoded now, or a callable run at each reconnect); returns a
        function that removes it."""
        value: Data | MessageSource = message if callable(message) else encode(message)
        entry = _Entry(value, skip_if_resumed)
        self._entries.append(entry)

        def remove() -> None:
            if entry in self._entries:
                self._entries.remove(entry)

        return remove

    def messages(self, *, resumed: bool) -> list[Data]:
        """The frames for a new socket; a callable that raises is logged and skipped."""
        messages: list[Data] = []
        for entry in list(self._entries):
            if resumed and entry.skip_if_resumed:
                continue
            source = entry.value
            if not callable(source):
                messages.append(source)
                continue
            try:
                produced = source()
                if isinstance(produced, str | bytes | Mapping):
                    messages.append(encode(produced))
                else:
                    messages.extend(encode(m) for m in produced)
            except Exception:
                log.exception("on_reconnect_send callable %r failed; skipped", source)
        return messages

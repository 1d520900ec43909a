"""Kinds: what a socket read returns, and how a delivery between nodes fans out."""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Literal


class MessageKind(IntEnum):
    """The first item of what ``Socket.receive()`` returns: ``(kind, data, extra)``.

    The values are aiohttp's ``WSMsgType`` values, so the transport adapter
    (:mod:`hubbub.gateway.transport_aiohttp`) hands out aiohttp's messages without translating
    them on the hot path (tests/gateway/test_transport_boundary.py,
    ``test_message_kinds_match_aiohttp``, keeps them equal).
    """

    TEXT = 1  # data: str
    BINARY = 2  # data: bytes
    CLOSE = 8  # data: the peer's close code, extra: its reason
    CLOSING = 256  # we are closing
    CLOSED = 257  # the TCP connection is gone
    ERROR = 258  # data: the exception (a protocol error with a ``code``, a ping timeout)


# How the node receiving a :class:`hubbub.store.base.Delivery` fans it out (its docstring says
# what ``target`` and ``data`` are for each). The kinds travel between nodes as these strings.
DeliveryKind = Literal[
    "connection",  # PostToConnection
    "room",
    "user",
    "broadcast",
    "close",  # DeleteConnection
    # a shared store tells a connection's node that another node changed the connection:
    "join",
    "leave",
    "bind",
    "attributes",
    # presence (hubbub.gateway.presence):
    "presence",
    "presence-track",
]

# The kinds that tell the holder of a connection about a change made on another node.
NOTICES: Final = frozenset({"join", "leave", "bind", "attributes"})

"""Close codes and the closes hubbub sends, each code with its reason.

The codes are RFC 6455 §7.4.1's; the reasons are what ``$disconnect`` reports as
``disconnectReason`` and what the close frame carries (docs/compatibility.md, "Close codes").
Where a real AWS capture shows the reason (tests/aws/captures/README.md), it is AWS's, word for
word. A :class:`Close` is the pair a connection records first and keeps (the first record wins).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class CloseCode(IntEnum):
    """The WebSocket close codes hubbub sends, receives or reports."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: the peer's close frame had no status
    ABNORMAL = 1006  # never on the wire: the TCP connection ended without a close frame
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013


class Close(NamedTuple):
    """A close code with its reason.

    ``code`` is the :class:`CloseCode`'s plain ``int`` value: it lands in ``$disconnect`` events
    handed to handlers as they are, and in log lines, where an enum member would show its name.
    """

    code: int
    reason: str


def _close(code: CloseCode, reason: str) -> Close:
    return Close(code.value, reason)


NORMAL = _close(CloseCode.NORMAL, "Connection Closed Normally")  # DeleteConnection
IDLE = _close(CloseCode.GOING_AWAY, "Going away")  # limits.idle_timeout passed
MAX_DURATION = _close(CloseCode.GOING_AWAY, "Maximum connection duration reached")
GOING_AWAY = _close(CloseCode.GOING_AWAY, "Going away")  # the gateway shuts down
BINARY_REFUSED = _close(CloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
RATE_EXCEEDED = _close(CloseCode.POLICY_VIOLATION, "Message rate exceeded")
SLOW_CONSUMER = _close(CloseCode.TRY_AGAIN_LATER, "Send queue full")
GONE_BEFORE_OPEN = _close(CloseCode.ABNORMAL, "Client went away during the handshake")
PING_TIMEOUT = _close(CloseCode.ABNORMAL, "Ping timeout")  # no pong within server.ping_timeout
# The ``$disconnect`` another node delivers for the connections of a node that died.
NODE_LOST = _close(CloseCode.ABNORMAL, "Gateway node lost")

# AWS's words for a close frame without a status (the Powertools 2024 capture).
NO_STATUS_REASON = "Client-side close frame status not set"

# Reasons reported in ``$disconnect`` for closes the peer caused through a protocol error.
PEER_ERROR_REASONS: dict[int, str] = {
    CloseCode.PROTOCOL_ERROR.value: "Protocol error",
    CloseCode.INVALID_PAYLOAD.value: "Invalid frame payload data",
    CloseCode.MESSAGE_TOO_BIG.value: "Message too big",
}

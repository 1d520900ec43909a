"""The hub's bookkeeping and delivery, on fake sockets (tests/gateway/test_rooms.py has real ones).

Rooms and users index only local connections; a send frames a message once and writes the same
bytes to every recipient; a recipient whose send queue passes the limit is dropped with 1013.
"""

from __future__ import annotations

import socket
from typing import Any, cast

import pytest

from hubbub.gateway.hub import Hub
from hubbub.gateway.transport_aiohttp import Recipients, Socket
from hubbub.wire.frames import frame_message, frame_text
from hubbub.wire.session import Envelope
from tests.gateway.unit.fakes import FakeTransport, FakeWebSocket, Peer
from tests.helpers import eventually

LIMIT = 1000


def _hub(*peers: Peer) -> Hub:
    hub = Hub(send_queue_bytes=LIMIT)
    for peer in peers:
        hub.add(peer.conn)
    return hub


# -- membership ---------------------------------------------------------------------------------
def test_rooms_and_users_index_their_local_members() -> None:
    a, b = Peer("a"), Peer("b")
    hub = _hub(a, b)
    hub.join("lobby", a.conn)
    hub.join("lobby", b.conn)
    hub.join("games", b.conn)
    hub.bind_user("ann", a.conn)

    assert hub.rooms == {"lobby": {"a", "b"}, "games": {"b"}}
    assert hub.users == {"ann": {"a": a.conn}}
    assert b.conn.rooms == {"lobby", "games"}
    assert a.conn.users == {"ann"}


def test_the_last_member_leaving_removes_the_room() -> None:
    a, b = Peer("a"), Peer("b")
    hub = _hub(a, b)
    hub.join("lobby", a.conn)
    hub.join("lobby", b.conn)

    hub.leave("lobby", a.conn)
    assert hub.rooms == {"lobby": {"b"}}
    assert a.conn.rooms == set()
    hub.leave("lobby", b.conn)
    assert hub.rooms == {}


def test_removing_a_connection_clears_its_rooms_and_users() -> None:
    a, b = Peer("a"), Peer("b")
    hub = _hub(a, b)
    for room in ("lobby", "games"):
        hub.join(room, a.conn)
    hub.join("lobby", b.conn)
    hub.bind_user("ann", a.conn)

    hub.remove(a.conn)
    assert set(hub.connections) == {"b"}
    assert hub.rooms == {"lobby": {"b"}}
    assert hub.users == {}
    assert a.conn.rooms == set()
    assert a.conn.users == set()
    assert hub.broadcast(b"hi") == 1


def test_removing_a_connection_that_joined_nothing_makes_no_sets() -> None:
    a = Peer("a")
    hub = _hub(a)
    hub.remove(a.conn)
    assert a.conn.memberships() == (None, None)
    assert set(hub.connections) == set()


def test_a_connection_that_left_the_hub_joins_nothing() -> None:
    """A join or bind that lands after the close (the caller awaited the registry meanwhile)
    must not keep a dead member."""
    a = Peer("a")
    hub = _hub(a)
    hub.remove(a.conn)

    hub.join("lobby", a.conn)
    hub.bind_user("ann", a.conn)
    assert hub.rooms == {}
    assert hub.users == {}
    assert a.conn.rooms == set()


def test_a_new_connection_with_the_same_id_is_not_the_one_that_joins() -> None:
    old, new = Peer("a"), Peer("a")
    hub = _hub(new)
    hub.join("lobby", old.conn)
    assert hub.rooms == {}


def test_recovery_sessions_are_found_by_room() -> None:
    plain, recovering = Peer("p"), Peer("r")
    recovering.conn.session = "token"
    hub = _hub(plain, recovering)
    for peer in (plain, recovering):
        hub.join("lobby", peer.conn)
    hub.join("quiet", plain.conn)

    assert hub.has_session("lobby")
    assert not hub.has_session("quiet")
    assert not hub.has_session("nowhere")
    assert hub.protocol_members("lobby") == [recovering.conn]
    assert hub.protocol_members("nowhere") == []
    assert hub.rooms_with_sessions() == ["lobby"]


# -- delivery -----------------------------------------------------------------------------------
def test_a_room_send_frames_once_and_writes_the_same_bytes_to_each_member() -> None:
    peers = [Peer(f"c{i}") for i in range(3)]
    outsider = Peer("out")
    hub = _hub(*peers, outsider)
    for peer in peers:
        hub.join("lobby", peer.conn)

    assert hub.send_room("lobby", b"hello") == 3
    assert hub.frames_built == 1
    assert hub.writes == 3
    for peer in peers:
        assert peer.transport.written == [frame_text(b"hello")]
    assert outsider.transport.written == []


def test_a_room_send_skips_the_excluded_member() -> None:
    a, b = Peer("a"), Peer("b")
    hub = _hub(a, b)
    hub.join("lobby", a.conn)
    hub.join("lobby", b.conn)

    assert hub.send_room("lobby", b"hi", exclude="a") == 1
    assert a.transport.written == []
    assert b.transport.written == [frame_text(b"hi")]


def test_a_send_to_an_unknown_room_reaches_nobody() -> None:
    hub = _hub(Peer("a"))
    assert hub.send_room("nowhere", b"hi") == 0


def test_broadcast_reaches_every_local_connection() -> None:
    peers = [Peer(f"c{i}") for i in range(4)]
    hub = _hub(*peers)
    assert hub.broadcast(b"all") == 4
    assert all(p.transport.written == [frame_text(b"all")] for p in peers)


def test_bytes_that_are_not_utf8_travel_in_a_binary_frame() -> None:
    a = Peer("a")
    hub = _hub(a)
    assert hub.send(a.conn, b"\xff\xfe")
    assert a.transport.written == [frame_message(b"\xff\xfe")]
    assert a.transport.written[0][0] == 0x82  # FIN + binary
    assert frame_message(b"text")[0] == 0x81  # FIN + text


def test_a_short_ascii_send_is_the_frame_frame_text_builds_at_every_length() -> None:
    # Hub.send looks the header of a reply under 126 bytes up in a table: every length of it,
    # and the first two past it (frame_message's), give frame_text's bytes.
    a = Peer("a")
    hub = _hub(a)
    for n in range(128):
        payload = bytes(ord("a") + i % 26 for i in range(n))
        assert hub.send(a.conn, payload)
        assert a.transport.written[-1] == frame_text(payload)
    assert len(a.transport.written) == 128


def test_a_closing_or_closed_connection_gets_nothing() -> None:
    closing, closed, open_ = Peer("closing"), Peer("closed"), Peer("open")
    closing.conn.closing = True
    closed.ws._closed = True  # its closing handshake has begun
    hub = _hub(closing, closed, open_)
    for peer in (closing, closed, open_):
        hub.join("lobby", peer.conn)

    assert not hub.send(closing.conn, b"x")
    assert not hub.send(closed.conn, b"x")
    # The room's tight loop reads the socket's state, not ``Connection.closing`` (see hub.py):
    # a connection sets that flag only right before its socket closes.
    assert hub.send_room("lobby", b"y") == 2
    assert closed.transport.written == []
    assert open_.transport.written == [frame_text(b"y")]


def test_fan_out_frames_once_for_any_list_of_connections() -> None:
    peers = [Peer(f"c{i}") for i in range(3)]
    hub = _hub(*peers)
    assert hub.fan_out([p.conn for p in peers], b"x", exclude="c1") == 2
    assert hub.frames_built == 1
    assert [len(p.transport.written) for p in peers] == [1, 0, 1]


# -- slow consumers -----------------------------------------------------------------------------
def test_a_member_over_the_send_queue_limit_is_dropped_with_1013() -> None:
    slow, fast = Peer("slow", stuck=True), Peer("fast")
    hub = _hub(slow, fast)
    hub.join("lobby", slow.conn)
    hub.join("lobby", fast.conn)

    big = b"x" * (LIMIT // 2)
    assert hub.send_room("lobby", big) == 2  # 500 bytes queued: under the limit
    assert not slow.transport.aborted
    assert hub.send_room("lobby", big) == 2  # now over it
    assert slow.transport.aborted
    assert slow.conn.closing
    assert slow.conn.close_status == (1013, "Send queue full")
    assert hub.slow_drops == 1
    assert not fast.transport.aborted
    assert fast.conn.close_status == (1006, "")  # nothing recorded: still open

    assert hub.send_room("lobby", big) == 1  # the dropped one is skipped from now on
    assert len(fast.transport.written) == 3


def test_a_single_send_over_the_limit_drops_the_connection_too() -> None:
    slow = Peer("slow", stuck=True)
    hub = _hub(slow)
    assert hub.send(slow.conn, b"x" * (LIMIT + 1))  # written, and then dropped
    assert slow.transport.aborted
    assert slow.conn.close_status == (1013, "Send queue full")
    assert not hub.send(slow.conn, b"more")


# -- recovery envelopes and compressed connections ----------------------------------------------
def test_recovery_members_get_the_envelope_and_the_others_the_bare_message() -> None:
    plain, recovering, resuming = Peer("p"), Peer("r"), Peer("s")
    for peer in (recovering, resuming):
        peer.conn.session = f"token-{peer.conn.id}"
    resuming.conn.held = []
    hub = _hub(plain, recovering, resuming)
    for peer in (plain, recovering, resuming):
        hub.join("lobby", peer.conn)

    envelope = Envelope("lobby", "e1", 7, b"hi")
    assert hub.send_room("lobby", b"hi", envelope=envelope) == 3
    assert hub.frames_built == 2  # the bare frame and the wrapped one, each once
    assert plain.transport.written == [frame_text(b"hi")]
    assert recovering.transport.written == [frame_text(envelope.payload())]
    # A resuming member's replay goes first: the live message waits in ``held``.
    assert resuming.transport.written == []
    assert resuming.conn.held == [("lobby", 7, envelope.payload())]


async def test_a_compressed_connection_gets_its_messages_in_order_through_its_outbox() -> None:
    compressed = Peer("z", compress=True)
    hub = _hub(compressed)
    hub.join("lobby", compressed.conn)

    for text in (b"one", b"two", b"three"):
        assert hub.send_room("lobby", text) == 1
    assert compressed.transport.written == []  # never the shared, uncompressed frame
    await eventually(lambda: len(compressed.ws.sent) == 3, message="the outbox drained")
    assert compressed.ws.sent == [b"one", b"two", b"three"]
    assert compressed.conn.outbox_bytes == 0


def test_a_compressed_connection_over_the_limit_is_dropped() -> None:
    compressed = Peer("z", compress=True)
    hub = _hub(compressed)
    compressed.conn.outbox_bytes = LIMIT + 1  # its outbox is not draining

    assert not hub.send(compressed.conn, b"x")
    assert compressed.transport.aborted
    assert compressed.conn.close_status == (1013, "Send queue full")


def test_a_room_send_follows_joins_leaves_and_removals_since_the_last_send() -> None:
    """Each room keeps its plain members laid out for the send loop between sends
    (Members.recipients); a join, a leave or a removal must show in the very next send."""
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    hub = _hub(a, b, c)
    hub.join("lobby", a.conn)
    hub.join("lobby", b.conn)
    assert hub.send_room("lobby", b"1") == 2
    hub.join("lobby", c.conn)
    assert hub.send_room("lobby", b"2") == 3
    hub.leave("lobby", a.conn)
    assert hub.send_room("lobby", b"3") == 2
    hub.remove(b.conn)
    assert hub.send_room("lobby", b"4") == 1
    assert hub.send_room("lobby", b"5", exclude="c") == 0
    hub.join("lobby", a.conn)
    assert hub.send_room("lobby", b"6", exclude="c") == 1

    def got(peer: Peer) -> list[bytes]:
        return peer.transport.written

    assert got(a) == [frame_text(b"1"), frame_text(b"2"), frame_text(b"6")]
    assert got(b) == [frame_text(b"1"), frame_text(b"2"), frame_text(b"3")]
    assert got(c) == [frame_text(b"2"), frame_text(b"3"), frame_text(b"4")]


def test_a_member_that_closes_between_two_sends_is_skipped_before_it_leaves() -> None:
    """The laid-out members are not rebuilt when one closes (it leaves the room only once the
    hub removes it): each send still checks every socket's state."""
    a, b = Peer("a"), Peer("b")
    hub = _hub(a, b)
    for peer in (a, b):
        hub.join("lobby", peer.conn)
    assert hub.send_room("lobby", b"1") == 2
    a.transport.abort()
    b.ws._closed = True  # its closing handshake has begun
    assert hub.send_room("lobby", b"2") == 0
    assert hub.rooms == {"lobby": {"a", "b"}}
    assert a.transport.written == b.transport.written == [frame_text(b"1")]


class _OtherTransport(FakeTransport):
    """A second transport class: a room whose sockets mix classes cannot be checked in one pass."""


def test_sockets_written_by_descriptor_with_mixed_transport_classes_each_get_the_frame() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        sockets = []
        for i, (ours, _) in enumerate(pairs):
            ours.setblocking(False)
            transport = FakeTransport() if i % 2 else _OtherTransport()
            sock = Socket(cast(Any, FakeWebSocket()), cast(Any, transport))
            sock._fd = ours.fileno()  # as for a plain TCP transport (_plain_fd)
            sockets.append(sock)
        recipients = Recipients(sockets)
        assert recipients.kind is None
        assert Socket.broadcast(recipients, frame_text(b"hi"), LIMIT, skip=sockets[1]) == (2, [])
        assert [theirs.recv(64) for _, theirs in pairs[::2]] == [frame_text(b"hi")] * 2
        pairs[1][1].setblocking(False)
        with pytest.raises(BlockingIOError):
            pairs[1][1].recv(64)
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()

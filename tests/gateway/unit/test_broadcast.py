"""Socket.broadcast's writes by descriptor, on real socket pairs with fake transports: what the
kernel does not take goes to the transport, once and in order, and every other socket still gets
the frame exactly once (tests/gateway/test_rooms.py drives the same through the gateway)."""

from __future__ import annotations

import ast
import inspect
import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest

from hubbub.gateway.lean_socket import LeanSocket
from hubbub.gateway.transport_aiohttp import Recipients, Socket, _write_each
from hubbub.wire.frames import frame_text
from tests.gateway.unit.fakes import FakeTransport, FakeWebSocket

LIMIT = 1 << 30


class _Lean(Socket):
    """A socket that counts its closing handshakes, as LeanSocket does."""

    __slots__ = ()
    counts_closes = True


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(5)]
    for ours, _ in made:
        ours.setblocking(False)
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def _fill(sock: socket.socket) -> None:
    """Write until the kernel takes nothing more (the peer reads nothing)."""
    chunk = b"\0" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    got = b""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return got
        if not data:
            return got
        got += data


def _sockets(
    pairs: list[tuple[socket.socket, socket.socket]], kind: type[Socket] = Socket
) -> list[Socket]:
    made = []
    for ours, _ in pairs:
        sock = kind(cast(Any, FakeWebSocket()), cast(Any, FakeTransport()))
        sock._fd = ours.fileno()  # as for a plain TCP transport (_plain_fd)
        made.append(sock)
    return made


def test_write_each_counts_a_write_that_raised_as_nothing_taken_and_writes_on(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    _fill(pairs[1][0])  # EAGAIN
    pairs[3][1].close()  # EPIPE (the peer is gone)
    frame = frame_text(b"hello")
    sent = _write_each([ours.fileno() for ours, _ in pairs], frame)
    assert sent == [len(frame), 0, len(frame), 0, len(frame)]
    for i in (0, 2, 4):
        assert _drain(pairs[i][1]) == frame


def test_write_each_with_every_write_raising(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    for ours, _ in pairs:
        _fill(ours)
    assert _write_each([ours.fileno() for ours, _ in pairs], b"x") == [0] * 5


def test_what_the_kernel_does_not_take_goes_to_the_transport_after_it(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """A partial write: the rest of the frame is queued in that socket's transport, and the
    sockets after it in the list are still written directly."""
    sockets = _sockets(pairs)
    pairs[2][0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    frame = frame_text(b"y" * 60_000)
    delivered, over = Socket.broadcast(Recipients(sockets), frame, LIMIT)
    assert (delivered, over) == (5, [])
    direct = _drain(pairs[2][1])
    queued = b"".join(cast(FakeTransport, sockets[2]._transport).written)
    assert 0 < len(direct) < len(frame)
    assert direct + queued == frame
    for i in (0, 1, 3, 4):
        assert cast(FakeTransport, sockets[i]._transport).written == []
        assert _drain(pairs[i][1]) == frame


def test_a_socket_whose_write_raised_gets_the_whole_frame_through_its_transport(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sockets = _sockets(pairs)
    pairs[0][1].close()
    frame = frame_text(b"z")
    assert Socket.broadcast(Recipients(sockets), frame, LIMIT) == (5, [])
    assert cast(FakeTransport, sockets[0]._transport).written == [frame]
    assert [_drain(theirs) for _, theirs in pairs[1:]] == [frame] * 4


def test_a_transport_over_the_limit_after_a_short_write_is_reported(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sockets = _sockets(pairs)
    transport = cast(FakeTransport, sockets[1]._transport)
    transport.stuck = True
    _fill(pairs[1][0])
    frame = frame_text(b"w" * 100)
    assert Socket.broadcast(Recipients(sockets), frame, 50) == (5, [sockets[1]])
    assert transport.written == [frame]


def test_skip_leaves_out_one_socket_wherever_it_is(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sockets = _sockets(pairs)
    recipients = Recipients(sockets)
    frame = frame_text(b"s")
    for skip in (0, 2, 4):
        assert Socket.broadcast(recipients, frame, LIMIT, skip=sockets[skip]) == (4, [])
        got = [_drain(theirs) for _, theirs in pairs]
        assert got == [b"" if i == skip else frame for i in range(5)]
    stranger = _sockets(pairs[:1])[0]
    assert Socket.broadcast(recipients, frame, LIMIT, skip=stranger) == (5, [])


@pytest.mark.parametrize("kind", [Socket, _Lean])
def test_a_socket_that_began_its_closing_handshake_gets_nothing_more(
    pairs: list[tuple[socket.socket, socket.socket]], kind: type[Socket]
) -> None:
    """Its transport is still open and empty (it waits for the peer's close frame): only the
    socket's own state says no. With lean sockets the send after a send that found every socket
    open looks again only because the close was counted."""
    sockets = _sockets(pairs, kind)
    recipients = Recipients(sockets)
    assert recipients.lean is (kind is _Lean)
    frame = frame_text(b"c")
    assert Socket.broadcast(recipients, frame, LIMIT) == (5, [])
    cast(FakeWebSocket, sockets[3]._ws)._closed = True
    Socket.closes_begun += 1  # what LeanSocket does as it sets _closed
    assert Socket.broadcast(recipients, frame, LIMIT) == (4, [])
    assert [_drain(theirs) for _, theirs in pairs] == [frame * 2] * 3 + [frame] + [frame * 2]


def test_lean_sockets_found_open_are_not_looked_at_again_until_a_close_is_counted(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sockets = _sockets(pairs, _Lean)
    recipients = Recipients(sockets)
    frame = frame_text(b"o")
    Socket.broadcast(recipients, frame, LIMIT)
    assert recipients.open_since == Socket.closes_begun
    Socket.closes_begun += 1
    Socket.broadcast(recipients, frame, LIMIT)
    assert recipients.open_since == Socket.closes_begun


def test_mixed_sockets_are_looked_at_on_every_send(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """An aiohttp socket closes without counting: no send may rely on an earlier one."""
    sockets = _sockets(pairs[:2], _Lean) + _sockets(pairs[2:])
    recipients = Recipients(sockets)
    assert not recipients.lean
    frame = frame_text(b"m")
    assert Socket.broadcast(recipients, frame, LIMIT) == (5, [])
    assert recipients.open_since == -1
    cast(FakeWebSocket, sockets[4]._ws)._closed = True  # not counted
    assert Socket.broadcast(recipients, frame, LIMIT) == (4, [])


def test_a_lean_socket_sets_closed_only_where_it_counts_the_close() -> None:
    """Socket.broadcast trusts lean sockets to count every close they begin: a new
    ``self._closed = True`` elsewhere in LeanSocket would let a room send past it."""
    tree = ast.parse(inspect.getsource(inspect.getmodule(LeanSocket)))  # type: ignore[arg-type]
    setters = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Assign)
        and any(
            isinstance(target, ast.Attribute)
            and target.attr == "_closed"
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            for target in node.targets
        )
        and not (isinstance(node.value, ast.Constant) and node.value.value is False)
    ]
    assert setters == ["_mark_closed"]

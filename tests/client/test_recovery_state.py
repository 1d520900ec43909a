"""The client's half of the recovery protocol without sockets: classify frames, drop duplicates,
keep the token and positions a resume needs."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hubbub.client.recovery import Answer, Position, Received, RoomReport, SessionState


def frame(**fields: Any) -> str:
    # The gateway writes compact JSON with "hubbub" first (orjson); so do these tests.
    return json.dumps(fields, separators=(",", ":"))


def envelope(room: str, offset: int, data: str = "x", epoch: str = "e1") -> str:
    return frame(hubbub="room", room=room, epoch=epoch, offset=offset, data=data)


def session(token: str, cid: str = "c") -> str:
    return frame(hubbub="session", token=token, connectionId=cid)


def answer(recovered: bool = True, reason: str | None = None, **rooms: dict[str, Any]) -> str:
    return frame(hubbub="recovered", recovered=recovered, reason=reason, rooms=rooms)


def test_plain_text_and_non_control_json_pass_through() -> None:
    state = SessionState()
    for text in ("hello", '{"action": "x"}', '{"hubbubble": 1}', "[1, 2]"):
        assert state.receive(text) == Received(text)


def test_text_that_only_looks_like_control_passes_through() -> None:
    state = SessionState()
    assert state.receive('{"hubbub" is not json') == Received('{"hubbub" is not json')


def test_a_room_envelope_is_unwrapped_with_its_position() -> None:
    state = SessionState()
    item = state.receive(envelope("lobby", 7, '{"text": "hi"}'))
    assert item == Received('{"text": "hi"}', room="lobby", epoch="e1", offset=7)
    assert state.positions == {"lobby": Position("e1", 7)}


def test_offsets_already_delivered_are_dropped_per_room_and_epoch() -> None:
    state = SessionState()
    assert state.receive(envelope("a", 1)) is not None
    assert state.receive(envelope("a", 2)) is not None
    assert state.receive(envelope("a", 2)) is None
    assert state.receive(envelope("a", 1)) is None
    assert state.receive(envelope("b", 1)) is not None  # another room has its own offsets
    assert state.receive(envelope("a", 1, epoch="e2")) is not None  # a new epoch starts over
    assert state.duplicates == 2
    assert state.positions == {"a": Position("e2", 1), "b": Position("e1", 1)}


def test_control_frames_never_reach_the_application() -> None:
    state = SessionState()
    assert state.receive(session("t1", "c1")) is None
    assert (state.token, state.connection_id) == ("t1", "c1")
    assert state.receive(frame(hubbub="error", message="unknown control message")) is None
    assert state.receive(frame(hubbub="something-newer", x=1)) is None
    assert state.receive(answer()) is None  # not awaited: nothing to report


def test_malformed_envelopes_are_dropped() -> None:
    state = SessionState()
    assert state.receive(frame(hubbub="room", room="a", epoch="e", offset="1", data="x")) is None
    assert state.receive(frame(hubbub="room", room="a", epoch="e", offset=True, data="x")) is None
    assert state.receive(frame(hubbub="room", room="a", epoch="e", offset=1)) is None
    assert state.positions == {}


def test_resume_message_carries_the_token_and_every_position() -> None:
    state = SessionState()
    assert state.start_resume() is None  # no session yet
    state.receive(session("t1"))
    state.receive(envelope("a", 3))
    state.receive(envelope("b", 9, epoch="e7"))
    message = state.start_resume()
    assert message is not None
    assert json.loads(message) == {
        "hubbub": "resume",
        "token": "t1",
        "rooms": {"a": {"epoch": "e1", "offset": 3}, "b": {"epoch": "e7", "offset": 9}},
    }
    assert message.startswith('{"hubbub"')  # the gateway recognises control messages by this
    assert state.resuming


def test_envelopes_during_a_resume_are_marked_replayed() -> None:
    state = SessionState()
    state.receive(session("t1"))
    state.start_resume()
    replayed = state.receive(envelope("a", 1))
    assert isinstance(replayed, Received)
    assert replayed.replayed
    state.receive(answer(a={"recovered": True, "replayed": 1, "epoch": "e1", "offset": 1}))
    live = state.receive(envelope("a", 2))
    assert isinstance(live, Received)
    assert not live.replayed


def test_the_answer_is_parsed_and_advances_positions() -> None:
    state = SessionState()
    state.receive(session("t1"))
    state.receive(envelope("a", 3))
    state.start_resume()
    state.receive(envelope("a", 4))
    state.receive(envelope("a", 6))  # a live message held back, delivered before the answer
    item = state.receive(
        answer(
            False,
            None,
            a={"recovered": True, "replayed": 1, "reason": None, "epoch": "e1", "offset": 5},
            b={
                "recovered": False,
                "replayed": 0,
                "reason": "window passed",
                "epoch": "e1",
                "offset": 40,
            },
        )
    )
    assert item == Answer(
        recovered=False,
        resumed=True,
        reason=None,
        rooms={
            "a": RoomReport("a", True, 1, None, "e1", 5),
            "b": RoomReport("b", False, 0, "window passed", "e1", 40),
        },
    )
    # "a" stays at 6 (past the reported head); "b" jumps to the head: no gap-filling later.
    assert state.positions == {"a": Position("e1", 6), "b": Position("e1", 40)}
    assert not state.resuming


def test_session_expired_is_not_resumed() -> None:
    state = SessionState()
    state.receive(session("t1"))
    state.start_resume()
    item = state.receive(answer(False, "session expired"))
    assert isinstance(item, Answer)
    assert (item.recovered, item.resumed, item.reason, dict(item.rooms)) == (
        False,
        False,
        "session expired",
        {},
    )


def test_the_newest_token_is_kept_once_a_resume_is_answered() -> None:
    state = SessionState()
    state.receive(session("t1"))
    state.start_resume()
    state.receive(session("t2"))  # the new connection's token arrives before the answer
    assert state.token == "t1"
    state.receive(answer())
    assert state.token == "t2"


def test_a_socket_lost_during_a_resume_resumes_from_the_previous_token() -> None:
    state = SessionState()
    state.receive(session("t1"))
    state.start_resume()
    state.receive(session("t2"))  # this connection's session is only half restored
    state.socket_closed()
    assert state.token == "t1"
    assert not state.resuming


def test_a_timed_out_resume_adopts_the_new_token_and_ignores_the_late_answer() -> None:
    state = SessionState()
    state.receive(session("t1"))
    state.start_resume()
    state.receive(session("t2"))
    state.settle()
    assert state.token == "t2"
    late = answer(a={"recovered": True, "replayed": 0, "epoch": "e1", "offset": 9})
    assert state.receive(late) is None
    assert state.positions == {"a": Position("e1", 9)}  # still useful against duplicates


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["e1", "e2"]), st.integers(1, 12)),
        max_size=60,
    )
)
def test_each_offset_is_delivered_at_most_once_and_in_increasing_order(
    stream: list[tuple[str, str, int]],
) -> None:
    state = SessionState()
    delivered: list[tuple[str, str, int]] = []
    for room, epoch, offset in stream:
        item = state.receive(envelope(room, offset, epoch=epoch))
        if item is not None:
            assert isinstance(item, Received)
            assert (item.room, item.epoch, item.offset) == (room, epoch, offset)
            delivered.append((room, epoch, offset))
    for room in ("a", "b"):
        runs: list[tuple[str, int]] = [(e, o) for r, e, o in delivered if r == room]
        for (epoch, offset), (next_epoch, next_offset) in itertools.pairwise(runs):
            # Within one epoch offsets only go up; a change of epoch starts a new run.
            assert next_epoch != epoch or next_offset > offset
    assert len(delivered) + state.duplicates == len(stream)

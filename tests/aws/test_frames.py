from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.frames import error_frame, forbidden_frame, internal_error_frame

# Copied verbatim from what AWS sends (docs/compatibility.md, "Route selection").
AWS_FORBIDDEN = (
    b'{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", "requestId":"XDmGEE2RoE0FRdQ="}'
)


def test_forbidden_frame_matches_aws_byte_for_byte() -> None:
    assert forbidden_frame("XDmENcnwIE0CFEQ=", "XDmGEE2RoE0FRdQ=") == AWS_FORBIDDEN


def test_internal_error_frame_matches_aws_byte_for_byte() -> None:
    assert internal_error_frame("Qyi07eCbtjMCJKw=", "Qyi3UG41tjMFlUg=") == (
        b'{"message": "Internal server error", "connectionId":"Qyi07eCbtjMCJKw=",'
        b' "requestId":"Qyi3UG41tjMFlUg="}'
    )


def test_error_frame_has_the_same_shape() -> None:
    assert error_frame("Too Many Requests", "c=", "r=") == (
        b'{"message": "Too Many Requests", "connectionId":"c=", "requestId":"r="}'
    )


def test_error_frame_escapes_the_message() -> None:
    frame = error_frame('say "hi"\n', "c=", "r=")
    assert orjson.loads(frame)["message"] == 'say "hi"\n'


@given(st.text(), st.text(), st.text())
def test_error_frames_are_always_valid_json(
    message: str, connection_id: str, request_id: str
) -> None:
    assert orjson.loads(error_frame(message, connection_id, request_id)) == {
        "message": message,
        "connectionId": connection_id,
        "requestId": request_id,
    }

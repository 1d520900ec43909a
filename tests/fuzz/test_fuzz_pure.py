"""Property tests for the pure parsers that sit on the attack surface (no loop, no sockets).

- ``parse_management_path``: never raises; whatever it returns decodes exactly;
- ``_FrameGuard`` (the transport's frame-size guard, a small state machine over bytes): however the
  stream is cut into TCP reads, it passes legal frames through untouched and stops at the first
  oversized or unmasked frame, after passing on every frame before it and nothing after it;
- route selection on arbitrary JSON and text, SigV4 verification on arbitrary requests, identity
  sources, and the structured config mutator of bench/fuzz: only their documented errors.
"""

from __future__ import annotations

import json
import random
import string
import struct
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.fuzz.config import gen_config
from bench.fuzz.wire import frame
from hubbub.aws.authorizer import parse_identity_source
from hubbub.aws.management import RESOURCES, parse_management_path
from hubbub.aws.selection import compile_route_selection, select_route
from hubbub.aws.sigv4 import Credential, SigV4Verifier
from hubbub.config import load_config
from hubbub.errors import ConfigError, SignatureError
from hubbub.gateway.frames_aiohttp import _FrameGuard

# -- management paths --------------------------------------------------------------------------
segments = st.text(min_size=1, max_size=30)
PCT = st.sampled_from(["%00", "%2F", "%2f", "%C0%AF", "%E0%80%AF", "%FF", "%ED%A0%80", "%", "%G1"])
raw_paths = st.lists(
    st.one_of(st.text(alphabet=string.printable, max_size=12), PCT), max_size=8
).map(lambda parts: "/" + "".join(parts))


@given(raw_paths)
def test_management_path_parser_never_raises_on_percent_soup(path: str) -> None:
    parse_management_path(path)


@given(st.text())
def test_a_parsed_path_has_a_known_resource_and_no_empty_or_undecodable_part(path: str) -> None:
    parsed = parse_management_path(path)
    if parsed is None:
        return
    assert parsed.resource in RESOURCES
    assert parsed.stage
    assert parsed.ident is None or parsed.ident
    for part in (parsed.stage, parsed.ident or "", parsed.sub or ""):
        # strict decoding: invalid UTF-8 makes the path unparseable, never U+FFFD or surrogates
        assert "\ufffd" not in part or "\ufffd" in path
        assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in part)


def _encode(segment: str) -> str:
    return quote(segment, safe="")  # "/" included, as boto3 encodes a label


@given(
    stage=segments,
    resource=st.sampled_from(sorted(RESOURCES)),
    ident=segments,
    sub=st.lists(segments, max_size=3),
    at=st.sampled_from(["@", "%40"]),
)
def test_every_encoded_segment_decodes_back_exactly(
    stage: str, resource: str, ident: str, sub: list[str], at: str
) -> None:
    path = "/".join(["", _encode(stage), at + resource, _encode(ident), *map(_encode, sub)])
    parsed = parse_management_path(path)
    assert parsed is not None
    assert (parsed.stage, parsed.resource, parsed.ident) == (stage, resource, ident)
    assert parsed.sub == ("/".join(sub) if sub else None)


@given(st.binary(max_size=60))
def test_invalid_utf8_in_an_id_is_not_a_path(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        assume(False)
    encoded = "".join(f"%{b:02X}" for b in data)
    assert parse_management_path(f"/dev/@connections/{encoded}") is None


# -- the frame guard ---------------------------------------------------------------------------
MAX_FRAME = 1000


class _Inner:
    """Records what the guard passes on; ``failed`` plays a parser that has found an error."""

    def __init__(self, failed: bool = False) -> None:
        self.data = b""
        self.failed = failed

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return self.failed, b""

    def feed_eof(self) -> None:
        pass


class _Queue:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def set_exception(self, exc: BaseException) -> None:
        self.errors.append(exc)


legal_frames = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([0x0, 0x1, 0x2]), st.integers(0, MAX_FRAME)),
        st.tuples(st.sampled_from([0x8, 0x9, 0xA]), st.integers(0, 125)),
    ),
    max_size=8,
)


def _stream(specs: list[tuple[int, int]], masked: list[bool]) -> bytes:
    return b"".join(
        frame(op, b"x" * n, mask=masked[i % len(masked)] if masked else True)
        for i, (op, n) in enumerate(specs)
    )


def _feed(
    data: bytes, cuts: list[int], *, to_the_end: bool = False, inner: _Inner | None = None
) -> tuple[_Inner, _Queue, int]:
    """Feed ``data`` cut at ``cuts``; stop at the first flag unless ``to_the_end``. Returns how
    many bytes were fed."""
    inner, queue = inner or _Inner(), _Queue()
    guard = _FrameGuard(inner, queue, MAX_FRAME)
    fed = 0
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        guard.feed_data(data[start:end])
        fed = end
        if queue.errors and not to_the_end:
            break
    return inner, queue, fed


def _cuts(data: bytes, points: list[int]) -> list[int]:
    return sorted({p % (len(data) + 1) for p in points} - {0, len(data)}) if data else []


@given(legal_frames, st.lists(st.integers(0, 10**6)))
def test_frame_guard_passes_legal_frames_untouched_however_they_are_cut(
    specs: list[tuple[int, int]], points: list[int]
) -> None:
    data = _stream(specs, [True])  # client frames are masked (RFC 6455 §5.1)
    inner, queue, _ = _feed(data, _cuts(data, points))
    assert queue.errors == []
    assert inner.data == data


@given(
    legal_frames,
    st.sampled_from([0x0, 0x1, 0x2]),
    st.sampled_from([MAX_FRAME + 1, 65535, 65536, 2**32, 2**63 - 1, 2**64 - 1]),
    st.lists(st.integers(0, 10**6)),
)
def test_frame_guard_stops_at_the_first_oversized_data_frame(
    before: list[tuple[int, int]], opcode: int, length: int, points: list[int]
) -> None:
    prefix = _stream(before, [True])
    data = prefix + frame(opcode, b"abc", length=length, form="64")
    inner, queue, fed = _feed(data, _cuts(data, points))
    assert len(queue.errors) == 1
    assert getattr(queue.errors[0], "code", None) == 1009
    # The parser sees every frame before it, and may see the start of the oversized frame's header
    # (a read can end inside it), never a byte of its payload.
    header = 2 + 8 + 4
    assert data.startswith(inner.data)
    assert inner.data.startswith(prefix)
    assert len(inner.data) < len(prefix) + header
    assert fed > len(prefix)


@given(legal_frames, legal_frames, st.sampled_from([0x1, 0x2, 0x8, 0x9]), st.lists(st.integers()))
def test_frame_guard_refuses_an_unmasked_frame_after_passing_on_the_frames_before_it(
    before: list[tuple[int, int]], after: list[tuple[int, int]], opcode: int, points: list[int]
) -> None:
    prefix = _stream(before, [True])
    refused = frame(opcode, b"abc", mask=False)
    data = prefix + refused + _stream(after, [True])
    # Fed to the end: the frames after the refused one (in its read or later ones) are dropped.
    inner, queue, _ = _feed(data, _cuts(data, points), to_the_end=True)
    assert [getattr(e, "code", None) for e in queue.errors] == [1002]
    assert inner.data.startswith(prefix)
    assert len(inner.data) < len(prefix) + 2  # at most the first header byte of the refused one


@given(legal_frames, st.lists(st.integers()))
def test_frame_guard_leaves_the_error_to_a_parser_that_already_failed(
    before: list[tuple[int, int]], points: list[int]
) -> None:
    data = _stream(before, [True]) + frame(0x1, b"abc", mask=False)
    _, queue, _ = _feed(data, _cuts(data, points), inner=_Inner(failed=True))
    assert queue.errors == []


# -- route selection ---------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
EXPRESSIONS = [
    "$request.body.action",
    "${request.body.service}/${request.body.action}",
    "$request.body",
    "$request.body.a[0].b",
    "${request.body['odd key']}-x",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
@given(body=st.one_of(json_values.map(json.dumps), st.text()))
def test_route_selection_never_raises_on_any_body(expression: str, body: str) -> None:
    routes = {"$default", "echo", "chat/join"}
    key = select_route(compile_route_selection(expression), body, routes)
    assert key in routes


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.text(max_size=20))
def test_the_action_key_is_matched_exactly(document: dict[str, Any], action: str) -> None:
    document["action"] = action
    routes = {"$default", action}
    assert select_route(
        compile_route_selection("$request.body.action"), json.dumps(document), routes
    ) == (action)


# -- SigV4 -------------------------------------------------------------------------------------
AUTH_PARTS = st.sampled_from(
    [
        "AWS4-HMAC-SHA256 ",
        "Credential=AKID/20240101/us-east-1/execute-api/aws4_request",
        "Credential=",
        "/",
        ", ",
        ",",
        "SignedHeaders=host;x-amz-date",
        "SignedHeaders=",
        ";",
        "Signature=" + "0" * 64,
        "Signature=",
        "=",
        " ",
    ]
)
headers = st.dictionaries(
    st.sampled_from(["Authorization", "X-Amz-Date", "Host", "x-amz-content-sha256", "X-Other"]),
    st.one_of(st.lists(AUTH_PARTS, max_size=8).map("".join), st.text(max_size=40)),
    max_size=5,
)
queries = st.lists(
    st.tuples(
        st.sampled_from(["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                         "X-Amz-SignedHeaders", "X-Amz-Signature", "a", "%", ""]),
        st.text(max_size=20),
    ),
    max_size=6,
).map(lambda pairs: "&".join(f"{k}={quote(v)}" for k, v in pairs))  # fmt: skip


@given(headers, queries, st.text(max_size=40), st.binary(max_size=40))
def test_sigv4_refuses_garbage_with_a_signature_error_only(
    hdrs: dict[str, str], query: str, path: str, body: bytes
) -> None:
    verifier = SigV4Verifier([Credential("AKID", "secret")])
    with pytest.raises(SignatureError):
        verifier.verify(
            method="POST",
            raw_path="/dev/@connections/" + path,
            raw_query=query,
            headers=hdrs,
            body=body,
            now=datetime(2024, 1, 1, tzinfo=UTC),
        )


# -- identity sources and config -----------------------------------------------------------------
@given(st.one_of(st.text(), st.text().map(lambda t: "route.request.header." + t)))
def test_identity_sources_raise_value_error_only(source: str) -> None:
    try:
        parse_identity_source(source)
    except ValueError:
        pass


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_mutated_configs_load_or_raise_config_error(seed: int) -> None:
    text, _ = gen_config(random.Random(seed))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hubbub.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(path, env={})
        except ConfigError:
            pass


def test_oversized_length_fields_use_the_64_bit_form() -> None:
    # The generator the guard tests rely on: a lying 64-bit length round-trips.
    head = frame(0x1, b"abc", length=2**63, form="64")
    assert head[1] & 0x7F == 127
    assert struct.unpack("!Q", head[2:10])[0] == 2**63


@given(legal_frames, st.sampled_from([0x1, 0x9]), st.lists(st.integers(0, 10**6)))
def test_frame_guard_refuses_an_unmasked_client_frame_with_1002(
    before: list[tuple[int, int]], opcode: int, points: list[int]
) -> None:
    data = _stream(before, [True]) + frame(opcode, b"x", mask=False)
    _, queue, _ = _feed(data, _cuts(data, points))
    assert [getattr(e, "code", None) for e in queue.errors] == [1002]

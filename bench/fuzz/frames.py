"""The ``frames`` target: frame sequences after a good handshake, cut at random TCP boundaries.

Oracle: the first rule-breaking frame decides the close code RFC 6455 (or the AWS limits) call
for; valid frames followed by a close(1000) get a clean close.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.fuzz.env import MAX_FRAME, MAX_MESSAGE, Env
from bench.fuzz.values import rand_bytes, rand_text
from bench.fuzz.wire import close_payload, frame, open_websocket

OK = "ok"  # a frame that breaks no rule
ANY = "any"  # no oracle (the server may do several right things)

FrameSpec = tuple[bytes, Any]  # (bytes, OK | ANY | frozenset of close codes)


def _text_payload(rng: random.Random) -> bytes:
    return json.dumps(
        {"action": rng.choice(["echo", "nope", "whoami"]), "v": rand_text(rng)}
    ).encode()


def _f_valid_text(rng: random.Random) -> list[FrameSpec]:
    return [(frame(0x1, _text_payload(rng)), OK)]


def _f_fragmented(rng: random.Random) -> list[FrameSpec]:
    data = ("é" * rng.randrange(1, 40) + "😀").encode()  # cuts fall inside characters
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randrange(1, 4))))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out: list[FrameSpec] = []
    for i, part in enumerate(parts):
        out.append((frame(0x1 if i == 0 else 0x0, part, fin=i == len(parts) - 1), OK))
        if rng.random() < 0.3:
            out.append((frame(0x9, b"interleaved"), OK))
    return out


def _f_ping(rng: random.Random) -> list[FrameSpec]:
    return [(frame(rng.choice([0x9, 0xA]), rand_bytes(rng, 125)), OK)]


def _f_bad_opcode(rng: random.Random) -> list[FrameSpec]:
    return [
        (
            frame(rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]), rand_bytes(rng, 20)),
            frozenset({1002}),
        )
    ]


def _f_reserved(rng: random.Random) -> list[FrameSpec]:
    rsv = rng.choice([1, 2, 3, 4, 5, 6, 7])
    if rng.random() < 0.3:  # on a control frame RSV1 alone is tolerated by aiohttp for interop
        return [(frame(0x9, b"p", rsv=rsv), ANY if rsv == 4 else frozenset({1002}))]
    return [(frame(0x1, b"{}", rsv=rsv), frozenset({1002}))]


def _f_unmasked(rng: random.Random) -> list[FrameSpec]:
    opcode = rng.choice([0x1, 0x1, 0x9])
    # RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is not
    # masked" (status 1002, §7.4.1).
    return [
        (frame(opcode, _text_payload(rng) if opcode == 1 else b"p", mask=False), frozenset({1002}))
    ]


def _f_bad_utf8(rng: random.Random) -> list[FrameSpec]:
    bad = rng.choice(
        [
            b"\xff",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"\x80",
            b"\xf8\x88\x80\x80\x80",
        ]
    )
    payload = b'{"action":"echo","v":"' + bad + b'"}'
    if rng.random() < 0.3:  # the bad byte in the last fragment
        return [
            (frame(0x1, payload[:5], fin=False), OK),
            (frame(0x0, payload[5:]), frozenset({1007})),
        ]
    return [(frame(0x1, payload), frozenset({1007}))]


def _f_truncated(rng: random.Random) -> list[FrameSpec]:
    full = frame(0x1, _text_payload(rng) * rng.randrange(1, 5))
    return [(full[: rng.randrange(1, len(full))], ANY)]


def _f_lying_length(rng: random.Random) -> list[FrameSpec]:
    n = rng.choice([2**63 - 1, 2**63, 2**64 - 1, 2**32, 2**31, MAX_FRAME + 1, MAX_MESSAGE + 1])
    return [(frame(0x1, b"abc", length=n, form="64"), frozenset({1009}))]


def _f_non_minimal_length(rng: random.Random) -> list[FrameSpec]:
    # RFC 6455 requires the minimal length encoding; servers differ on enforcing it.
    return [(frame(0x1, b'{"action":"echo"}', form=rng.choice(["16", "64"])), ANY)]


def _f_limits(rng: random.Random) -> list[FrameSpec]:
    which = rng.choice(["frame", "frame+1", "message", "message+1"])
    if which.startswith("frame"):
        size = MAX_FRAME + (1 if which.endswith("+1") else 0)
        return [(frame(0x1, b"f" * size), frozenset({1009}) if size > MAX_FRAME else OK)]
    size = MAX_MESSAGE + (1 if which.endswith("+1") else 0)
    parts = [b"m" * MAX_FRAME] * (size // MAX_FRAME) + (
        [b"m" * (size % MAX_FRAME)] if size % MAX_FRAME else []
    )
    out: list[FrameSpec] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        expect: Any = OK
        if last and size > MAX_MESSAGE:
            expect = frozenset({1009})
        out.append((frame(0x1 if i == 0 else 0x0, part, fin=last), expect))
    return out


def _f_fragmented_control(rng: random.Random) -> list[FrameSpec]:
    opcode = rng.choice([0x8, 0x9, 0xA])
    payload = close_payload(1000) if opcode == 0x8 else b"x"
    return [(frame(opcode, payload, fin=False), frozenset({1002}))]


def _f_big_control(rng: random.Random) -> list[FrameSpec]:
    opcode = rng.choice([0x8, 0x9, 0xA])
    payload = close_payload(1000, b"r" * 200) if opcode == 0x8 else b"x" * rng.randrange(126, 300)
    return [(frame(opcode, payload), frozenset({1002}))]


def _f_continuation_without_start(rng: random.Random) -> list[FrameSpec]:
    return [(frame(0x0, b"orphan", fin=rng.random() < 0.5), frozenset({1002}))]


def _f_interrupted_fragments(rng: random.Random) -> list[FrameSpec]:
    return [
        (frame(0x1, b'{"a":', fin=False), OK),
        (frame(rng.choice([0x1, 0x2]), b"new"), frozenset({1002})),
    ]


def _f_binary(rng: random.Random) -> list[FrameSpec]:
    return [(frame(0x2, rand_bytes(rng, 100)), frozenset({1003}))]


def _f_close(rng: random.Random) -> list[FrameSpec]:
    code = rng.choice([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999])
    kind = rng.random()
    if code == 1006:  # "MUST NOT be sent" (RFC 6455 §7.4.1), yet aiohttp accepts it: no oracle
        return [(frame(0x8, close_payload(code)), ANY)]
    if kind < 0.5:
        return [(frame(0x8, close_payload(code)), frozenset({1002}))]
    if kind < 0.7:
        return [(frame(0x8, b"\x03"), frozenset({1002}))]  # one byte: no room for a code
    if kind < 0.85:
        return [(frame(0x8, close_payload(1000, b"\xff\xfe")), frozenset({1007}))]
    code = rng.choice([1000, 1001, 1003, 1008, 1011, 3000, 4000, 4999])
    return [(frame(0x8, close_payload(code, rand_text(rng, 60).encode()[:120])), ANY)]


def _f_random(rng: random.Random) -> list[FrameSpec]:
    return [(rand_bytes(rng, 200), ANY)]


def _f_many_small(rng: random.Random) -> list[FrameSpec]:
    return [(frame(rng.choice([0x9, 0xA]), b""), OK) for _ in range(rng.randrange(10, 60))]


_FRAME_GENERATORS: list[tuple[str, Callable[[random.Random], list[FrameSpec]], int]] = [
    ("text", _f_valid_text, 6),
    ("fragmented", _f_fragmented, 3),
    ("ping", _f_ping, 2),
    ("bad-opcode", _f_bad_opcode, 2),
    ("reserved", _f_reserved, 2),
    ("unmasked", _f_unmasked, 2),
    ("bad-utf8", _f_bad_utf8, 2),
    ("truncated", _f_truncated, 2),
    ("lying-length", _f_lying_length, 2),
    ("non-minimal", _f_non_minimal_length, 1),
    ("limits", _f_limits, 2),
    ("fragmented-control", _f_fragmented_control, 1),
    ("big-control", _f_big_control, 1),
    ("orphan-continuation", _f_continuation_without_start, 1),
    ("interrupted", _f_interrupted_fragments, 1),
    ("binary", _f_binary, 1),
    ("close", _f_close, 2),
    ("random", _f_random, 2),
    ("many-small", _f_many_small, 1),
]


@dataclass
class FramesCase:
    data: bytes
    cuts: list[int]
    expect: Any  # OK, ANY or a frozenset of close codes
    end: str  # "close" | "eof" | "abort" | "wait"
    label: str
    culprit: str = ""  # the generator of the first rule-breaking frame


def gen_frames(rng: random.Random) -> FramesCase:
    """1-4 frame groups; the first rule-breaking frame decides the expected close code, however
    the bytes are cut into TCP reads (the frame guard passes on the frames before the one it
    refuses, and nothing after it)."""
    names: list[str] = []
    data = b""
    expect: Any = OK
    culprit = ""
    terminal = False
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        name, generate, _w = rng.choices(
            _FRAME_GENERATORS, weights=[g[2] for g in _FRAME_GENERATORS]
        )[0]
        names.append(name)
        for chunk, chunk_expect in generate(rng):
            if expect == OK and chunk_expect != OK:
                expect, culprit = chunk_expect, name
            data += chunk
        if name in ("truncated", "random"):
            terminal = True  # nothing after it means what it says
            break
    cuts = (
        sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randrange(0, 4))))
        if len(data) > 1
        else []
    )
    if terminal:
        end = rng.choice(["eof", "abort", "wait"])
    elif expect == OK:
        end = rng.choices(["close", "eof", "abort", "wait"], weights=[5, 2, 2, 1])[0]
    else:
        end = "wait"
    return FramesCase(data, cuts, expect, end, "+".join(names), culprit)


async def run_frames(env: Env, rng: random.Random) -> tuple[str, str | None]:
    case = gen_frames(rng)
    try:
        async with asyncio.timeout(env.timeout):
            peer = await open_websocket(env, rng)
    except (TimeoutError, ConnectionError, OSError) as exc:
        return "handshake-failed", f"handshake-failed: {exc!r}"
    try:
        try:
            await peer.send_chunks(case.data, case.cuts)
            if case.end == "close":
                await peer.send(frame(0x8, close_payload(1000)))
        except (ConnectionError, OSError):
            return "reset-while-sending", None
        if case.end == "abort":
            return "aborted", None
        if case.end == "eof":
            peer.write_eof()
        # Nothing to wait for when every frame was fine (or had no oracle) and we said nothing.
        quiet = case.end == "wait" and not isinstance(case.expect, frozenset)
        wait = 0.3 if quiet else env.timeout
        try:
            async with asyncio.timeout(wait):
                code, _ = await peer.read_until_close()
        except TimeoutError:
            if quiet:
                return "open", None  # nothing wrong was sent and we never said goodbye
            kind = _CULPRIT_KINDS.get(case.culprit, "no-close")
            return "timeout", f"{kind}: {case.label} expected {_codes(case.expect)}, no close"
        except (ConnectionError, OSError):
            return "reset", None
        outcome = "eof" if code is None else f"close-{code}"
        return outcome, _check_close(case, code)
    finally:
        peer.abort()


def _codes(expect: Any) -> str:
    return "/".join(str(c) for c in sorted(expect)) if isinstance(expect, frozenset) else expect


_CULPRIT_KINDS = {"unmasked": "unmasked-accepted", "limits": "limit-not-enforced"}


def _check_close(case: FramesCase, code: int | None) -> str | None:
    """Compare the server's close code with what the first rule-breaking frame calls for."""
    if isinstance(case.expect, frozenset):
        if code in case.expect:
            return None
        kind = _CULPRIT_KINDS.get(case.culprit, "close-code")
        if code == 1009 and "limits" in case.label.split(case.culprit)[0]:
            kind = "limit-too-strict"  # an exact-limit message before the culprit was refused
        return f"{kind}: {case.label} expected {_codes(case.expect)}, got {code}"
    if case.expect == OK and case.end == "close" and code not in (1000, None):
        kind = "limit-too-strict" if "limits" in case.label else "close-code"
        return f"{kind}: {case.label} valid frames then close(1000), got {code}"
    return None

"""Bounded, seeded fuzzing of a gateway through real sockets.

    python -m bench.fuzz --cases 2000 --seed 1                       # in-process gateway
    python -m bench.fuzz --cases 100000 --seed 7 --json out.json     # the long mode
    python -m bench.fuzz --target frames --seed 1 --replay 1234      # one case, verbose
    python -m bench.fuzz --write-app /tmp/fz && hubbub serve --config /tmp/fz/hubbub.toml &
    python -m bench.fuzz --url ws://127.0.0.1:8080/dev --management-url http://127.0.0.1:8081/dev

Targets (``--target``, comma separated; ``--cases`` is the total, dealt round-robin):

- ``handshake``: malformed upgrade requests on the public listener: mutated methods, targets,
  versions, ``Sec-WebSocket-Key``/``Version``/``Extensions``, huge and numerous headers, bare LF,
  obs-fold, bodies, non-HTTP garbage (TLS, HTTP/2 preface, random bytes), pipelining and bounded
  slowloris (chunks with small delays, or a prefix and then silence until the server gives up).
- ``frames``: a good handshake, then frame sequences: bad opcodes, reserved bits, unmasked frames,
  invalid UTF-8, truncated frames, lying 64-bit lengths, fragmented and oversized control frames,
  continuation without start, limits ±1 byte, close frames with bad codes, random bytes; the byte
  stream is cut at random points so frame headers straddle TCP reads.
- ``management``: random methods, paths (``%00``, ``%2F``, overlong and invalid UTF-8, dot
  segments), query strings, headers (duplicate ``Content-Length``, chunked, ``Expect``) and bodies
  on the management listener, some aimed at live "victim" connections (post, delete, join, bind).
- ``bodies``: random text messages through a real socket; the reply must be the one the pure
  route selector predicts (echo route, or ``$default``).
- ``config``: structured mutations of a valid config rendered to TOML and loaded with
  ``load_config``: it must return a Config or raise ConfigError, and a Config must hold no NaN.

Every case is generated from ``random.Random(f"{seed}:{target}:{index}")`` alone, so a failing case
replays with ``--replay INDEX``. Oracles that flag a *finding*: an HTTP 5xx, a timeout where the
server had everything it needed to answer, a close code outside the set RFC 6455 / the AWS limits
prescribe, a wrong or missing reply, an exception from ``load_config`` other than ConfigError.

Invariants (checked every ``--check-every`` cases and at the end, in-process mode): the gateway
still serves a normal client (connect, echo round trip); once all fuzz sockets are closed, the hub,
the registry (and the memory store's room and user indexes), ``_background``, the invoker's
``in_flight`` and ``asyncio.all_tasks()`` come back to their baseline within a settle deadline; and
no ERROR record was logged by ``hubbub.*``, ``aiohttp.*`` or ``asyncio``, nor any traceback on
``hubbub.transport.peer`` other than an HTTP parse error or a vanished peer (every input here is a
client fault, so none may produce a crash; see :class:`ErrorRecorder`). With ``--url`` only the
serve check (and ``/health`` returning to its starting connection count, with
``--management-url``) can be verified.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import random
import re
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

TARGETS = ("handshake", "frames", "management", "bodies", "config")
NETWORK_TARGETS = ("handshake", "frames", "management", "bodies")

# Known gateway bugs: a substring of the finding or invariant-failure text -> the strict xfail
# test in tests/fuzz/test_fuzz_bugs.py that pins it. The CI sample tolerates these (and only
# these); when a bug is fixed, its xfail test starts passing (strict: the suite fails) and both
# the marker and the entry here go.
KNOWN: dict[str, str] = {
    # All bugs found so far are fixed; tests/fuzz/test_fuzz_bugs.py keeps one regression test
    # each. A new finding goes here with its pinning xfail test until it is fixed.
}
# Found by review while fuzzing, pinned in the same file but not reachable by an oracle here:
# test_invalid_upgrade_never_reaches_connect, test_client_text_in_a_field_stays_on_one_log_line.


def known_bug(text: str) -> str | None:
    """The xfail test that pins the bug behind a finding or failure, if it is a known one."""
    return next((test for pattern, test in KNOWN.items() if re.search(pattern, text)), None)


APP = '''\
"""Handlers for bench/fuzz.py: an echo route, $default, whoami; nothing raises."""


async def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}


async def default(event, context):
    return {"statusCode": 200, "body": "D" + event["body"]}


async def whoami(event, context):
    return {"statusCode": 200, "body": "I" + event["requestContext"]["connectionId"]}


async def connect(event, context):
    return {"statusCode": 200}


async def disconnect(event, context):
    return {"statusCode": 200}
'''

MAX_FRAME = 32 * 1024
MAX_MESSAGE = 128 * 1024


def fuzz_config(handshake_timeout: float = 1.0) -> dict[str, Any]:
    """The gateway config the fuzzer runs against (AWS default limits, short handshake timeout)."""
    return {
        "routes": {
            "$connect": {"handler": "app.connect"},
            "$disconnect": {"handler": "app.disconnect"},
            "$default": {"handler": "app.default", "route_response": True},
            "echo": {"handler": "app.echo", "route_response": True},
            "whoami": {"handler": "app.whoami", "route_response": True},
        },
        "limits": {"handshake_timeout": handshake_timeout},
    }


def write_app(directory: Path, *, toml: bool = False) -> Path:
    """The fuzz app's handlers (and, with ``toml``, a hubbub.toml for ``hubbub serve``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(APP)
    if toml:
        lines = ["[limits]", "handshake_timeout = 1.0", "", "[routes]"]
        for key, spec in fuzz_config()["routes"].items():
            two_way = ", route_response = true" if spec.get("route_response") else ""
            lines.append(f'"{key}" = {{ handler = "{spec["handler"]}"{two_way} }}')
        (directory / "hubbub.toml").write_text("\n".join(lines) + "\n")
    return directory


# == results ===================================================================================
@dataclass
class CaseResult:
    target: str
    index: int
    outcome: str
    finding: str | None = None  # "kind: detail" when an oracle disagrees
    seconds: float = 0.0


@dataclass
class Report:
    seed: int
    cases: int
    seconds: float = 0.0
    per_target: dict[str, Counter[str]] = field(default_factory=dict)
    findings: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # invariant violations
    checks: int = 0

    def add(self, result: CaseResult) -> None:
        self.per_target.setdefault(result.target, Counter())[result.outcome] += 1
        if result.finding is not None:
            self.findings.append(result)

    def finding_kinds(self) -> Counter[str]:
        return Counter((f.finding or "").split(":", 1)[0] for f in self.findings)

    def unknown_findings(self) -> list[CaseResult]:
        """Findings not explained by a known bug (see ``KNOWN``)."""
        return [f for f in self.findings if known_bug(f.finding or "") is None]

    def unknown_failures(self) -> list[str]:
        return [f for f in self.failures if known_bug(f) is None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "checks": self.checks,
            "per_target": {
                t: {"cases": sum(c.values()), "outcomes": dict(c.most_common())}
                for t, c in self.per_target.items()
            },
            "finding_kinds": dict(self.finding_kinds()),
            "findings": self._examples(),
            "failures": dict(Counter(self.failures).most_common()),
            "unknown_findings": len(self.unknown_findings()),
            "unknown_failures": len(self.unknown_failures()),
        }

    def _examples(self, per_kind: int = 40) -> list[dict[str, Any]]:
        """Up to ``per_kind`` findings of each kind, for the JSON report."""
        seen: Counter[str] = Counter()
        out = []
        for f in self.findings:
            kind = (f.finding or "").split(":", 1)[0]
            seen[kind] += 1
            if seen[kind] <= per_kind:
                out.append(
                    {
                        "target": f.target,
                        "index": f.index,
                        "outcome": f.outcome,
                        "finding": f.finding,
                    }
                )
        return out

    def summary(self) -> str:
        lines = [f"fuzz: {self.cases} cases, seed {self.seed}, {self.seconds:.1f}s, "]
        lines[0] += f"{self.checks} invariant checks"
        for target, counter in self.per_target.items():
            top = ", ".join(f"{k} {v}" for k, v in counter.most_common(12))
            more = len(counter) - 12
            lines.append(
                f"  {target:<10} {sum(counter.values()):>7} cases: {top}"
                + (f", ... ({more} more)" if more > 0 else "")
            )
        kinds = self.finding_kinds()
        lines.append(f"  findings: {sum(kinds.values())} {dict(kinds)}")
        unknown = self.unknown_findings()
        shown = unknown[:15] or self.findings[:5]
        for f in shown:
            known = known_bug(f.finding or "")
            tag = f" [known: {known}]" if known else ""
            lines.append(f"    {f.target}#{f.index}: {f.finding} (outcome {f.outcome}){tag}")
        failures = Counter(self.failures)
        lines.append(
            f"  invariant failures: {len(self.failures)} ({len(self.unknown_failures())} "
            "not explained by a known bug)"
        )
        for msg, n in failures.most_common(15):
            known = known_bug(msg)
            lines.append(f"    {n} x {msg}" + (f" [known: {known}]" if known else ""))
        return "\n".join(lines)


# == raw sockets ===============================================================================
class Peer:
    """One raw TCP connection with small helpers to read an HTTP head and WebSocket frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, host: str, port: int) -> Peer:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_chunks(self, data: bytes, cuts: Sequence[int], delay: float = 0.0) -> None:
        """Write ``data`` in pieces cut at ``cuts`` (so headers straddle reads)."""
        start = 0
        for cut in [*sorted(c for c in cuts if 0 < c < len(data)), len(data)]:
            self.writer.write(data[start:cut])
            await self.writer.drain()
            start = cut
            await asyncio.sleep(delay)

    def write_eof(self) -> None:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            with contextlib.suppress(OSError):  # the server may have closed already
                self.writer.write_eof()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def _more(self) -> bool:
        chunk = await self.reader.read(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    async def read_head(self, limit: int = 65536) -> tuple[int | None, dict[str, str]]:
        """Status and headers of one HTTP response; (None, {}) on EOF before a full head."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > limit or not await self._more():
                return None, {}
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return None, {}
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        return status, headers

    async def read_body(self, headers: dict[str, str]) -> bytes:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = 0
        while len(self.buffer) < length:
            if not await self._more():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    async def read_frame(self) -> tuple[int, bytes] | None:
        """One server frame (opcode, payload); None on EOF. Server frames are never masked."""
        while True:
            parsed = parse_frame(self.buffer)
            if parsed is not None:
                opcode, payload, used = parsed
                self.buffer = self.buffer[used:]
                return opcode, payload
            if not await self._more():
                return None

    async def read_until_close(self) -> tuple[int | None, list[bytes]]:
        """Read frames until a close frame (its code, 1005 if none) or EOF (None)."""
        texts: list[bytes] = []
        while True:
            frame = await self.read_frame()
            if frame is None:
                return None, texts
            opcode, payload = frame
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, texts
            if opcode == 0x1:
                texts.append(payload)


def parse_frame(data: bytes) -> tuple[int, bytes, int] | None:
    if len(data) < 2:
        return None
    opcode = data[0] & 0x0F
    length = data[1] & 0x7F
    pos = 2
    if length == 126:
        if len(data) < 4:
            return None
        length = struct.unpack("!H", data[2:4])[0]
        pos = 4
    elif length == 127:
        if len(data) < 10:
            return None
        length = struct.unpack("!Q", data[2:10])[0]
        pos = 10
    if data[1] & 0x80:
        pos += 4  # a masked server frame is a protocol error, but parse it anyway
    if len(data) < pos + length:
        return None
    return opcode, data[pos : pos + length], pos + length


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
    form: str = "auto",
    key: bytes = b"\x12\x34\x56\x78",
) -> bytes:
    """A client frame; ``length``/``form`` may lie about or over-encode the payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask else 0
    if form == "64" or (form == "auto" and n > 0xFFFF):
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    elif form == "16" or (form == "auto" and n > 125):
        head += bytes([mbit | 126]) + struct.pack("!H", n & 0xFFFF)
    else:
        head += bytes([mbit | n])
    if not mask:
        return head + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


# == value generators ==========================================================================
UNICODE_SAMPLES = ["é", "ß", "中文", "😀", "\u202e", "\ufeff", "\x00", "\x7f", "\u2028", "a" * 3]


def rand_text(rng: random.Random, max_len: int = 40) -> str:
    kind = rng.random()
    if kind < 0.5:
        return "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_")
            for _ in range(rng.randrange(max_len + 1))
        )
    if kind < 0.8:
        return "".join(rng.choice(UNICODE_SAMPLES) for _ in range(rng.randrange(1, 6)))
    return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(max_len + 1)))


def rand_bytes(rng: random.Random, max_len: int = 64) -> bytes:
    return rng.randbytes(rng.randrange(max_len + 1))


def rand_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null", "list", "dict"] if depth < 4 else ["str", "int"]
    kind = rng.choice(kinds)
    if kind == "str":
        return rand_text(rng, 12)
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, rng.randrange(100)])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, 1e-308, 3.14])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [rand_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rand_text(rng, 8): rand_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def pct_garbage(rng: random.Random) -> str:
    """A path segment in percent-encoding, valid or not."""
    return rng.choice(
        [
            "%00",
            "%2F",
            "%2f",
            "%2e%2e",
            "..",
            ".",
            "%C0%AF",  # overlong "/"
            "%E0%80%AF",  # overlong "/" (3 bytes)
            "%C0%80",  # overlong NUL
            "%FF",
            "%ED%A0%80",  # UTF-16 surrogate in UTF-8
            "%F4%90%80%80",  # beyond U+10FFFF
            "%",
            "%G1",
            "%1",
            "%25",
            "%0A",
            "%0D%0A",
            "%20",
            "%40connections",
            "%3D",
            quote(rand_text(rng, 10), safe=""),
            "".join(f"%{b:02X}" for b in rand_bytes(rng, 12)),
            "a" * rng.choice([128, 129, 1000, 9000]),
        ]
    )


# == handshake ==================================================================================
@dataclass
class Request:
    method: bytes = b"GET"
    target: bytes = b"/dev"
    version: bytes = b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    eol: bytes = b"\r\n"
    sep: bytes = b": "

    def render(self) -> bytes:
        lines = [b" ".join(p for p in (self.method, self.target, self.version) if p)]
        lines += [name + self.sep + value for name, value in self.headers]
        return self.eol.join(lines) + self.eol + self.eol + self.body


def ws_key(rng: random.Random) -> bytes:
    return base64.b64encode(rng.randbytes(16))


def upgrade_request(rng: random.Random, host: bytes, stage: str) -> Request:
    return Request(
        target=f"/{stage}".encode(),
        headers=[
            (b"Host", host),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", ws_key(rng)),
            (b"Sec-WebSocket-Version", b"13"),
        ],
    )


def _set_header(req: Request, name: bytes, value: bytes | None) -> None:
    req.headers = [(n, v) for n, v in req.headers if n.lower() != name.lower()]
    if value is not None:
        req.headers.insert(len(req.headers) // 2, (name, value))


def _mutate_request(rng: random.Random, req: Request, stage: str) -> str:
    """Apply one mutation; returns its name."""
    name, mutate = rng.choice(_MUTATIONS)
    mutate(rng, req, stage)
    return name


def _m_method(rng: random.Random, req: Request, stage: str) -> None:
    req.method = rng.choice(
        [
            b"POST",
            b"get",
            b"HEAD",
            b"PUT",
            b"OPTIONS",
            b"CONNECT",
            b"TRACE",
            b"G\x00T",
            b"",
            b"GET GET",
            b"\xff\xfe",
            b"X" * 300,
            rand_bytes(rng, 10),
        ]
    )


def _m_target(rng: random.Random, req: Request, stage: str) -> None:
    req.target = rng.choice(
        [
            f"/{stage}?{quote(rand_text(rng), safe='=&')}".encode(),
            f"/{stage}?a=%00&b=%FF&c=%C0%AF&&=&x".encode(),
            f"/{stage}?".encode() + b"&".join(b"k%d=v" % i for i in range(rng.randrange(1, 500))),
            b"/",
            b"*",
            f"http://127.0.0.1/{stage}".encode(),
            f"/{stage}/../{stage}".encode(),
            f"/%2e%2e/{stage}".encode(),
            f"/{stage}%00".encode(),
            f"//{stage}".encode(),
            f"/{stage}#frag".encode(),
            f"/{stage.upper()}".encode(),
            f"/{stage}/".encode(),
            b"/" + pct_garbage(rng).encode(),
            b"/" + b"a" * rng.choice([1000, 8190, 16383, 16385, 70000]),
            rand_bytes(rng, 30),
            f"/{stage}?".encode() + rand_bytes(rng, 30),
        ]
    )


def _m_version(rng: random.Random, req: Request, stage: str) -> None:
    req.version = rng.choice(
        [
            b"HTTP/1.0",
            b"HTTP/2.0",
            b"HTTP/0.9",
            b"HTTP/1",
            b"HTTPS/1.1",
            b"http/1.1",
            b"",
            b"HTTP/1.12",
            b"HTTP/1.1 x",
            b"HTTP/9.9",
            rand_bytes(rng, 8),
        ]
    )


def _m_drop(rng: random.Random, req: Request, stage: str) -> None:
    if req.headers:
        del req.headers[rng.randrange(len(req.headers))]


def _m_duplicate(rng: random.Random, req: Request, stage: str) -> None:
    if req.headers:
        name, _ = rng.choice(req.headers)
        req.headers.append((name, rng.choice([b"", b"13", ws_key(rng), b"websocket", b"x"])))


def _m_key(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Sec-WebSocket-Key",
        rng.choice(
            [
                b"",
                b"short",
                base64.b64encode(rng.randbytes(15)),
                base64.b64encode(rng.randbytes(17)),
                b"!!!!!!!!!!!!!!!!!!!!!!==",
                b"a" * 24,
                ws_key(rng) + b" ",
                ws_key(rng) + b"," + ws_key(rng),
                b"\x00" * 24,
                b"=" * 24,
                rand_bytes(rng, 30),
                None,
            ]
        ),
    )


def _m_ws_version(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Sec-WebSocket-Version",
        rng.choice(
            [
                b"0",
                b"8",
                b"12",
                b"14",
                b"13, 8",
                b"8, 13",
                b"abc",
                b"",
                b"-1",
                b"99999999999999999999",
                b" 13 ",
                b"13\x00",
                None,
            ]
        ),
    )


def _m_upgrade(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Upgrade",
        rng.choice(
            [
                b"WebSocket",
                b"websocket, h2c",
                b"h2c",
                b"",
                b"websocket\x00",
                b"WEBSOCKET",
                b"websocket/13",
                None,
            ]
        ),
    )


def _m_connection(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Connection",
        rng.choice(
            [
                b"keep-alive",
                b"upgrade",
                b"keep-alive, Upgrade",
                b"close",
                b"",
                b"Upgrade,",
                b"Upgrade, close",
                None,
            ]
        ),
    )


def _m_extensions(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Sec-WebSocket-Extensions",
        rng.choice(
            [
                b"permessage-deflate",
                b"permessage-deflate; client_max_window_bits",
                b"permessage-deflate; client_max_window_bits=0",
                b"permessage-deflate; server_max_window_bits=99",
                b"permessage-deflate; foo=bar",
                b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                b"x-webkit-deflate-frame",
                b";;;",
                b",",
                rand_bytes(rng, 40),
            ]
        ),
    )


def _m_protocol(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Sec-WebSocket-Protocol",
        rng.choice(
            [
                b"",
                b",,,",
                b"a b",
                b"chat, superchat",
                b"x" * 5000,
                b", ".join(rand_text(rng, 5).encode() for _ in range(20)),
                rand_bytes(rng, 40),
            ]
        ),
    )


def _m_origin(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req,
        b"Origin",
        rng.choice(
            [
                b"null",
                b"http://evil.example",
                b"",
                b"\xff\xfe",
                b"http://" + b"a" * 3000,
                rand_text(rng).encode(),
            ]
        ),
    )


def _m_host(rng: random.Random, req: Request, stage: str) -> None:
    _set_header(
        req, b"Host", rng.choice([None, b"", b"[::1", b"a" * 3000, b"a b", b"\x00", b"h:99999"])
    )


def _m_huge_header(rng: random.Random, req: Request, stage: str) -> None:
    size = rng.choice([8190, 16383 - 10, 16384, 16385, 65536, 262144])
    req.headers.append((b"X-Huge", b"v" * size))


def _m_many_headers(rng: random.Random, req: Request, stage: str) -> None:
    count = rng.choice([50, 101, 128, 129, 500, 2000, 10000])
    req.headers += [(b"X-H%d" % i, b"v") for i in range(count)]


def _m_long_name(rng: random.Random, req: Request, stage: str) -> None:
    req.headers.append((b"X" * rng.choice([1000, 16384, 20000]), b"v"))


def _m_body(rng: random.Random, req: Request, stage: str) -> None:
    body = rand_bytes(rng, 200)
    if rng.random() < 0.3:
        # The body looks like a masked WebSocket frame: it must never be read as one.
        body = frame(0x1, b'{"action":"echo","smuggled":1}')
    declared = rng.choice([len(body), len(body), max(0, len(body) - 5), len(body) + 50])
    req.headers.append((b"Content-Length", str(declared).encode()))
    req.body = body


def _m_chunked(rng: random.Random, req: Request, stage: str) -> None:
    req.headers.append((b"Transfer-Encoding", rng.choice([b"chunked", b"chunked, gzip", b"x"])))
    req.body = rng.choice(
        [b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", rand_bytes(rng, 40)]
    )


def _m_eol(rng: random.Random, req: Request, stage: str) -> None:
    req.eol = rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"])


def _m_separator(rng: random.Random, req: Request, stage: str) -> None:
    req.sep = rng.choice([b":", b" : ", b":\t", b"", b" ", b"::"])


def _m_fold(rng: random.Random, req: Request, stage: str) -> None:
    if req.headers:
        i = rng.randrange(len(req.headers))
        name, value = req.headers[i]
        req.headers[i] = (name, value + b"\r\n " + rand_text(rng, 10).encode())


def _m_bytes_in_header(rng: random.Random, req: Request, stage: str) -> None:
    if req.headers:
        i = rng.randrange(len(req.headers))
        name, value = req.headers[i]
        bad = rng.choice([b"\x00", b"\x7f", b"\x80", b"\xff", b"\r", b"\n", b"\x1b[31m"])
        if rng.random() < 0.5:
            req.headers[i] = (name + bad, value)
        else:
            req.headers[i] = (name, value[: len(value) // 2] + bad + value[len(value) // 2 :])


_MUTATIONS: list[tuple[str, Callable[[random.Random, Request, str], None]]] = [
    ("method", _m_method),
    ("target", _m_target),
    ("version", _m_version),
    ("drop", _m_drop),
    ("duplicate", _m_duplicate),
    ("key", _m_key),
    ("ws-version", _m_ws_version),
    ("upgrade", _m_upgrade),
    ("connection", _m_connection),
    ("extensions", _m_extensions),
    ("protocol", _m_protocol),
    ("origin", _m_origin),
    ("host", _m_host),
    ("huge-header", _m_huge_header),
    ("many-headers", _m_many_headers),
    ("long-name", _m_long_name),
    ("body", _m_body),
    ("chunked", _m_chunked),
    ("eol", _m_eol),
    ("separator", _m_separator),
    ("fold", _m_fold),
    ("bytes", _m_bytes_in_header),
]

_GARBAGE: list[Callable[[random.Random], bytes]] = [
    lambda rng: rand_bytes(rng, 4096),
    lambda rng: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(200),  # TLS
    lambda rng: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.randbytes(20),
    lambda rng: b"SSH-2.0-OpenSSH_9.0\r\n",
    lambda rng: b"\r\n" * rng.randrange(1, 200),
    lambda rng: b"\x00" * rng.randrange(1, 3000),
    lambda rng: b"GET",
    lambda rng: b"",
    lambda rng: rand_text(rng, 400).encode("utf-8", "surrogatepass"),
]


@dataclass
class HandshakeCase:
    chunks: list[bytes]  # written in order, ``delay`` apart
    delay: float
    end: str  # "read" | "eof" | "abort" | "stall"
    complete: bool  # the server got a whole request and must answer
    label: str


def gen_handshake(rng: random.Random, host: bytes, stage: str) -> HandshakeCase:
    roll = rng.random()
    if roll < 0.12:
        data = rng.choice(_GARBAGE)(rng)
        return HandshakeCase(
            [data], 0.0, rng.choice(["eof", "eof", "abort", "stall"]), False, "garbage"
        )
    req = upgrade_request(rng, host, stage)
    if roll < 0.16:  # slowloris: the request in small pieces, or a prefix then silence
        data = req.render()
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randrange(2, 6))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        if rng.random() < 0.5:
            return HandshakeCase(pieces, rng.uniform(0.01, 0.08), "read", True, "slow")
        return HandshakeCase(pieces[:-1], rng.uniform(0.01, 0.05), "stall", False, "slow-stall")
    if roll < 0.19:  # pipelining: a second request (or garbage) right behind the first
        tail = rng.choice(
            [
                upgrade_request(rng, host, stage).render(),
                rand_bytes(rng, 300),
                frame(0x1, b'{"action":"echo"}'),
            ]
        )
        return HandshakeCase([req.render() + tail], 0.0, "read", True, "pipelined")
    names = [_mutate_request(rng, req, stage) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    # A request whose head never ends cannot be answered: the handshake timeout must close it.
    data = req.render()
    complete = req.eol in (b"\r\n", b"\n") and "chunked" not in names and "body" not in names
    end = rng.choices(["read", "eof", "abort"], weights=[8, 1, 1])[0]
    return HandshakeCase([data], 0.0, end, complete, "+".join(names))


async def run_handshake(env: Env, rng: random.Random) -> tuple[str, str | None]:
    case = gen_handshake(rng, env.host_header, env.stage)
    peer = await Peer.open(env.host, env.ws_port)
    try:
        try:
            for i, chunk in enumerate(case.chunks):
                if i:
                    await asyncio.sleep(case.delay)
                await peer.send(chunk)
        except (ConnectionError, OSError):
            return "reset-while-sending", None
        if case.end == "abort":
            peer.abort()
            return "aborted", None
        if case.end == "eof":
            peer.write_eof()
        wait = env.timeout + (
            env.handshake_timeout if case.end == "stall" or not case.complete else 0
        )
        try:
            async with asyncio.timeout(wait):
                status, _ = await peer.read_head()
        except TimeoutError:
            if case.end == "stall" or not case.complete:
                return "timeout", f"handshake-timeout-not-enforced: {case.label}"
            return "timeout", f"no-answer: {case.label}"
        except (ConnectionError, OSError):
            return "reset", None
        if status is None:
            return "closed", None
        finding = None
        if status >= 500 and status != 503:
            finding = f"http-5xx: {case.label} -> {status}"
        # Accepted: say goodbye properly half of the time, drop the TCP connection otherwise.
        if status == 101 and case.end != "eof" and rng.random() < 0.5:
            with contextlib.suppress(ConnectionError, OSError):
                await peer.send(frame(0x8, close_payload(1000)))
        return f"http-{status}", finding
    finally:
        peer.abort()


# == frames =====================================================================================
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
    """1-4 frame groups; the first rule-breaking frame decides the expected close code.

    The frame guard reads every frame header of a TCP read before aiohttp parses the frames, so
    an oversized or unmasked frame *after* the first violation may win: 1009 (and 1002 after an
    unmasked frame or random bytes) is then accepted too.
    """
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
            elif isinstance(expect, frozenset) and chunk:
                # The guard reads later headers of the same TCP read first: an oversized (1009)
                # or unmasked (1002) frame after the first violation may win; random bytes can
                # look like either.
                lookahead = {1002} if name in ("unmasked", "random") else set()
                expect = expect | {1009} | lookahead
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


async def open_websocket(env: Env, rng: random.Random) -> Peer:
    """A good handshake. Retried once on a reset: the fuzzer shares its event loop with an
    in-process gateway, and when the loop is congested the gateway's handshake timeout can
    rightly drop a connection whose request the fuzzer was too slow to send."""
    request = upgrade_request(rng, env.host_header, env.stage).render()
    for attempt in (1, 2):
        peer = await Peer.open(env.host, env.ws_port)
        try:
            await peer.send(request)
            status, _ = await peer.read_head()
        except ConnectionResetError:
            peer.abort()
            if attempt == 2:
                raise
            continue
        if status != 101:
            peer.abort()
            raise ConnectionError(f"handshake answered {status}")
        return peer
    raise AssertionError("unreachable")  # pragma: no cover


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


# == bodies =====================================================================================
def gen_body(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        doc: Any = {"action": rng.choice(["echo", "echo", "Echo", "echo ", "", "whoami", "x"])}
        for _ in range(rng.randrange(3)):
            doc[rand_text(rng, 6)] = rand_json(rng)
        return json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    if roll < 0.55:
        return json.dumps({"action": rand_json(rng)})
    if roll < 0.65:
        return json.dumps(rand_json(rng))
    if roll < 0.72:
        depth = rng.choice([10, 500, 1023, 1024, 1025, 3000])
        return '{"action":' * depth + '"echo"' + "}" * depth
    if roll < 0.78:
        return rng.choice(
            [
                '{"action":"x","action":"echo"}',
                '{"action":"\\u0065cho"}',
                '{"action":"\\ud800"}',
                '\ufeff{"action":"echo"}',
                "null",
                "[]",
                '"echo"',
                "",
                " ",
                '{"action":"echo"',
                "{'action':'echo'}",
                '{"action":"echo"}\x00',
                '{"action":NaN}',
                '{"action":1e999}',
            ]
        )
    if roll < 0.9:
        return rand_text(rng, 200)
    return json.dumps({"action": "echo", "pad": "p" * rng.choice([1000, 30000, 32700, 100000])})


def expected_reply(env: Env, body: str) -> str | None:
    """What the gateway must answer, from the pure selector; None if the selector itself fails."""
    from hubbub.aws.selection import select_route

    try:
        key = select_route(env.selector, body, env.route_keys)
    except RecursionError:
        return None
    if key == "echo":
        return body
    if key == "whoami":
        return "I"
    return "D" + body


async def run_bodies(env: Env, rng: random.Random) -> tuple[str, str | None]:
    bodies = [gen_body(rng) for _ in range(rng.choice([1, 1, 2, 3, 5]))]
    try:
        async with asyncio.timeout(env.timeout):
            peer = await open_websocket(env, rng)
    except (TimeoutError, ConnectionError, OSError) as exc:
        return "handshake-failed", f"handshake-failed: {exc!r}"
    try:
        expected: Counter[str] = Counter()
        for body in bodies:
            data = body.encode("utf-8", "surrogatepass")
            if len(data) > MAX_FRAME:  # fragment like a conforming client
                parts = [data[i : i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME)]
                for i, part in enumerate(parts):
                    await peer.send(frame(0x1 if i == 0 else 0x0, part, fin=i == len(parts) - 1))
            else:
                await peer.send(frame(0x1, data))
            reply = expected_reply(env, body)
            if reply is None:
                crash = f"selector-recursion: select_route raises RecursionError on {body[:40]!r}"
                return await _outcome_after_crash(peer, env), crash
            expected[reply[:1] if reply.startswith("I") else reply] += 1
        # Other frames may arrive too (management fuzz cases broadcast to everyone): only the
        # expected replies are counted off; a wrong reply shows up as a missing one.
        pending = Counter(expected)
        try:
            async with asyncio.timeout(env.timeout):
                while pending.total() > 0:
                    item = await peer.read_frame()
                    if item is None:
                        return (
                            "eof",
                            f"body-dropped: connection lost, first body {bodies[0][:60]!r}",
                        )
                    opcode, payload = item
                    if opcode == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        return f"close-{code}", f"body-closed: {code} for {bodies[0][:60]!r}"
                    text = payload.decode("utf-8", "replace")
                    key = text[:1] if text.startswith("I") else text
                    if pending[key] > 0:
                        pending[key] -= 1
        except TimeoutError:
            missing = next(iter(+pending))
            return "missing-reply", f"missing-reply: expected {missing[:80]!r}"
        await peer.send(frame(0x8, close_payload(1000)))
        return f"replied-{len(bodies)}", None
    except (ConnectionError, OSError):
        return "reset", "body-reset: the server dropped a well-formed client"
    finally:
        peer.abort()


async def _outcome_after_crash(peer: Peer, env: Env) -> str:
    """What the client saw after a body that crashes the selector (close code, eof, reply)."""
    try:
        async with asyncio.timeout(env.timeout):
            item = await peer.read_frame()
    except TimeoutError:
        return "no-reply"
    except (ConnectionError, OSError):
        return "reset"
    if item is None:
        return "eof"
    opcode, payload = item
    if opcode == 0x8:
        return f"close-{struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else 1005}"
    return "replied"


# == management =================================================================================
METHODS = [
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"PATCH",
    b"HEAD",
    b"OPTIONS",
    b"TRACE",
    b"CONNECT",
    b"get",
    b"FOO",
    b"G/T",
    b"\xff",
]
RESOURCES = [
    "connections",
    "rooms",
    "users",
    "broadcast",
    "%40connections",
    "@connections",
    "nothing",
    "Connections",
    "",
]


@dataclass
class ManagementCase:
    data: bytes
    end: str  # "read" | "eof" | "abort"
    complete: bool
    label: str


def gen_management(rng: random.Random, stage: str, victims: Sequence[str]) -> ManagementCase:
    # Drawn the same way whatever the number of victims, so generation depends on the seed only.
    pick = rng.randrange(3)
    victim = victims[pick % len(victims)] if victims else "AAAAAAAAAAAAAAA="

    def ident() -> str:
        choice = rng.random()
        if choice < 0.4:
            return quote(victim, safe="-._~")
        if choice < 0.6:
            return quote(rand_text(rng, 20), safe="")
        return pct_garbage(rng)

    resource = rng.choice(RESOURCES)
    segs = [rng.choice([stage, stage, stage, "prod", pct_garbage(rng)]), f"@{resource}"]
    if resource.startswith("%40"):
        segs[1] = resource
    depth = rng.choice([0, 1, 1, 1, 2, 3, 4])
    if depth >= 1:
        segs.append(ident())
    if depth >= 2:
        segs.append(rng.choice(["connections", "attributes", "x", pct_garbage(rng)]))
    if depth >= 3:
        segs.append(ident())
    for _ in range(max(0, depth - 3)):
        segs.append(pct_garbage(rng))
    path = "/" + "/".join(segs)
    if rng.random() < 0.1:
        path = rng.choice(["/health", "/", "*", "//", "/" + "x/" * 300, f"/{stage}/@connections/"])
    if rng.random() < 0.05:
        path += rng.choice(["/", "//", "/.", "/.."])
    query = ""
    if rng.random() < 0.3:
        values = [str(rng.randrange(-5, 2000)), "1e9", "9" * 20, "", pct_garbage(rng), ident()]
        names = ["limit", "cursor", "exclude", "x", ""]
        query = "?" + "&".join(
            f"{rng.choice(names)}={rng.choice(values)}" for _ in range(rng.randrange(1, 4))
        )
    method = rng.choices(METHODS, weights=[6, 6, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1])[0]
    body = _management_body(rng, victim)
    headers: list[tuple[bytes, bytes]] = [(b"Host", b"127.0.0.1")]
    complete = True
    framing = rng.random()
    if framing < 0.75:
        if body or rng.random() < 0.5:
            headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing < 0.82:
        headers.append((b"Transfer-Encoding", b"chunked"))
        if rng.random() < 0.7:
            body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
        else:
            complete = False  # not chunk-encoded: the server waits for a valid chunk
    elif framing < 0.88:
        headers += [
            (b"Content-Length", b"%d" % len(body)),
            (b"Content-Length", b"%d" % (len(body) + 1)),
        ]
    elif framing < 0.94:
        headers.append((b"Content-Length", b"%d" % (len(body) + rng.randrange(1, 100))))
        complete = False  # the server is still waiting for the rest of the body
    else:
        headers.append(
            (
                b"Content-Length",
                rng.choice([b"-1", b"abc", b"1e3", b"", b" 5", b"99999999999999999999"]),
            )
        )
        complete = False  # " 5" is a valid length the body never reaches
    for _ in range(rng.choice([0, 0, 1, 2])):
        headers.append(
            rng.choice(
                [
                    (
                        b"Content-Type",
                        rng.choice([b"application/json", b"text/plain", b"", b"\xff"]),
                    ),
                    (b"Authorization", b"AWS4-HMAC-SHA256 Credential=" + rand_text(rng).encode()),
                    (b"Authorization", rand_bytes(rng, 40)),
                    (b"X-Amz-Date", rng.choice([b"20240101T000000Z", b"garbage", b""])),
                    (b"Expect", b"100-continue"),
                    (b"Connection", rng.choice([b"close", b"keep-alive", b"Upgrade"])),
                    (b"Upgrade", b"websocket"),
                    (b"X-Long", b"l" * rng.choice([100, 16000, 17000])),
                ]
            )
        )
    req = Request(
        method=method,
        target=(path + query).encode("latin-1", "replace"),
        headers=headers,
        body=body,
    )
    data = req.render()
    if rng.random() < 0.05:  # pipelined second request
        data += Request(
            target=f"/{stage}/@connections".encode(), headers=[(b"Host", b"h")]
        ).render()
    end = "read" if complete else rng.choice(["eof", "abort"])
    if rng.random() < 0.05:
        end = "abort"
    return ManagementCase(data, end, complete, f"{method.decode('latin-1')} {path[:60]}")


def _management_body(rng: random.Random, victim: str) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return b""
    if roll < 0.5:
        return json.dumps(rand_json(rng)).encode()
    if roll < 0.6:
        return json.dumps(
            {rand_text(rng, 5): rand_json(rng) for _ in range(rng.randrange(5))}
        ).encode()
    if roll < 0.75:
        return rand_bytes(rng, 300)
    if roll < 0.85:
        return (
            b'{"x":"' + b"a" * rng.choice([4096, 5000, 131072 - 8, 131072 - 7, 131072 - 6]) + b'"}'
        )
    if roll < 0.9:
        return b"b" * rng.choice([131072, 131073, 200000])
    return rand_text(rng, 100).encode("utf-8", "surrogatepass")


async def run_management(env: Env, rng: random.Random) -> tuple[str, str | None]:
    if env.mgmt_port is None:
        return "skipped", None
    case = gen_management(rng, env.stage, env.victims)
    peer = await Peer.open(env.host, env.mgmt_port)
    try:
        try:
            await peer.send(case.data)
        except (ConnectionError, OSError):
            return "reset-while-sending", None
        if case.end == "abort":
            peer.abort()
            return "aborted", None
        if case.end == "eof":
            peer.write_eof()
        try:
            async with asyncio.timeout(env.timeout):
                status, headers = await peer.read_head()
                if status is not None and b"HEAD" not in case.data[:5]:
                    await peer.read_body(headers)
        except TimeoutError:
            if not case.complete:
                return "timeout", None
            return "timeout", f"no-answer: {case.label}"
        except (ConnectionError, OSError):
            return "reset", None
        if status is None:
            return "closed", None
        if status >= 500 and status != 503:
            return f"http-{status}", f"http-5xx: {case.label} -> {status}"
        return f"http-{status}", None
    finally:
        peer.abort()


# == config =====================================================================================
def base_config() -> dict[str, Any]:
    """A valid config touching every section, built from the Config dataclasses' defaults."""
    from hubbub.config import Config

    raw: dict[str, Any] = {}
    for f in fields(Config):
        default = getattr(Config(), f.name)
        if is_dataclass(default) and not isinstance(default, type):
            section = {}
            for sf in fields(default):
                value = getattr(default, sf.name)
                if isinstance(value, tuple):
                    value = list(value)
                if value is None or isinstance(value, Path) or is_dataclass(value):
                    continue
                section[sf.name] = value
            raw[f.name] = section
    raw.get("management", {}).pop("credentials", None)
    raw["environment"] = {"STAGE": "dev", "N": "1"}
    raw["routes"] = {
        "$connect": {"handler": "app.connect"},
        "$default": {"handler": "app.default", "route_response": True, "timeout": 5},
        "echo": {"url": "http://127.0.0.1:9/echo", "environment": {"A": "b"}},
    }
    raw["authorizer"] = {
        "identity_source": ["route.request.header.Authorization"],
        "handler": "app.connect",
    }
    return raw


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    return out


_WILD_VALUES: list[Any] = [
    "",
    "x" * 2000,
    -1,
    0,
    1,
    2**31,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.5,
    math.inf,
    -math.inf,
    math.nan,
    True,
    False,
    [],
    ["a"],
    [1, 2],
    {},
    {"x": 1},
    "\x00",
    "é",
    "0.0.0.0",
    "::",
    "::1",
    "127.0.0.1",
    "localhost",
    "redis://127.0.0.1:1/0",
    "memory://",
    "app.connect",
    "a..b",
    "/etc/passwd",
    "http://x",
    "$request.body.action",
    "${request.body.a}/${request.body.b}",
    "$request.header.x",
    "$request.body.",
    "\\$default",
    "${request.body",
    "[",
    "sigv4",
    "none",
]


def gen_config(rng: random.Random) -> tuple[str, str]:
    raw = base_config()
    labels = []
    for _ in range(rng.choice([1, 1, 2, 3, 5])):
        paths = _paths(raw)
        if not paths:
            break
        path = rng.choice(paths)
        parent: Any = raw
        for key in path[:-1]:
            parent = parent[key]
        op = rng.random()
        if op < 0.2:
            del parent[path[-1]]
            labels.append("del " + ".".join(path))
        elif op < 0.3:
            parent[rand_text(rng, 8) or "k"] = rng.choice(_WILD_VALUES)
            labels.append("add-in " + ".".join(path[:-1]))
        else:
            parent[path[-1]] = rng.choice(_WILD_VALUES)
            labels.append("set " + ".".join(path))
    if rng.random() < 0.2:
        management = raw.get("management")
        raw["management"] = {
            **(management if isinstance(management, dict) else {}),
            "auth": "sigv4",
            "credentials": [
                rng.choice(
                    [
                        {"access_key_id": "AK", "secret_access_key": "s"},
                        {"access_key_id": 1},
                        {},
                        "x",
                        {"access_key_id": "a", "secret_access_key": "b", "x": 1},
                    ]
                )
            ],
        }
        labels.append("credentials")
    text = to_toml(raw)
    if rng.random() < 0.1:  # byte-level damage to the TOML text itself
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice(["=", "[", "]", '"', "\n", "\x00", "[[", "'''"]) + text[pos:]
        labels.append("text")
    return text, "; ".join(labels)


def _toml_key(key: str) -> str:
    return _toml_string(key)


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0xD800 else "\\ufffd")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(data: dict[str, Any]) -> str:
    """Top-level keys become tables; anything deeper is written inline (always valid TOML)."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{_toml_key(key)}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        else:
            lines.insert(0, f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def run_config(env: Env, rng: random.Random) -> tuple[str, str | None]:
    from hubbub.config import load_config
    from hubbub.errors import ConfigError

    text, label = gen_config(rng)
    path = env.config_dir / "hubbub.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path, env={})
    except ConfigError:
        return "config-error", None
    except Exception as exc:
        return "crash", f"config-crash: {type(exc).__name__}: {exc} ({label})"
    bad = _nan(config)
    if bad:
        return "accepted", f"config-nan: {bad} accepted ({label})"
    return "accepted", None


def _nan(node: Any, prefix: str = "") -> str | None:
    """The first NaN in a Config (``inf`` may mean "never"; NaN means nothing)."""
    if isinstance(node, float) and math.isnan(node):
        return f"{prefix}={node}"
    if is_dataclass(node) and not isinstance(node, type):
        for f in fields(node):
            found = _nan(getattr(node, f.name), f"{prefix}.{f.name}".lstrip("."))
            if found:
                return found
    if isinstance(node, dict):
        for k, v in node.items():
            found = _nan(v, f"{prefix}.{k}")
            if found:
                return found
    return None


# == the environment and invariants =============================================================
@dataclass
class Env:
    host: str
    ws_port: int
    mgmt_port: int | None
    stage: str
    timeout: float
    handshake_timeout: float
    config_dir: Path
    selector: Any = None
    route_keys: frozenset[str] = frozenset({"$default", "echo", "whoami"})
    victims: list[str] = field(default_factory=list)
    websocket_url: str = ""
    management_url: str | None = None

    @property
    def host_header(self) -> bytes:
        return f"{self.host}:{self.ws_port}".encode()


RUNNERS: dict[str, Callable[[Env, random.Random], Any]] = {
    "handshake": run_handshake,
    "frames": run_frames,
    "management": run_management,
    "bodies": run_bodies,
}


def case_rng(seed: int, target: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{target}:{index}")


async def run_case(env: Env, seed: int, target: str, index: int) -> CaseResult:
    rng = case_rng(seed, target, index)
    started = time.perf_counter()
    try:
        if target == "config":
            outcome, finding = run_config(env, rng)
        else:
            async with asyncio.timeout(env.timeout * 4 + env.handshake_timeout + 5):
                outcome, finding = await RUNNERS[target](env, rng)
    except TimeoutError:
        outcome, finding = "case-timeout", "case-timeout: the case itself hung"
    except (ConnectionError, OSError) as exc:
        outcome, finding = f"connect-{type(exc).__name__}", None
    except Exception as exc:  # a bug in the fuzzer itself: report it, keep going
        outcome, finding = "fuzzer-error", f"fuzzer-error: {type(exc).__name__}: {exc}"
    return CaseResult(target, index, outcome, finding, time.perf_counter() - started)


def _is_peer_fault(exc: BaseException) -> bool:
    """aiohttp's HTTP parse errors (answered 400) and a peer that went away: not a crash."""
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, HttpProcessingError | ConnectionError | asyncio.CancelledError)


class ErrorRecorder(logging.Handler):
    """Collects ERROR records from the gateway's, aiohttp's and asyncio's loggers, and every
    traceback that is not a peer fault from the logger aiohttp's server protocol writes to.

    hubbub routes aiohttp's "Error handling request" records to ``hubbub.transport.peer`` and
    demotes them to DEBUG (dropping them unless DEBUG is on for ``hubbub.transport``); the
    recorder turns DEBUG on for that logger while it runs, so a crash in a request handler that
    a client triggered cannot hide behind the demotion.
    """

    LOGGERS = ("hubbub", "aiohttp", "asyncio")
    PEER = "hubbub.transport.peer"
    # Loggers the CLI silences; the fuzzer must see their errors.
    QUIET = ("aiohttp.server", "aiohttp.websocket", "aiohttp.web", "aiohttp.access")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        # One line per record, not the record: a kept exc_info keeps every frame of its
        # traceback alive, and thousands of them make the garbage collector stall the loop.
        self.records: list[str] = []
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == self.PEER or record.name.startswith(self.PEER + "."):
            if exc is None or _is_peer_fault(exc):
                return
        elif record.levelno < logging.ERROR:
            return
        text = f" [{type(exc).__name__}: {str(exc)[:200]}]" if exc is not None else ""
        self.records.append(
            f"{record.levelname} log {record.name}: {record.getMessage()[:200]}{text}"
        )

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        for name in (*self.QUIET, "hubbub.transport"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if name == "hubbub.transport":
                logger.setLevel(logging.DEBUG)
            elif logger.getEffectiveLevel() > logging.ERROR:
                logger.setLevel(logging.ERROR)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def describe(self) -> list[str]:
        return list(self.records)


async def serve_check(env: Env) -> str | None:
    """A normal client still gets an echo round trip; returns a failure message or None."""
    from websockets.asyncio.client import connect

    body = json.dumps({"action": "echo", "check": time.time()})
    try:
        async with asyncio.timeout(10):
            async with connect(env.websocket_url, compression=None, proxy=None) as ws:
                await ws.send(body)
                reply = await ws.recv()
    except Exception as exc:
        return f"serve check failed: {type(exc).__name__}: {exc}"
    if reply != body:
        return f"serve check: echo answered {str(reply)[:100]!r}"
    return None


@dataclass
class Baseline:
    tasks: int


def gateway_state(gw: Any) -> dict[str, int]:
    registry = gw.store.registry
    state = {
        "hub": len(gw.hub.connections),
        "background": len(gw._background),
        "in_flight": gw.invoker.in_flight if gw.invoker is not None else 0,
        "rooms": len(getattr(registry, "_rooms", {})),
        "users": len(getattr(registry, "_users", {})),
    }
    return state


async def settled(gw: Any, baseline: Baseline, deadline: float) -> list[str]:
    """Wait until everything is back to baseline; the differences still left at the deadline."""
    end = time.monotonic() + deadline
    while True:
        problems = []
        state = gateway_state(gw)
        state["registry"] = await gw.store.registry.count()
        problems += [f"{k}={v}" for k, v in state.items() if v]
        tasks = len(asyncio.all_tasks())
        if tasks > baseline.tasks:
            problems.append(f"tasks={tasks} (baseline {baseline.tasks})")
        if not problems or time.monotonic() > end:
            return problems
        await asyncio.sleep(0.05)


class Victims:
    """A few well-behaved connections whose ids the management cases aim at."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.clients: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []

    async def open(self, count: int) -> None:
        from websockets.asyncio.client import connect

        for _ in range(count):
            ws = await connect(self.env.websocket_url, compression=None, proxy=None, max_size=None)
            await ws.send('{"action":"whoami"}')
            reply = str(await asyncio.wait_for(ws.recv(), 10))
            self.env.victims.append(reply[1:])
            self.clients.append(ws)
            self.readers.append(asyncio.create_task(self._drain(ws)))

    @staticmethod
    async def _drain(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async def close(self) -> None:
        for ws in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.clients.clear()
        self.readers.clear()
        self.env.victims.clear()


# == the driver =================================================================================
@dataclass
class FuzzOptions:
    cases: int = 1000
    seed: int = 1
    targets: Sequence[str] = TARGETS
    concurrency: int = 32
    check_every: int = 2000
    timeout: float = 3.0
    handshake_timeout: float = 1.0
    settle: float = 10.0
    url: str | None = None
    management_url: str | None = None
    progress: bool = False


def plan(options: FuzzOptions) -> list[tuple[str, int]]:
    """Case i goes to target i mod len(targets); indexes count per target."""
    targets = list(options.targets)
    return [(targets[i % len(targets)], i // len(targets)) for i in range(options.cases)]


@contextlib.asynccontextmanager
async def fuzz_environment(options: FuzzOptions) -> AsyncIterator[tuple[Env, Any]]:
    """An in-process gateway (or the one at ``--url``) and the Env describing it."""
    from hubbub.aws.selection import compile_route_selection

    with tempfile.TemporaryDirectory(prefix="hubbub-fuzz-") as tmp:
        directory = write_app(Path(tmp))
        selector = compile_route_selection("$request.body.action")
        if options.url:
            ws = urlsplit(options.url)
            mgmt = urlsplit(options.management_url) if options.management_url else None
            env = Env(
                host=ws.hostname or "127.0.0.1",
                ws_port=ws.port or 80,
                mgmt_port=mgmt.port if mgmt else None,
                stage=ws.path.strip("/") or "dev",
                timeout=options.timeout,
                handshake_timeout=options.handshake_timeout,
                config_dir=directory,
                selector=selector,
                websocket_url=options.url,
                management_url=options.management_url,
            )
            yield env, None
            return
        from hubbub.testing import run_gateway

        config = fuzz_config(options.handshake_timeout)
        async with run_gateway(config, base_dir=directory) as gw:
            ws = urlsplit(gw.websocket_url)
            mgmt = urlsplit(gw.management_url)
            env = Env(
                host=ws.hostname or "127.0.0.1",
                ws_port=ws.port or 80,
                mgmt_port=mgmt.port,
                stage=gw.config.api.stage,
                timeout=options.timeout,
                handshake_timeout=options.handshake_timeout,
                config_dir=directory,
                selector=selector,
                websocket_url=gw.websocket_url,
                management_url=gw.management_url,
            )
            yield env, gw


async def health_connections(env: Env) -> int | None:
    if env.management_url is None:
        return None
    import aiohttp

    base = env.management_url.rsplit("/", 1)[0]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
            return int((await resp.json())["connections"])
    except (aiohttp.ClientError, ValueError, KeyError, TimeoutError):
        return None


async def run_fuzz(options: FuzzOptions) -> Report:
    """Run ``options.cases`` cases and the invariant checks; never raises for a finding."""
    report = Report(seed=options.seed, cases=options.cases)
    recorder = ErrorRecorder()
    recorder.install()
    loop = asyncio.get_running_loop()
    loop_errors: list[str] = []
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(str(ctx.get("message"))))
    started = time.perf_counter()
    try:
        async with fuzz_environment(options) as (env, gw):
            await _fuzz_loop(options, env, gw, report)
    finally:
        loop.set_exception_handler(old_handler)
        recorder.remove()
    report.failures += recorder.describe()
    report.failures += [f"event loop exception handler: {m}" for m in loop_errors]
    report.seconds = time.perf_counter() - started
    return report


async def _fuzz_loop(options: FuzzOptions, env: Env, gw: Any, report: Report) -> None:
    failure = await serve_check(env)
    if failure:
        report.failures.append(f"before fuzzing: {failure}")
        return
    checker = Checker(options, env, gw, report)
    await checker.start()
    cases = plan(options)
    victims = Victims(env)
    semaphore = asyncio.Semaphore(options.concurrency)

    async def one(target: str, index: int) -> CaseResult:
        async with semaphore:
            return await run_case(env, options.seed, target, index)

    step = max(1, options.check_every)
    for start in range(0, len(cases), step):
        batch = cases[start : start + step]
        if "management" in options.targets:
            await victims.open(3)
        for result in await asyncio.gather(*(one(t, i) for t, i in batch)):
            report.add(result)
        await victims.close()
        await checker.check(f"after case {start + len(batch)}")
        if options.progress:
            print(
                f"fuzz: {start + len(batch)}/{len(cases)} cases, {len(report.findings)} "
                f"findings, {len(report.failures)} failures",
                file=sys.stderr,
                flush=True,
            )


class Checker:
    """The invariants, checked after each batch once every fuzz socket is closed."""

    def __init__(self, options: FuzzOptions, env: Env, gw: Any, report: Report) -> None:
        self.options = options
        self.env = env
        self.gw = gw
        self.report = report
        self.baseline = Baseline(tasks=0)
        self.idle: int | None = None

    async def start(self) -> None:
        self.baseline = Baseline(tasks=len(asyncio.all_tasks()))
        self.idle = await health_connections(self.env)

    async def check(self, when: str) -> None:
        report, gw = self.report, self.gw
        report.checks += 1
        if gw is not None:
            problems = await settled(gw, self.baseline, self.options.settle)
            if problems:
                report.failures.append(f"{when}: not back to baseline: {', '.join(problems)}")
        failure = await serve_check(self.env)
        if failure:
            report.failures.append(f"{when}: {failure}")
        if gw is not None:
            problems = await settled(gw, self.baseline, self.options.settle)
            if problems:
                report.failures.append(f"{when}, after the serve check: {', '.join(problems)}")
        elif self.idle is not None:
            end = time.monotonic() + self.options.settle
            while (now := await health_connections(self.env)) not in (self.idle, None):
                if time.monotonic() > end:
                    report.failures.append(
                        f"{when}: /health says {now} connections, not {self.idle}"
                    )
                    break
                await asyncio.sleep(0.1)


async def replay(options: FuzzOptions, target: str, index: int) -> CaseResult:
    """Run one case, for debugging a finding."""
    async with fuzz_environment(options) as (env, _gw):
        victims = Victims(env)
        if target == "management":
            await victims.open(3)
        try:
            return await run_case(env, options.seed, target, index)
        finally:
            await victims.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="total cases, dealt over the targets")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--target", default=",".join(TARGETS), help=f"comma list of {TARGETS}")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--check-every", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=3.0, help="per read, seconds")
    p.add_argument(
        "--handshake-timeout",
        type=float,
        default=1.0,
        help="limits.handshake_timeout of the in-process gateway",
    )
    p.add_argument("--url", help="fuzz a running gateway: ws://host:port/stage")
    p.add_argument("--management-url", help="with --url: http://host:port/stage")
    p.add_argument("--replay", type=int, metavar="INDEX", help="run one case of --target")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument(
        "--write-app",
        type=Path,
        metavar="DIR",
        help="write the fuzz app (app.py + hubbub.toml) for `hubbub serve` and exit; --url "
        "needs its routes (echo, whoami, two-way $default)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown or not targets:
        print(f"fuzz: unknown target(s) {sorted(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    options = FuzzOptions(
        cases=args.cases,
        seed=args.seed,
        targets=targets,
        concurrency=args.concurrency,
        check_every=args.check_every,
        timeout=args.timeout,
        handshake_timeout=args.handshake_timeout,
        url=args.url,
        management_url=args.management_url,
        progress=True,
    )
    with contextlib.suppress(ValueError, OSError):
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.write_app is not None:
        write_app(args.write_app, toml=True)
        print(f"fuzz: wrote {args.write_app}/app.py and hubbub.toml")
        return 0
    if args.replay is not None:
        result = asyncio.run(replay(options, targets[0], args.replay))
        print(result)
        return 0 if result.finding is None else 1
    report = asyncio.run(run_fuzz(options))
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 0 if not report.unknown_failures() and not report.unknown_findings() else 1


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main())

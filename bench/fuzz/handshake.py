"""The ``handshake`` target: malformed, garbage, pipelined and slow upgrade requests.

Oracle: a complete request gets an answer, not a 5xx other than 503; an incomplete or stalled
one is closed by the handshake timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from bench.fuzz.env import Env
from bench.fuzz.values import pct_garbage, rand_bytes, rand_text
from bench.fuzz.wire import Peer, Request, close_payload, frame, upgrade_request, ws_key


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

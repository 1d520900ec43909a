"""The ``management`` target: random requests on the management listener, some aimed at live
victim connections. Oracle: every complete request is answered, never with a 5xx other than 503."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from bench.fuzz.env import Env
from bench.fuzz.values import pct_garbage, rand_bytes, rand_json, rand_text
from bench.fuzz.wire import Peer, Request

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

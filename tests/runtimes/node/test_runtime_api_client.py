"""The Node.js bootstrap's Runtime API client (src/hubbub/runtimes/node/runtime_api.js, on
node:net) against a scripted server: keep-alive, chunked answers, and a clear error on anything
unexpected."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import hubbub.runtimes

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

CLIENT = Path(hubbub.runtimes.__file__).parent / "node" / "runtime_api.js"
TIMEOUT = 20.0
ServeFn = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = b"Lambda-Runtime-Aws-Request-Id: r1\r\nLambda-Runtime-Deadline-Ms: 1\r\n"

# Two calls of next() in a row; prints each outcome as a JSON line.
SCRIPT = """
const { RuntimeApi } = require(process.argv[1]);
const api = new RuntimeApi(process.argv[2]);
(async () => {
  for (let i = 0; i < 2; i++) {
    try {
      const r = await api.next();
      console.log(JSON.stringify({ body: r.body, id: r.headers["lambda-runtime-aws-request-id"] }));
    } catch (e) {
      console.log(JSON.stringify({ error: e.message }));
    }
  }
})();
"""


async def _run_node(
    script: str, serve: ServeFn, served: asyncio.Event | None = None
) -> tuple[bytes, int]:
    """Run ``script`` under Node.js, with the client module and the address of ``serve`` (a
    fresh loopback server) as its arguments; its standard output, and the server's port.
    ``served``: set by ``serve`` once its socket is closed, waited for before the loop ends."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        node = await asyncio.create_subprocess_exec(
            "node", "-e", script, str(CLIENT), f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(node.communicate(), TIMEOUT)
        if served is not None:
            await asyncio.wait_for(served.wait(), TIMEOUT)
    finally:
        server.close()
    return out, port


async def _run(answers: list[bytes]) -> tuple[list[dict[str, str]], int]:
    """Serve ``answers`` (one per request, on whatever connection asks; an answer ending in
    ``CLOSE`` closes the connection after it); returns the client's outcomes and how many
    connections it opened."""
    queue = list(answers)
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while queue:
                await reader.readuntil(b"\r\n\r\n")
                answer = queue.pop(0)
                close = answer.endswith(b"CLOSE")
                writer.write(answer.removesuffix(b"CLOSE"))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    out, _ = await _run_node(SCRIPT, serve)
    return [json.loads(line) for line in out.decode().splitlines()], connections


async def test_keep_alive_content_length_and_chunked_answers() -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + HEADERS + b'\r\n{"a"}'
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        + HEADERS
        + b'\r\n2\r\n{"\r\n3;x=1\r\nb"}\r\n0\r\n\r\n'
    )
    outcomes, connections = await _run([plain, chunked])
    assert outcomes == [{"body": '{"a"}', "id": "r1"}, {"body": '{"b"}', "id": "r1"}]
    assert connections == 1  # one keep-alive connection for both


async def test_an_answer_ended_by_closing_then_a_new_connection() -> None:
    until_close = b"HTTP/1.0 200 OK\r\n" + HEADERS + b"\r\n{}CLOSE"
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + HEADERS + b"\r\n[]"
    outcomes, connections = await _run([until_close, plain])
    assert outcomes == [{"body": "{}", "id": "r1"}, {"body": "[]", "id": "r1"}]
    assert connections == 2


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"SMTP ready\r\n\r\nCLOSE", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\nCLOSE", "malformed header"),
        # The colon of the next line is not this line's.
        (b"HTTP/1.1 200 OK\r\nno colon\r\nContent-Length: 2\r\n\r\n{}CLOSE", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n: no name\r\n\r\nCLOSE", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nCLOSE", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nCLOSE", "unsupported Transfer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}CLOSE", "closed before the whole"),
        (b"CLOSE", "closed before the whole answer"),
    ],
)
async def test_unexpected_answers_are_clear_errors(answer: bytes, words: str) -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + HEADERS + b"\r\n{}"
    outcomes, _ = await _run([answer, plain])
    first, second = outcomes
    assert words in first["error"]
    assert first["error"].startswith("Runtime API: ")
    assert second == {"body": "{}", "id": "r1"}  # the next request opens a new connection


PIPELINE = """
const { RuntimeApi } = require(process.argv[1]);
const api = new RuntimeApi(process.argv[2]);
(async () => {
  const posted = api.postResponse("r0", { x: 1 });
  const next = api.next();
  const [a, b] = [await posted, await next];
  console.log(JSON.stringify({ a: a.status, b: b.body }));
})();
"""


async def test_the_response_and_the_next_request_are_pipelined() -> None:
    """POST .../response and GET .../next go out together on one connection; both answers in
    one write are read in order."""
    seen = bytearray()
    first = b""  # what the first read got: both requests, written at once

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        first = await reader.read(4096)
        seen.extend(first)
        while seen.count(b"\r\n\r\n") < 2 or not seen.endswith(b"\r\n\r\n"):
            seen.extend(await reader.read(4096))
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" + HEADERS + b"\r\n[1]")
        await writer.drain()
        await reader.read()
        writer.close()

    out, port = await _run_node(PIPELINE, serve)
    assert json.loads(out) == {"a": 202, "b": "[1]"}
    assert seen.startswith(b"POST /2018-06-01/runtime/invocation/r0/response HTTP/1.1\r\n")
    assert first.endswith(b"/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    assert b'{"x":1}GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n' in seen


# A string request and a binary one (not UTF-8) sent in the same tick on one connection.
MIXED = """
const { Connection } = require(process.argv[1]);
const [host, port] = process.argv[2].split(":");
const connection = new Connection(host, Number(port));
const binary = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
const head = `POST /b HTTP/1.1\\r\\nContent-Length: ${binary.length}\\r\\n\\r\\n`;
(async () => {
  const a = connection.send("GET /a HTTP/1.1\\r\\n\\r\\n", "GET /a");
  const b = connection.send(Buffer.concat([Buffer.from(head), binary]), "POST /b");
  const [x, y] = [await a, await b];
  connection.close();
  console.log(JSON.stringify([x.status, y.status]));
})();
"""


async def test_a_binary_request_behind_a_string_one_keeps_its_bytes() -> None:
    """Requests of one tick leave in one write; a Buffer among them is joined as bytes, not
    decoded as UTF-8 (which would replace 0xff 0xfe 0x80)."""
    seen = bytearray()
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not seen.endswith(b"\xff\xfe\x00\x80"):
            data = await reader.read(4096)
            if not data:
                break
            seen.extend(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 2)
        await writer.drain()
        await reader.read()
        writer.close()
        served.set()

    out, _ = await _run_node(MIXED, serve, served)
    assert json.loads(out) == [200, 200]
    assert bytes(seen) == (
        b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x80"
    )


HEADERS_SCRIPT = """
const { RuntimeApi } = require(process.argv[1]);
const api = new RuntimeApi(process.argv[2]);
(async () => {
  for (let i = 0; i < 2; i++) {
    const r = await api.next();
    console.log(JSON.stringify(r.headers));
  }
})();
"""


async def test_header_names_and_values_as_sent_any_case_and_spacing() -> None:
    """Names are keyed trimmed and in lower case, values trimmed of what String.trim strips
    (a no-break space too), on every answer: the names' keys are remembered after the first
    (the first 64 of them), and more distinct names than that still parse."""
    many = b"".join(b"X-Name-%d: v%d\r\n" % (i, i) for i in range(70))
    head = (
        b"HTTP/1.1 200 OK\r\nCONTENT-length: 2\r\nLambda-Runtime-Aws-Request-Id:r1\r\n"
        b"X-Spaced :  a b \t\r\nX-Nbsp:\xa0c\xa0\r\nX-Tab:\tf\r\nX-Colon: d:e\r\nX-Empty:\r\n"
    )
    answer = head + many + b"\r\n{}"
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(2):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()
            await reader.read()
        finally:
            writer.close()
            served.set()

    out, _ = await _run_node(HEADERS_SCRIPT, serve, served)
    expected = {
        "content-length": "2",
        "lambda-runtime-aws-request-id": "r1",
        "x-spaced": "a b",
        "x-nbsp": "c",
        "x-tab": "f",
        "x-colon": "d:e",
        "x-empty": "",
        **{f"x-name-{i}": f"v{i}" for i in range(70)},
    }
    assert [json.loads(line) for line in out.decode().splitlines()] == [expected, expected]


async def test_answers_split_across_reads_keep_their_bytes() -> None:
    """The client reads into one buffer that each read overwrites: an answer whose head, body or
    chunks come in several reads (and one larger than that buffer) still arrives whole."""
    big = json.dumps("x" * 200_000 + "é").encode()
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(big) + HEADERS + b"\r\n" + big
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        + HEADERS
        + b'\r\n4\r\n{"ab\r\n4\r\ncd"}\r\n0\r\n\r\n'
    )
    # Cut inside the head, inside the body, and between and inside chunks.
    pieces = [
        [plain[:20], plain[20:90], plain[90:5000], plain[5000:]],
        [chunked[:30], chunked[30:-20], chunked[-20:-12], chunked[-12:]],
    ]

    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answer in pieces:
                await reader.readuntil(b"\r\n\r\n")
                for piece in answer:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.05)  # each piece its own read
            await reader.read()
        finally:
            writer.close()
            served.set()

    out, _ = await _run_node(SCRIPT, serve, served)
    outcomes = [json.loads(line) for line in out.decode().splitlines()]
    assert outcomes == [{"body": big.decode(), "id": "r1"}, {"body": '{"abcd"}', "id": "r1"}]

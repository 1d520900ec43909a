"""The Runtime API endpoint's HTTP/1.1: the parser as a pure function of the bytes (split at
every offset), and the endpoint over a real socket: malformed input gets a clear status and
the connection closes, never a hang."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.runtimes import http11
from hubbub.runtimes.environment import Environment, Invocation
from hubbub.runtimes.http11 import CONTINUE, Malformed, Parser, Request

TIMEOUT = 10.0
POST = b"POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\nHost: x\r\n"


def _feed_split(data: bytes, max_body: int = 100) -> list[http11.Event]:
    """The events of ``data`` fed whole, checked equal to ``data`` fed at every split point."""
    whole = Parser(max_body).feed(data)
    for cut in range(1, len(data)):
        parser = Parser(max_body)
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == whole, cut
    return whole


def test_keep_alive_requests_with_content_length() -> None:
    data = (
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
        + POST
        + b'Content-Length: 7\r\nLambda-Runtime-Function-Error-Type: X\r\n\r\n{"a":1}'
    )
    first, second = _feed_split(data)
    assert first == Request("GET", "/2018-06-01/runtime/invocation/next", {"host": "x"}, b"")
    assert isinstance(second, Request)
    assert second.body == b'{"a":1}'
    assert second.headers["lambda-runtime-function-error-type"] == "X"
    assert second.keep_alive
    assert not second.too_large


def test_chunked_body_with_extensions_and_trailers() -> None:
    data = (
        POST + b'Transfer-Encoding: chunked\r\n\r\n3;x=y\r\n{"a\r\n4\r\n":1}\r\n0\r\nT: v\r\n\r\n'
    )
    (request,) = _feed_split(data)
    assert isinstance(request, Request)
    assert request.body == b'{"a":1}'


def test_path_is_decoded_without_query_and_absolute_form_is_read() -> None:
    data = b"GET http://127.0.0.1:9001/2018-06-01/runtime/invocation/a%2Db?x=1 HTTP/1.1\r\n\r\n"
    (request,) = Parser(100).feed(data)
    assert isinstance(request, Request)
    assert request.path == "/2018-06-01/runtime/invocation/a-b"


def test_connection_close_and_http_1_0() -> None:
    (closing,) = Parser(100).feed(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    (old,) = Parser(100).feed(b"GET / HTTP/1.0\r\n\r\n")
    (old_kept,) = Parser(100).feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert isinstance(closing, Request)
    assert not closing.keep_alive
    assert isinstance(old, Request)
    assert not old.keep_alive
    assert isinstance(old_kept, Request)
    assert old_kept.keep_alive


def test_expect_100_continue() -> None:
    events = Parser(100).feed(POST + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert events == [CONTINUE]


def test_a_body_over_the_limit_is_announced_then_dropped() -> None:
    big = POST + b"Content-Length: 200\r\n\r\n" + b"x" * 200
    following = b"GET /next HTTP/1.1\r\n\r\n"
    events = _feed_split(big + following)
    assert len(events) == 2
    first, second = events
    assert isinstance(first, Request)
    assert first.too_large
    assert first.body == b""
    assert first.keep_alive
    assert isinstance(second, Request)
    assert second.path == "/next"
    # Chunked: known only when the chunks pass the limit, the request comes at its end.
    chunked = (
        POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"c8\r\n" + b"x" * 200 + b"\r\n0\r\n\r\n"
    )
    events = _feed_split(chunked + following)
    assert [type(e) for e in events] == [Request, Request]
    assert isinstance(events[0], Request)
    assert events[0].too_large


def test_a_body_over_the_limit_after_expect_ends_the_connection() -> None:
    head = POST + b"Content-Length: 200\r\nExpect: 100-continue\r\n\r\n"
    parser = Parser(100)
    (request,) = parser.feed(head)
    assert isinstance(request, Request)
    assert request.too_large
    assert not request.keep_alive
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == []


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET /a HTTP/1.1 extra\r\n\r\n", 400, "malformed request line"),
        (b"GET /a HTTP/2.0\r\n\r\n", 505, "is not HTTP/1.x"),
        (b"GET /a FTP/1.0\r\n\r\n", 400, "malformed request line"),
        (b"GET a HTTP/1.1\r\n\r\n", 400, "malformed request target"),
        (b"GET /a HTTP/1.1\r\nNo colon\r\n\r\n", 400, "malformed header line"),
        (b"GET /a HTTP/1.1\r\nBad name: v\r\n\r\n", 400, "malformed header line"),
        (b"GET /a HTTP/1.1\r\n folded\r\n\r\n", 400, "malformed header line"),
        (POST + b"Content-Length: -1\r\n\r\n", 400, "invalid Content-Length"),
        (POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "conflicting"),
        (POST + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both"),
        (POST + b"Transfer-Encoding: gzip\r\n\r\n", 501, "is not supported"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid chunk size"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxyz", 400, "not followed by CRLF"),
        (b"GET /" + b"a" * (http11.MAX_HEAD + 10) + b" HTTP/1.1\r\n\r\n", 431, "over 65536"),
    ],
)
def test_malformed_requests(data: bytes, status: int, words: str) -> None:
    parser = Parser(100)
    events = parser.feed(data)
    assert len(events) == 1
    (event,) = events
    assert isinstance(event, Malformed)
    assert event.status == status
    assert words in event.message
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == []  # nothing after


def test_a_head_that_never_ends_is_refused_once_over_the_limit() -> None:
    parser = Parser(100)
    assert parser.feed(b"GET / HTTP/1.1\r\n") == []
    events = parser.feed(b"X: " + b"y" * http11.MAX_HEAD)
    assert [type(e) for e in events] == [Malformed]


@pytest.mark.parametrize(
    ("head", "fast"),
    [
        (b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x", True),
        (b"GET /2018-06-01/runtime/invocation/next HTTP/1.0", True),
        (b"GET /a%20b/c?x=1#f HTTP/1.1\r\nUser-Agent: curl/8\r\nAccept: */*", True),
        (POST + b"Content-Length: 7\r\nConnection: keep-alive, Upgrade", True),
        (POST.replace(b"1.1", b"1.0") + b"Connection: Keep-Alive\r\nContent-Length:  12 ", True),
        (POST + b"Connection: close\r\nX-Empty:\r\nX-Tab:\tv\t", True),
        # Left to the full parser, which gives the answer (and names what is wrong).
        (POST + b"Content-Length: 7\r\nContent-Length: 7", False),
        (POST + b"Transfer-Encoding: chunked", False),
        (POST + b"Content-Length: -1", False),
        (b"GET http://h/2018-06-01/runtime/invocation/next HTTP/1.1", False),
        (b"GET /a HTTP/2.0", False),
        (b"GET  /a HTTP/1.1", False),
        (b"GET /a HTTP/1.1\r\n Folded: x", False),
        (b"GET /a HTTP/1.1\r\nNo colon", False),
        (b"GET /\xe9 HTTP/1.1", False),
    ],
)
def test_the_fast_head_parser_agrees_with_the_full_one(head: bytes, fast: bool) -> None:
    simple = http11._parse_simple_head(head)
    if fast:
        assert simple == http11._parse_head(head.split(b"\r\n"))
    else:
        assert simple is None


def test_a_repeated_head_is_read_once() -> None:
    parser = Parser(100)
    get = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
    first, second = parser.feed(get + get)
    assert first is second  # the same bytes: the same request, not parsed again
    other = get.replace(b"Host: x", b"Host: y")
    (third,) = parser.feed(POST + b"Content-Length: 2\r\n\r\n{}" + other)[1:]
    assert third == Request("GET", "/2018-06-01/runtime/invocation/next", {"host": "y"}, b"")
    assert parser.feed(get)[0] == first


def test_answer_framing() -> None:
    data = http11.answer(202, b'{"status":"OK"}', {"A": "b"}, keep_alive=False)
    assert data == (
        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
        b'A: b\r\nConnection: close\r\n\r\n{"status":"OK"}'
    )


# -- the endpoint, over a socket --------------------------------------------------------------


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Environment]:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    environment = Environment("fn", sleeper, tmp_path, {}, on_exit=lambda env: None)
    await environment.start()
    yield environment
    await environment.stop(0.5)


async def _exchange(env: Environment, data: bytes) -> bytes:
    """Send ``data``, then read until the endpoint closes the connection."""
    host, port = env.runtime_api.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def test_malformed_input_is_answered_and_closed(env: Environment) -> None:
    answer = await _exchange(env, b"HELLO\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(b'"errorType":"BadRequest"}')
    assert b"malformed request line" in answer


async def test_pipelined_requests_answer_in_order(env: Environment) -> None:
    loop = asyncio.get_running_loop()
    invocation = Invocation("r1", b'{"e":1}', int(time.time() * 1000) + 5000, "arn", loop)
    result = asyncio.ensure_future(env.invoke(invocation))
    base = "/2018-06-01/runtime/invocation"
    answer = await _exchange(
        env,
        f"GET {base}/next HTTP/1.1\r\n\r\n".encode()
        + f"POST {base}/r1/response HTTP/1.1\r\nContent-Length: 2\r\n\r\n42".encode()
        + f"GET {base}/nope HTTP/1.1\r\nConnection: close\r\n\r\n".encode(),
    )
    assert await result == 42
    statuses = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", answer)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 202 Accepted", b"HTTP/1.1 404 Not Found"]


async def test_expect_100_continue_over_the_socket(env: Environment) -> None:
    host, port = env.runtime_api.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 2\r\n")
        writer.write(b"Expect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert final.startswith(b"HTTP/1.1 202 Accepted\r\n")
    finally:
        writer.close()

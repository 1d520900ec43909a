"""A function's pool hands a queued invocation to the environment whose runtime answers, within
that answer's read: the test plays the runtime over a real socket against the environment's
endpoint (its process only sleeps)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.runtimes.environment import Environment
from hubbub.runtimes.pool import FunctionProcess, Pool
from tests.runtimes.helpers import TIMEOUT

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")
PREFIX = "/2018-06-01/runtime"


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[Pool]:
    made = Pool(FunctionProcess("fn", SLEEPER, tmp_path, {}, reserved_concurrency=1))
    yield made
    await made.close(0.5)


def _invoke(pool: Pool, request_id: str) -> asyncio.Task[object]:
    deadline = int(time.time() * 1000) + 10_000
    payload = f'{{"id": "{request_id}"}}'.encode()
    return asyncio.ensure_future(
        pool.invoke(payload, request_id=request_id, deadline_ms=deadline, arn=ARN)
    )


async def _environment(pool: Pool) -> Environment:
    for _ in range(200):
        started = [env for env in pool._all if env.runtime_api]
        if started:
            return started[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no environment started")


class Runtime:
    """One keep-alive connection to an environment's Runtime API, as a runtime speaks it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def connect(cls, env: Environment) -> Runtime:
        host, port = env.runtime_api.rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    @staticmethod
    def next_request() -> bytes:
        return f"GET {PREFIX}/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n".encode()

    @staticmethod
    def response(request_id: str, body: bytes) -> bytes:
        head = (
            f"POST {PREFIX}/invocation/{request_id}/response HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def read_once(self) -> bytes:
        """What one read of the socket gives."""
        return await asyncio.wait_for(self.reader.read(65536), TIMEOUT)

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next whole answer (status, headers, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.read_once()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(rest) < length:
            rest += await self.read_once()
        self.buffer = rest[length:]
        return int(lines[0].split(" ")[1]), headers, rest[:length]

    def close(self) -> None:
        self.writer.close()


async def _queued(pool: Pool, count: int) -> None:
    for _ in range(200):
        if len(pool._waiters) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} invocations never queued")


async def test_a_queued_invocation_leaves_with_the_202_of_the_answer(pool: Pool) -> None:
    first = _invoke(pool, "first")
    env = await _environment(pool)
    runtime = await Runtime.connect(env)
    runtime.writer.write(Runtime.next_request())
    status, headers, body = await runtime.answer()
    assert (status, headers["lambda-runtime-aws-request-id"], body) == (
        200,
        "first",
        b'{"id": "first"}',
    )
    second = _invoke(pool, "second")
    await _queued(pool, 1)
    # A pipelining runtime (hubbub's Node.js bootstrap): its answer and its next GET in one
    # write get the 202 and the queued event in one write.
    runtime.writer.write(Runtime.response("first", b'{"ok": 1}') + Runtime.next_request())
    data = await runtime.read_once()
    assert data.startswith(b"HTTP/1.1 202 ")
    assert data.count(b"HTTP/1.1 ") == 2
    assert b"Lambda-Runtime-Aws-Request-Id: second\r\n" in data
    assert data.endswith(b'{"id": "second"}')
    assert await asyncio.wait_for(first, TIMEOUT) == {"ok": 1}
    runtime.writer.write(Runtime.response("second", b'{"ok": 2}'))
    status, _, _ = await runtime.answer()
    assert status == 202
    assert await asyncio.wait_for(second, TIMEOUT) == {"ok": 2}
    assert pool.size == 1
    runtime.close()


async def test_a_cancelled_queued_invocation_gives_its_turn_on(pool: Pool) -> None:
    first = _invoke(pool, "first")
    env = await _environment(pool)
    runtime = await Runtime.connect(env)
    runtime.writer.write(Runtime.next_request())
    await runtime.answer()
    gone = _invoke(pool, "gone")
    third = _invoke(pool, "third")
    await _queued(pool, 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    runtime.writer.write(Runtime.response("first", b"1") + Runtime.next_request())
    assert (await runtime.answer())[0] == 202
    status, headers, _ = await runtime.answer()
    assert (status, headers["lambda-runtime-aws-request-id"]) == (200, "third")
    assert await asyncio.wait_for(first, TIMEOUT) == 1
    runtime.writer.write(Runtime.response("third", b"3"))
    assert (await runtime.answer())[0] == 202
    assert await asyncio.wait_for(third, TIMEOUT) == 3
    runtime.close()


async def test_an_invocation_cancelled_before_the_runtime_took_it_keeps_the_environment(
    pool: Pool,
) -> None:
    first = _invoke(pool, "first")
    env = await _environment(pool)
    runtime = await Runtime.connect(env)
    runtime.writer.write(Runtime.next_request())
    await runtime.answer()
    second = _invoke(pool, "second")
    await _queued(pool, 1)
    # A runtime that waits for the 202 before asking again (awslambdaric): the queued invocation
    # is the environment's from the answer on, and its caller gives up before the runtime asks.
    runtime.writer.write(Runtime.response("first", b"1"))
    assert (await runtime.answer())[0] == 202
    assert await asyncio.wait_for(first, TIMEOUT) == 1
    assert env.current is not None
    assert env.current.request_id == "second"
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert not env.retiring  # never sent to the runtime: nothing to kill
    third = _invoke(pool, "third")
    runtime.writer.write(Runtime.next_request())
    status, headers, _ = await runtime.answer()
    assert (status, headers["lambda-runtime-aws-request-id"]) == (200, "third")
    runtime.writer.write(Runtime.response("third", b"3"))
    assert (await runtime.answer())[0] == 202
    assert await asyncio.wait_for(third, TIMEOUT) == 3
    assert pool.pids == [env.pid]
    runtime.close()

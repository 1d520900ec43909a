"""The ``bodies`` target: random text messages; each reply must be the one the pure route
selector predicts (echo route, whoami, or ``$default``)."""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections import Counter
from typing import Any

from bench.fuzz.env import MAX_FRAME, Env
from bench.fuzz.values import rand_json, rand_text
from bench.fuzz.wire import Peer, close_payload, frame, open_websocket


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

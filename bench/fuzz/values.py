"""Random values the case generators share: text, bytes, JSON, percent-encoded path segments."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

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

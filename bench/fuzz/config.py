"""The ``config`` target: structured mutations of a valid config rendered to TOML; ``load_config``
must return a Config without NaN or raise ConfigError."""

from __future__ import annotations

import math
import random
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from bench.fuzz.env import Env
from bench.fuzz.values import rand_text


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

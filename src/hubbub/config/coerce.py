"""Checking one value against its key's type, as loading reads it (annotations are text)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from hubbub.config.model import CHOICES
from hubbub.errors import ConfigError

T = TypeVar("T")


def read_section(cls: type[T], raw: Any, prefix: str) -> T:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, "must be a table")
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    for key, value in raw.items():
        if key not in types:
            allowed = ", ".join(sorted(types))
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known: {allowed})")
        values[key] = coerce(value, str(types[key]), f"{prefix}.{key}")
    return cls(**values)


def coerce(value: Any, type_name: str, key: str) -> Any:
    """Check one value against the annotation (given as text: annotations are postponed)."""
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        if value < 0:
            raise ConfigError(key, f"must not be negative, got {value}")
        return value
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(key, f"must not be negative, got {value}")
        return float(value)
    if type_name in CHOICES:
        words, fold = CHOICES[type_name]
        word = value.lower() if fold and isinstance(value, str) else value
        if word not in words:
            quoted = [f'"{w}"' for w in words]
            choice = " or ".join(quoted) if len(words) == 2 else f"one of {', '.join(quoted)}"
            raise ConfigError(key, f"must be {choice}, got {value!r}")
        return word
    if type_name == "str":
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if type_name == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    if type_name == "Path | None":
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a path string, got {value!r}")
        return Path(value) if value else None  # "" = the default
    raise AssertionError(f"no coercion for {type_name}")  # pragma: no cover - programming error


def string_table(raw: Any, key: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{key}.{name}", f"must be a string or number, got {value!r}")
        out[str(name)] = str(value)
    return out

"""The ``[presence]`` section: defaults, types, and a route that must exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubbub.config import PresenceConfig, build_config
from hubbub.errors import ConfigError


def test_defaults() -> None:
    config = build_config({}, base_dir=Path("."))
    assert config.presence == PresenceConfig(rooms=(), max_data_bytes=1024, grace=15.0, route="")


def test_values_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"presence\.rooms"):
        build_config({"presence": {"rooms": "lobby"}}, base_dir=Path("."))
    with pytest.raises(ConfigError, match=r"presence\.grace"):
        build_config({"presence": {"grace": -1}}, base_dir=Path("."))


def test_the_route_must_be_configured() -> None:
    with pytest.raises(ConfigError, match=r"presence.route.*\$presence"):
        build_config({"presence": {"route": "$presence"}}, base_dir=Path("."))
    raw = {
        "presence": {"route": "$presence", "rooms": ["chat:*"]},
        "routes": {"$presence": {"handler": "h.f"}},
    }
    config = build_config(raw, base_dir=Path("."))
    assert config.presence.route == "$presence"
    assert config.presence.rooms == ("chat:*",)

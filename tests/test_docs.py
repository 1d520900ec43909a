"""Every config key and CLI flag is documented, and documentation links resolve."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from hubbub import cli, config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

SECTIONS = {
    "api": config.ApiConfig,
    "server": config.ServerConfig,
    "management": config.ManagementConfig,
    "limits": config.LimitsConfig,
    "static": config.StaticConfig,
    "log": config.LogConfig,
    "authorizer": config.AuthorizerConfig,
    "authorizer.jwt": config.JwtConfig,
    "history": config.HistoryConfig,
    "presence": config.PresenceConfig,
}


def _documented_keys() -> str:
    return (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        (s, f.name)
        for s, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if "from_keys" not in f.metadata  # built from other keys, not a key of its own
    ],
)
def test_every_config_key_is_documented(section: str, key: str) -> None:
    text = _documented_keys()
    assert f"`[{section}]`" in text or f"[{section}]" in text
    assert f"`{key}`" in text, f"{section}.{key} missing from docs/configuration.md"


@pytest.mark.parametrize(
    "key", ["store.url", "store.key_prefix", "cluster.node_id", "cluster.heartbeat_interval"]
)
def test_store_and_cluster_keys_are_documented(key: str) -> None:
    assert f"`{key}`" in _documented_keys()


def test_every_cli_command_and_flag_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():  # type: ignore[union-attr]
        assert f"hubbub {name}" in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in text, f"{name} {flag} missing from docs/cli.md"


def test_markdown_links_resolve() -> None:
    broken = []
    for md in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", md.read_text()):
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, broken

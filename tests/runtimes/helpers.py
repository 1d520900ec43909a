"""What the runtime tests share: a config with one process-run function, a client that talks."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import websockets

from hubbub.config import Config, load_config

TIMEOUT = 20.0 * float(os.environ.get("HUBBUB_TEST_TIME_SCALE", "1"))


def write_config(tmp_path: Path, routes: dict[str, str], extra: str = "") -> Path:
    """A hubbub.toml on free ports; ``routes`` maps route keys to their TOML body lines."""
    text = "[server]\nport = 0\n[management]\nport = 0\ntls = false\n" + extra + "\n"
    for key, body in routes.items():
        text += f'\n[routes."{key}"]\n' + textwrap.dedent(body).strip() + "\n"
    config = tmp_path / "hubbub.toml"
    config.write_text(text)
    return config


def config(tmp_path: Path, routes: dict[str, str], extra: str = "") -> Config:
    return load_config(write_config(tmp_path, routes, extra), env={})


def write(path: Path, text: str, *, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    if executable:
        path.chmod(0o755)
    return path


async def ask(ws: Any, message: dict[str, Any]) -> Any:
    """Send a message, return the next frame (JSON when it is)."""
    await ws.send(json.dumps(message))
    reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
    try:
        return json.loads(reply)
    except ValueError:
        return reply


def connect(url: str) -> Any:
    return websockets.connect(url, open_timeout=TIMEOUT)

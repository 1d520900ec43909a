"""Public test helpers: run a real gateway in-process on free ports.

async with run_gateway({"routes": {"$default": {"handler": "app.handler"}}}, base_dir=tmp) as gw:
    ws_url, api_url = gw.websocket_url, gw.management_url
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from hubbub.config import Config, build_config
from hubbub.gateway.app import Gateway


@functools.cache
def _state_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="hubbub-test-state-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def make_config(raw: Mapping[str, Any] | None = None, *, base_dir: Path | str = ".") -> Config:
    """A Config from a dict shaped like hubbub.toml, with both listeners on port 0."""
    data: dict[str, Any] = {
        k: (dict(v) if isinstance(v, Mapping) else v) for k, v in (raw or {}).items()
    }
    data.setdefault("server", {}).setdefault("port", 0)
    management = data.setdefault("management", {})
    management.setdefault("port", 0)
    management.setdefault("tls_port", 0)
    # Keep tests' CA out of the user's own state folder.
    management.setdefault("state_dir", str(_state_dir()))
    return build_config(data, base_dir=Path(base_dir).resolve())


@contextlib.asynccontextmanager
async def run_gateway(
    raw: Mapping[str, Any] | Config | None = None, *, base_dir: Path | str = "."
) -> AsyncIterator[Gateway]:
    """Start a gateway on free loopback ports; drain and stop it on exit."""
    config = raw if isinstance(raw, Config) else make_config(raw, base_dir=base_dir)
    gateway = Gateway(config)
    try:
        await gateway.start()
    except BaseException:
        await gateway.close()  # what did start (a listener, the store) is released
        raise
    try:
        yield gateway
    finally:
        await gateway.close()

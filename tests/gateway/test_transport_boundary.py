"""The transport boundary: one gateway module speaks aiohttp, everything else speaks hubbub.wire.

Read from the source with ``ast`` (no imports run), so a new module that reaches for aiohttp, or a
wire module that grows a dependency, fails here with its file and line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType

from hubbub.wire.close import PEER_ERROR_REASONS, CloseCode
from hubbub.wire.kinds import MessageKind

SRC = Path(__file__).resolve().parents[2] / "src" / "hubbub"

# The gateway modules that may import aiohttp: the adapter, the public listener's upgrade, its
# frame reading, and its limits on a connection before aiohttp parses the request (they subclass
# aiohttp's request handler and site). The lean transport (lean_upgrade, lean_head, lean_socket,
# lean_frames) imports none of aiohttp: it builds on the adapter's Socket, hands aiohttp's request
# handler the connections it does not take through http_limits' factory, and unmasks with
# aiohttp's C helper through frames_aiohttp (mask_in_place).
ADAPTER = {"transport_aiohttp.py", "upgrade_aiohttp.py", "frames_aiohttp.py", "http_limits.py"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, with its line (relative imports resolved to ``hubbub.``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, ("hubbub." if node.level else "") + (node.module or "")))
    return found


def test_only_the_adapter_imports_aiohttp() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line} imports {name}"
        for path in sorted((SRC / "gateway").rglob("*.py"))
        if path.name not in ADAPTER or path.parent != SRC / "gateway"
        for line, name in _imports(path)
        if name == "aiohttp" or name.startswith("aiohttp.")
    ]
    assert offenders == []


def test_the_adapter_does_import_aiohttp() -> None:
    # Guards the check above against a path that no longer names the adapter.
    names = {name for _, name in _imports(SRC / "gateway" / "transport_aiohttp.py")}
    assert "aiohttp" in names


def test_wire_is_pure() -> None:
    """hubbub.wire imports only the standard library (no asyncio), orjson and itself."""
    allowed = set(sys.stdlib_module_names) - {"asyncio"} | {"orjson"}
    offenders = [
        f"{path.relative_to(SRC)}:{line} imports {name}"
        for path in sorted((SRC / "wire").rglob("*.py"))
        for line, name in _imports(path)
        if not name.startswith("hubbub.wire") and name.partition(".")[0] not in allowed
    ]
    assert offenders == []


def test_message_kinds_match_aiohttp() -> None:
    """The adapter hands out aiohttp's message kinds untranslated: the values must agree."""
    for kind in MessageKind:
        assert WSMsgType[kind.name] == kind


def test_peer_error_codes_match_aiohttp() -> None:
    """aiohttp reports a peer's protocol errors with these codes; each has a reason."""
    for code in (
        WSCloseCode.PROTOCOL_ERROR,
        WSCloseCode.INVALID_TEXT,
        WSCloseCode.MESSAGE_TOO_BIG,
    ):
        assert code in PEER_ERROR_REASONS
        assert CloseCode(code) in (
            CloseCode.PROTOCOL_ERROR,
            CloseCode.INVALID_PAYLOAD,
            CloseCode.MESSAGE_TOO_BIG,
        )

"""bench.instructions reads a callgrind dump's totals (the measurement itself needs valgrind and
takes a minute: run ``python -m bench.instructions hubbub aiohttp``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import WSMsgType, web

pytest.importorskip("picows", reason="the bench extra (picows) is not installed")

from bench import instructions, servers
from bench.instructions import total_instructions


def test_the_totals_line_is_read_not_the_zeroed_summary(tmp_path: Path) -> None:
    dump = tmp_path / "cg.out.1"
    dump.write_text("events: Ir\nsummary: 0\n\nfn=(1) main\n3 42\n\ntotals: 123374424\n")
    assert total_instructions(dump) == 123_374_424


def test_a_dump_without_totals_is_an_error(tmp_path: Path) -> None:
    dump = tmp_path / "cg.out.1"
    dump.write_text("version: 1\nevents: Ir\n")
    with pytest.raises(ValueError, match="no totals"):
        total_instructions(dump)


def test_hubbub_runtimes_runs_the_runtime_rows_config_with_absolute_code_paths(
    tmp_path: Path,
) -> None:
    cmd, url = instructions._command("hubbub-runtimes", 9101, 9102, tmp_path)
    config = Path(cmd[cmd.index("--config") + 1])
    assert config.parent == tmp_path
    text = config.read_text()
    assert '"../functions/' not in text
    assert f'code = "{servers.FUNCTIONS}/node"' in text  # the node-echo row's function
    assert url == "ws://127.0.0.1:9101/dev"


async def test_the_handshake_cycle_closes_with_a_close_frame_as_the_connect_scenario() -> None:
    """bench.instructions --handshakes counts the cycle python -m bench times: the client sends
    a close frame after the 101, then closes the TCP connection (bench.wsclient.Client.close).
    Without the frame aiohttp's side is a bare end of stream, another ~70 k instructions."""
    seen: list[WSMsgType] = []

    async def entry(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        message = await ws.receive()
        seen.append(message.type)
        return ws

    app = web.Application()
    app.router.add_get("/", entry)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await instructions._handshakes(f"ws://127.0.0.1:{port}/", 4, concurrency=2)
    finally:
        await runner.cleanup()
    assert seen == [WSMsgType.CLOSE] * 4

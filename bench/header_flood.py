"""Half-sent handshakes and silent management connections: what they cost the gateway.

    python -m bench.header_flood                       # 300 handshakes, 2000 silent connections
    python -m bench.header_flood --handshakes 300 --headers 119 --header-bytes 16000

The gateway runs as a ``hubbub serve`` subprocess with its defaults (so its memory is measured
alone, from ``/proc/PID/status``). Then:

1. ``--handshakes`` connections each send an upgrade request of ``--headers`` headers of
   ``--header-bytes`` bytes, without the blank line that would end it, and stay open: the RSS
   growth is what half-sent handshakes hold (``[limits] max_header_bytes`` and
   ``max_pending_handshakes`` bound it);
2. ``--silent`` connections to the management port send nothing: how many are still open
   ``--wait`` seconds later (``[management] header_timeout`` closes them).

Loopback only; everything ends with the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

UPGRADE = (
    b"GET /dev HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
CONFIG = """
[server]
port = 0
[management]
port = 0
tls = false
"""


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def _start(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    (workdir / "hubbub.toml").write_text(CONFIG)
    hubbub = Path(sys.executable).parent / "hubbub"
    command = [str(hubbub)] if hubbub.exists() else [sys.executable, "-m", "hubbub.cli"]
    process = subprocess.Popen(
        [*command, "serve", "--config", str(workdir / "hubbub.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    assert process.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < 2:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("hubbub serve did not start")
        match = re.match(rb"hubbub: (websocket|management)\s+(\S+)", line)
        if match:
            urls[match.group(1).decode()] = match.group(2).decode()
    return process, urls["websocket"], urls["management"]


def _host_port(url: str) -> tuple[str, int]:
    match = re.match(r"\w+://([^/]+):(\d+)", url)
    assert match, url
    return match.group(1).strip("[]"), int(match.group(2))


async def _flood(host: str, port: int, count: int, data: bytes) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            await writer.drain()
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return writers


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, ws_url, management_url = _start(Path(tmp))
        try:
            await asyncio.sleep(0.5)
            before = _rss_mb(process.pid)
            head = UPGRADE + b"".join(
                b"X-Pad-%d: %s\r\n" % (i, b"p" * args.header_bytes) for i in range(args.headers)
            )
            pending = await _flood(*_host_port(ws_url), args.handshakes, head)
            await asyncio.sleep(2)
            after = _rss_mb(process.pid)
            print(
                f"{args.handshakes} half-sent handshakes of {len(head):,} bytes: "
                f"RSS {before:.0f} MB -> {after:.0f} MB"
            )
            silent = []
            host, port = _host_port(management_url)
            for _ in range(args.silent):
                with contextlib.suppress(OSError):
                    silent.append(await asyncio.open_connection(host, port))
            await asyncio.sleep(args.wait)
            still_open = sum(1 for reader, _ in silent if not reader.at_eof())
            print(
                f"{len(silent)} silent management connections: {still_open} still open "
                f"after {args.wait:g} s"
            )
            for writer in [*pending, *(w for _, w in silent)]:
                writer.close()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.header_flood", description=__doc__)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--headers", type=int, default=119)
    parser.add_argument("--header-bytes", type=int, default=16_000)
    parser.add_argument("--silent", type=int, default=2000)
    parser.add_argument("--wait", type=float, default=12.0)
    args = parser.parse_args()
    if os.name != "posix" or not Path("/proc/self/status").exists():
        sys.exit("bench.header_flood reads /proc: Linux only")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

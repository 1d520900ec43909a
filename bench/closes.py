"""Simultaneous closes: N connections reset at once must give N ``$disconnect``, each once.

    python -m bench.closes --connections 20000 --workers 2 --store redis://127.0.0.1:6379
    python -m bench.closes --connections 2000                    # a quick check, one process

The gateway runs as ``hubbub serve`` (``--workers`` processes; more than one needs a Redis
``--store``) with a ``$disconnect`` handler that awaits 1 ms (a database write, say) and appends
its connection id to a file; the invocation cap is ``--max-concurrent-invocations``. The clients
are ``--client-processes`` processes of bare non-blocking sockets (a process holds at most its
open-file limit of them), spread over the source addresses 127.0.0.2 onwards. Once every
connection is open (``/health``), all client processes reset theirs at the same moment (TCP RST,
``SO_LINGER`` 0), then the file is read until it has N lines or ``--timeout`` passes.

The summary: connections opened, ``$disconnect`` events, distinct ids, duplicates, the ids
missing, the time from the resets to the last event, and whether the gateway logged any
``rejected`` invocation. Then the gateway gets SIGTERM and its exit status is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from bench.soak import raise_fd_limit, start_server, stop_server

APP = '''\
"""Handlers for bench/closes.py: $disconnect records its connection id, once per event."""

import asyncio
import os

EVENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "disconnects.log")


async def disconnect(event, context):
    await asyncio.sleep(0.001)  # as a handler writing to a database would
    line = event["requestContext"]["connectionId"] + "\\n"
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one O_APPEND write: whole lines, also from two workers
    finally:
        os.close(fd)
    return {"statusCode": 200}
'''

CONFIG = """\
[api]
name = "closes"
stage = "dev"

[server]
host = "127.0.0.1"
port = 0
workers = {workers}
shutdown_grace = 60

[management]
host = "127.0.0.1"
port = 0

[store]
url = "{store}"
key_prefix = "hubbub-closes-{tag}:"

[limits]
max_concurrent_invocations = {cap}

[log]
level = "warning"

[routes]
"$disconnect" = {{ handler = "app.disconnect" }}
"""

UPGRADE = (
    b"GET /dev HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


# -- a client process ------------------------------------------------------------------------
@dataclass(frozen=True)
class Share:
    """One client process's part: ``count`` sockets to ``host:port``."""

    index: int
    count: int
    host: str
    port: int
    sources: int  # source addresses 127.0.0.2 onwards


def _client(share: Share, opened: Any, go: EventType) -> None:
    raise_fd_limit()
    asyncio.run(_client_main(share, opened, go))


async def _client_main(share: Share, opened: Any, go: EventType) -> None:
    index, count, host, port, sources = (
        share.index,
        share.count,
        share.host,
        share.port,
        share.sources,
    )
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []

    async def one(n: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((f"127.0.0.{2 + (index * count + n) % sources}", 0))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 30)
            await loop.sock_sendall(sock, UPGRADE)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 30)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(answer.split(b"\r\n", 1)[0].decode())
        except (OSError, TimeoutError) as exc:
            sock.close()
            print(f"client {index}: connect failed: {exc!r}", file=sys.stderr)
            return
        socks.append(sock)

    for start in range(0, count, 200):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 200))))
    with opened.get_lock():
        opened.value += len(socks)
    await loop.run_in_executor(None, go.wait)
    linger = struct.pack("ii", 1, 0)
    for sock in socks:  # all at once: a reset each, no closing handshake
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.close()


# -- the run -----------------------------------------------------------------------------------
def _health(management_url: str) -> dict[str, Any]:
    base = management_url.rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def run(options: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="hubbub-closes-"))
    config = CONFIG.format(
        workers=options.workers,
        store=options.store,
        tag=os.getpid(),
        cap=options.max_concurrent_invocations,
    )
    server = start_server(workdir, app=APP, config=config)
    events = workdir / "disconnects.log"
    host, port = server.websocket_url.split("//")[1].split("/")[0].rsplit(":", 1)
    per_process = -(-options.connections // options.client_processes)
    opened = multiprocessing.Value("i", 0)
    go = multiprocessing.Event()
    clients = []
    try:
        for i in range(options.client_processes):
            count = min(per_process, options.connections - i * per_process)
            process = multiprocessing.Process(
                target=_client,
                args=(Share(i, count, host, int(port), options.source_addresses), opened, go),
            )
            process.start()
            clients.append(process)
        started = time.monotonic()
        while time.monotonic() - started < options.timeout:
            with opened.get_lock():
                ready = opened.value
            if ready >= options.connections:
                break
            if all(not p.is_alive() for p in clients):
                break
            time.sleep(0.5)
        with opened.get_lock():
            ready = opened.value
        print(f"closes: {ready} connections open; resetting them all", flush=True)
        reset_at = time.monotonic()
        go.set()
        last_count, last_change = 0, reset_at
        while time.monotonic() - reset_at < options.timeout:
            lines = events.read_text().splitlines() if events.exists() else []
            if len(lines) != last_count:
                last_count, last_change = len(lines), time.monotonic()
            if last_count >= ready:
                break
            time.sleep(0.2)
        time.sleep(2)  # room for duplicates to show up
        lines = events.read_text().splitlines() if events.exists() else []
        health_after = _health(server.management_url)
    finally:
        go.set()
        for process in clients:
            process.join(30)
        exit_code = stop_server(server, timeout=120)
    seen = Counter(lines)
    stderr = server.stderr_path.read_text(errors="replace")
    summary = {
        "connections": options.connections,
        "opened": ready,
        "workers": options.workers,
        "store": options.store,
        "max_concurrent_invocations": options.max_concurrent_invocations,
        "disconnect_events": len(lines),
        "distinct": len(seen),
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "missing": ready - len(seen),
        "seconds_to_last_event": round(last_change - reset_at, 2),
        "connections_after_on_one_node": health_after.get("connections"),
        "rejected_lines": stderr.count("rejected"),
        "error_lines": sum(1 for line in stderr.splitlines() if " ERROR " in line),
        "server_exit_code": exit_code,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.closes", description=__doc__.split("\n")[0])
    p.add_argument("--connections", "-n", type=int, default=2000)
    p.add_argument("--workers", type=int, default=1, help="gateway processes (>1 needs Redis)")
    p.add_argument("--store", default="memory://", help="memory:// or redis://host:port")
    p.add_argument("--client-processes", type=int, default=0, help="0: one per 9,000 sockets")
    p.add_argument("--max-concurrent-invocations", type=int, default=1000)
    p.add_argument("--source-addresses", type=int, default=8, help="127.0.0.2 onwards")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--output", type=Path, default=None, help="write the summary as JSON")
    options = p.parse_args(argv)
    if options.client_processes <= 0:
        options.client_processes = max(1, -(-options.connections // 9000))
    summary = run(options)
    print(json.dumps(summary, indent=2))
    if options.output is not None:
        options.output.write_text(json.dumps(summary, indent=2) + "\n")
    ok = (
        summary["opened"] == options.connections
        and summary["distinct"] == summary["opened"]
        and summary["duplicates"] == 0
        and summary["rejected_lines"] == 0
        and summary["server_exit_code"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

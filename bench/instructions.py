"""Instructions per routed message under callgrind: a server's CPU work, without the noise.

    python -m bench.instructions hubbub aiohttp picows            # the routed-default message
    python -m bench.instructions hubbub --message echo            # {"action": "echo", ...}
    python -m bench.instructions hubbub hubbub-async aiohttp --handshakes   # per handshake

With ``--handshakes`` the unit is one handshake instead: 10 at a time, each closed by the client
right after the 101 (the ``connect`` scenario's cycle); ``hubbub`` runs its ``def`` ``$connect``
(bench/hubbub_app/hubbub.toml), ``hubbub-async`` the ``async`` one.

Wall-clock numbers move with whatever else the machine runs; instruction counts do not. Each server
runs under ``valgrind --tool=callgrind`` (pinned to core 0) with instrumentation off. A closed loop
of 100 connections (picows, this process, core 1) warms it up, then sends N and then 3N messages
with the instrumentation on. The difference of the two counts over 2N is the server's user-space
instructions per message: start-up, connects and closes cancel out. System calls are not counted
(the ``write`` of a reply is kernel work); ``python -m bench`` reports those in µs per message.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import servers
from bench.procstat import pin
from bench.wsclient import echo_template

SERVER_NAMES = ("hubbub", "hubbub-async", "aiohttp", "picows")


class _Loop(WSListener):
    """One connection of the closed loop: the next message as soon as the reply is in."""

    def __init__(self, template: bytes) -> None:
        super().__init__()
        self.template = template
        self.transport: WSTransport | None = None
        self.left = 0
        self.seq = 0
        self.done: asyncio.Future[None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self, count: int) -> asyncio.Future[None]:
        self.left = count
        self.done = asyncio.get_running_loop().create_future()
        self._send()
        return self.done

    def _send(self) -> None:
        assert self.transport is not None
        self.seq += 1
        self.transport.send(WSMsgType.TEXT, self.template % (self.seq, 0))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        self.left -= 1
        if self.left > 0:
            self._send()
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)


async def _closed_loop(url: str, messages: int, connections: int, template: bytes) -> None:
    clients = []
    for _ in range(connections):
        _, client = await ws_connect(lambda: _Loop(template), url)
        assert isinstance(client, _Loop)
        clients.append(client)
    await asyncio.gather(*(c.start(messages // connections) for c in clients))
    for client in clients:
        assert client.transport is not None
        client.transport.disconnect()


async def _handshakes(url: str, count: int, concurrency: int = 10) -> None:
    """``count`` handshakes, ``concurrency`` at a time, each closed right after the 101."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            transport, _ = await ws_connect(WSListener, url)
            transport.disconnect()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await asyncio.sleep(1.0)  # the server's side of the last closes, inside the count


def total_instructions(dump: Path) -> int:
    """The ``totals:`` count of one callgrind dump file (its ``summary:`` line can read 0 when
    the counters were zeroed during the run)."""
    for line in reversed(dump.read_text(errors="replace").splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {dump}")


def _command(name: str, port: int, mgmt: int) -> tuple[list[str], str]:
    if name in ("hubbub", "hubbub-async"):
        config = servers.HUBBUB_APP / (
            "hubbub.toml" if name == "hubbub" else "hubbub-async-connect.toml"
        )
        return servers.hubbub_command(config, port, mgmt), f"ws://127.0.0.1:{port}/dev"
    module = f"bench.peers.bare_{name}"
    return [sys.executable, "-m", module, "--port", str(port)], f"ws://127.0.0.1:{port}/"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing listens on {port} after {timeout:g}s")


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def measure(
    name: str, message: str, n: int, connections: int, work: Path, *, handshakes: bool = False
) -> float:
    """Instructions per message (or handshake) of server ``name`` (see the module docstring)."""
    port, mgmt = servers.free_ports(2)
    cmd, url = _command(name, port, mgmt)
    out = work / f"{name}.out"
    env = {**servers.AWS_ENV, "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{mgmt}/dev"}
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    log = work / f"{name}.log"
    proc = servers._spawn([*valgrind, f"--callgrind-out-file={out}", *cmd], log, env=env)
    template = echo_template({"message": "chat"} if message == "chat" else {"action": message})
    try:
        _wait_listening(port, proc, 600)
        asyncio.run(_closed_loop(url, 20 * connections, connections, template))  # warm-up
        counts = []
        for count in (n, 3 * n):
            _control(proc.pid, "-z")
            _control(proc.pid, "-i", "on")
            if handshakes:
                asyncio.run(_handshakes(url, count))
            else:
                asyncio.run(_closed_loop(url, count, connections, template))
            _control(proc.pid, "-i", "off")
            _control(proc.pid, "-d")
            dumps = sorted(work.glob(f"{name}.out.*"), key=lambda p: p.stat().st_mtime)
            counts.append(total_instructions(dumps[-1]))
    finally:
        servers._stop_group(proc)
    return (counts[1] - counts[0]) / (2 * n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("servers", nargs="+", choices=SERVER_NAMES)
    parser.add_argument("--message", default="chat", help='"chat" (default) or an action name')
    parser.add_argument("-n", type=int, help="messages of the short pass (default 4000)")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument(
        "--handshakes", action="store_true", help="count per handshake (default -n 300)"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    pin(1)
    with tempfile.TemporaryDirectory(prefix="hubbub-instructions-") as tmp:
        for name in args.servers:
            n = args.n or (300 if args.handshakes else 4000)
            per = measure(
                name, args.message, n, args.connections, Path(tmp), handshakes=args.handshakes
            )
            unit = "handshake" if args.handshakes else f"{args.message} message"
            print(f"{name:12s} {per:,.0f} instructions per {unit}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

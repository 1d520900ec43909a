"""Instructions per routed message under callgrind: a server's CPU work, without the noise.

    python -m bench.instructions hubbub aiohttp picows            # the routed-default message
    python -m bench.instructions hubbub --message echo            # {"action": "echo", ...}
    python -m bench.instructions hubbub hubbub-async aiohttp --handshakes   # per handshake
    python -m bench.instructions hubbub picows --fanout 1000      # per fan-out delivery
    python -m bench.instructions hubbub-runtimes --message echo   # the node-echo row's gateway
    python -m bench.instructions hubbub-runtimes --message post   # the node-post row's message

``hubbub-runtimes`` is hubbub with bench/hubbub_app/hubbub-runtimes.toml (the runtime rows): only
hubbub's own process is counted, not the Node.js execution environments it starts (they run
natively, outside valgrind).

With ``--handshakes`` the unit is one handshake instead: 10 at a time, each closed by the client
right after the 101 with a close frame, then the TCP close (the ``connect`` scenario's cycle);
``hubbub`` runs its ``def`` ``$connect`` (bench/hubbub_app/hubbub.toml), ``hubbub-async`` the
``async`` one.

With ``--fanout MEMBERS`` the unit is one delivery of a room send (the ``fanout`` scenario's
cycle): MEMBERS connections join the room the way the load generator joins them (hubbub: the
management API; a bare peer: its ``join`` message), then one more connection publishes (hubbub's
``publish`` route, which sends through ``context.gateway.rooms``; a bare peer's ``publish``),
``--window`` publishes in flight until every member has each. The passes send N and 3N publishes
(default N = 20 000 deliveries' worth); the difference over the difference in deliveries is the
server's user-space instructions per delivery, its share of the publish's own routing included.

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
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import servers
from bench.loadgen import Fanout, Member, Publisher, join_all
from bench.procstat import pin, raise_nofile
from bench.wsclient import Counters, connect_many, echo_template

SERVER_NAMES = ("hubbub", "hubbub-async", "aiohttp", "picows", "hubbub-runtimes")


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
    """``count`` handshakes, ``concurrency`` at a time, each closed right after the 101 as the
    ``connect`` scenario's client closes it (bench.wsclient.Client.close): a close frame, then
    the TCP close. Without the frame aiohttp's side is an abrupt end of stream, about 70 k
    instructions dearer per handshake than the close handshake the benchmark times."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            transport, _ = await ws_connect(WSListener, url)
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await asyncio.sleep(1.0)  # the server's side of the last closes, inside the count


class _Counted(Fanout):
    """The load generator's fan-out, stopped after ``left`` more publishes."""

    left = 0

    def publish_next(self) -> None:
        if self.left > 0:
            self.left -= 1
            super().publish_next()


class _Room:
    """MEMBERS joined connections and a publisher, reused by both passes."""

    def __init__(self, spec: dict[str, Any], window: int) -> None:
        self.spec = spec
        self.counters = Counters()
        self.publisher = Publisher(spec, self.counters)
        self.fanout = _Counted(spec["members"], window, self.publisher)
        self.members: list[Any] = []

    async def open(self) -> None:
        spec, counters = self.spec, self.counters
        self.members = await connect_many(
            spec["members"],
            lambda: Member(spec["dialect"], counters, self.fanout),
            spec["url"],
            counters,
            concurrency=50,
            read_buffer=4096,
        )
        await join_all(spec, self.members, counters)
        if counters.total or len(self.members) != spec["members"]:
            raise RuntimeError(f"{len(self.members)} members joined; errors {counters.as_dict()}")
        await self.publisher.open()
        await self.run(4)  # every member has each: the room is complete, the paths warm

    async def run(self, publishes: int, timeout: float = 600.0) -> None:
        """Send ``publishes`` and wait until every member has received each."""
        fanout = self.fanout
        fanout.left = publishes
        fanout.running = True
        fanout.start()
        deadline = time.monotonic() + timeout
        while fanout.left or fanout.pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(fanout.pending)} publishes did not reach every member")
            await asyncio.sleep(0.01)
        fanout.running = False
        if self.counters.total:
            raise RuntimeError(f"errors during the pass: {self.counters.as_dict()}")

    async def close(self) -> None:
        for member in self.members:
            member.close()
        await self.publisher.close()
        await asyncio.sleep(0.5)


def total_instructions(dump: Path) -> int:
    """The ``totals:`` count of one callgrind dump file (its ``summary:`` line can read 0 when
    the counters were zeroed during the run)."""
    for line in reversed(dump.read_text(errors="replace").splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {dump}")


def _command(name: str, port: int, mgmt: int, work: Path) -> tuple[list[str], str]:
    if name == "hubbub-runtimes":
        if shutil.which("node") is None:
            raise RuntimeError("hubbub-runtimes runs Node.js functions: node is not installed")
        servers.npm_ci(
            servers.FUNCTIONS / "node", "@aws-sdk/client-apigatewaymanagementapi", True, work
        )
        config = servers.hubbub_runtimes_config(work, port, mgmt)
        return servers.hubbub_command(config, port, mgmt), f"ws://127.0.0.1:{port}/dev"
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


def _dump(pid: int, name: str, work: Path) -> int:
    _control(pid, "-i", "off")
    _control(pid, "-d")
    dumps = sorted(work.glob(f"{name}.out.*"), key=lambda p: p.stat().st_mtime)
    return total_instructions(dumps[-1])


async def _fanout_passes(pid: int, name: str, work: Path, spec: dict[str, Any], n: int) -> float:
    room = _Room(spec, spec["window"])
    await room.open()
    try:
        counts = []
        for publishes in (n, 3 * n):
            _control(pid, "-z")
            _control(pid, "-i", "on")
            await room.run(publishes)
            counts.append(_dump(pid, name, work))
    finally:
        await room.close()
    return (counts[1] - counts[0]) / (2 * n * spec["members"])


def measure(
    name: str,
    message: str,
    n: int,
    connections: int,
    work: Path,
    *,
    handshakes: bool = False,
    fanout: int = 0,
    window: int = 4,
) -> float:
    """Instructions per message, handshake or fan-out delivery of server ``name`` (see the
    module docstring)."""
    port, mgmt = servers.free_ports(2)
    cmd, url = _command(name, port, mgmt, work)
    out = work / f"{name}.out"
    env = {**servers.AWS_ENV, "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{mgmt}/dev"}
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    log = work / f"{name}.log"
    proc = servers._spawn([*valgrind, f"--callgrind-out-file={out}", *cmd], log, env=env)
    template = echo_template({"message": "chat"} if message == "chat" else {"action": message})
    try:
        _wait_listening(port, proc, 600)
        if fanout:
            spec = {
                "members": fanout,
                "window": window,
                "url": url,
                "mgmt_url": f"http://127.0.0.1:{mgmt}/dev",
                "dialect": "hubbub" if name.startswith("hubbub") else "raw",
            }
            return asyncio.run(_fanout_passes(proc.pid, name, work, spec, n))
        asyncio.run(_closed_loop(url, 20 * connections, connections, template))  # warm-up
        counts = []
        for count in (n, 3 * n):
            _control(proc.pid, "-z")
            _control(proc.pid, "-i", "on")
            if handshakes:
                asyncio.run(_handshakes(url, count))
            else:
                asyncio.run(_closed_loop(url, count, connections, template))
            counts.append(_dump(proc.pid, name, work))
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
    parser.add_argument(
        "--fanout",
        type=int,
        default=0,
        metavar="MEMBERS",
        help="count per delivery of a room send to MEMBERS (default -n: 20,000 deliveries)",
    )
    parser.add_argument("--window", type=int, default=4, help="fan-out publishes in flight")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    pin(1)
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="hubbub-instructions-") as tmp:
        for name in args.servers:
            if args.fanout:
                n = args.n or max(1, 20_000 // args.fanout)
            else:
                n = args.n or (300 if args.handshakes else 4000)
            per = measure(
                name,
                args.message,
                n,
                args.connections,
                Path(tmp),
                handshakes=args.handshakes,
                fanout=args.fanout,
                window=args.window,
            )
            if args.fanout:
                unit = f"delivery ({args.fanout:,} members)"
            elif args.handshakes:
                unit = "handshake"
            else:
                unit = f"{args.message} message"
            print(f"{name:12s} {per:,.0f} instructions per {unit}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

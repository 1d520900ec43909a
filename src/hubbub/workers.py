"""``hubbub serve --workers N``: N gateway processes on one machine, sharing its ports.

One gateway process is one event loop on one core, and holds at most as many connections as its
open-file limit allows. Workers use every core and multiply that limit.

Design
------
**Each worker is a whole gateway**: its own event loop, its own cluster node id
(``{cluster.node_id}-{i}``), its own heartbeats; for the cluster it is one more node. Workers share
connections, rooms and users only through the Redis store, exactly as nodes on separate machines
do: a management call on any worker reaches a connection on any other, a room spans them all, and
a dead worker's connections are reaped by the mechanism that reaps a lost node. That is why more
than one worker needs a shared store (``hubbub.config.validate`` refuses ``memory://``).

**Ports.** Every worker binds the public, management and HTTPS management ports itself with
``SO_REUSEPORT``, and the kernel spreads new connections over their listening sockets (by a hash
of the addresses: evenly, with no accept lock and no thundering herd; Linux only). Before starting
them, the supervisor binds each port once with ``SO_REUSEPORT`` *without listening*. That turns
port 0 into a concrete port the workers can share, keeps the port ours while a worker restarts,
and a socket that does not listen is given no connections. A port someone else listens on (even
another group of workers) is refused first, as plain ``serve`` refuses it. (Inheriting one
listening socket would also work, but every worker's loop would wake for every new connection, and
the least busy worker would take most of them.)

**Processes.** The supervisor (the process ``hubbub serve`` started in) loads no handler and serves
nothing. Each worker is a fresh interpreter (``python -m hubbub.workers FD``) joined to the
supervisor by a socket pair: the supervisor sends the worker its :class:`~hubbub.config.Config`
(pickled: concrete ports and node id filled in), the worker answers with its listener lines once it
listens, and **a worker drains and exits when the pair closes**. The supervisor closes it to stop
the worker; the kernel closes it when the supervisor dies, even by SIGKILL, so no worker lingers as
an orphan on the ports.

**Signals.** SIGINT or SIGTERM to the supervisor closes every pair: each worker drains as ``serve``
does (every connection is closed with 1001 and gets its ``$disconnect``). Workers stay in the
supervisor's process group, so a terminal's Ctrl-C or a signal to the whole group (systemd's
default) reaches them directly too; that counts once, as the pair closing is not a signal. A second
signal to the supervisor kills the workers at once (SIGKILL), as a second signal does to ``serve``.
The supervisor exits 0 when every worker exited 0, else 1.

**A worker that dies** is logged and restarted under the same node id (at most once a second per
worker), as gunicorn does: its successor reaps the connections it left in Redis on its first
heartbeat, each with its one 1006 ``$disconnect`` (the other workers do it if the restart takes
longer than three heartbeats). A worker that cannot *start* (a handler that does not import, a port
in use) stops them all, and the supervisor exits with that worker's status (2 for a config error),
as gunicorn stops when a worker fails to boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import tempfile
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hubbub.config import (
    MANAGEMENT_LISTENER,
    MANAGEMENT_TLS_LISTENER,
    PUBLIC_LISTENER,
    Config,
)
from hubbub.errors import ConfigError, ListenError
from hubbub.gateway import logs
from hubbub.gateway.metrics import WORKERS_DIR_ENV
from hubbub.runner import listener_lines, run_gateway

if TYPE_CHECKING:
    from hubbub.gateway.app import Gateway

log = logging.getLogger("hubbub.workers")

RESTART_SPACING = 1.0  # seconds between two starts of one worker: a crash loop does not spin
_LENGTH = struct.Struct("!I")


def worker_count(config: Config) -> int:
    """``server.workers``, with 0 meaning one per CPU core this process may run on."""
    return config.server.workers or len(os.sched_getaffinity(0))


def supervise(config: Config) -> int:
    """Run ``worker_count(config)`` gateway processes until SIGINT/SIGTERM; the exit status."""
    logs.configure(config.log.format, config.log.level)
    try:
        shared, reserved = reserve_ports(config)
    except ListenError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return 1
    # Each worker writes its metrics here; the one that answers a scrape adds them all up
    # (hubbub.gateway.metrics), so one GET /metrics covers the machine.
    with tempfile.TemporaryDirectory(prefix="hubbub-metrics-") as metrics_dir:
        os.environ[WORKERS_DIR_ENV] = metrics_dir
        try:
            return asyncio.run(Supervisor(shared, worker_count(config)).run())
        finally:
            os.environ.pop(WORKERS_DIR_ENV, None)
            for sock in reserved:
                sock.close()


def reserve_ports(config: Config) -> tuple[Config, list[socket.socket]]:
    """Bind every listener port with SO_REUSEPORT, without listening (see the module docstring).

    Returns ``config`` with the concrete ports, and the sockets to keep open while workers run.
    """
    server, management = config.server, config.management
    wanted = [
        (PUBLIC_LISTENER, server.host, server.port),
        (MANAGEMENT_LISTENER, management.host, management.port),
    ]
    if management.tls:
        wanted.append((MANAGEMENT_TLS_LISTENER, management.host, management.tls_port))
    # Listen on each fixed port briefly, all at once, as serve would: a port in use by anyone
    # (or named twice) fails here, before any worker starts.
    probes: list[socket.socket] = []
    try:
        for listener, host, port in wanted:
            if port:
                try:
                    probes.append(_socket(host, reuse_port=False))
                    probes[-1].bind((host, port))
                    probes[-1].listen(1)
                except OSError as exc:
                    raise listener.error(host, port, exc) from exc
    finally:
        for probe in probes:
            probe.close()
    reserved: list[socket.socket] = []
    try:
        for listener, host, port in wanted:
            try:
                reserved.append(_socket(host, reuse_port=True))
                reserved[-1].bind((host, port))
            except OSError as exc:
                raise listener.error(host, port, exc) from exc
    except ListenError:
        for sock in reserved:
            sock.close()
        raise
    ports = [sock.getsockname()[1] for sock in reserved]
    shared = replace(
        config,
        server=replace(server, port=ports[0]),
        management=replace(
            management, port=ports[1], tls_port=ports[2] if management.tls else management.tls_port
        ),
    )
    return shared, reserved


def _socket(host: str, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def node_ids(config: Config, count: int) -> list[str]:
    """``{cluster.node_id}-{i}``; with ``"auto"``, the base is made as one node makes its id."""
    base = config.cluster.node_id
    if base == "auto":
        base = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return [f"{base}-{i}" for i in range(count)]


class _StartFailed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Worker:
    index: int
    config: Config
    proc: asyncio.subprocess.Process | None = None
    channel: asyncio.StreamWriter | None = None  # the supervisor's end of the socket pair
    started_at: float = 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """Starts the workers, stops them on a signal, restarts a worker that dies."""

    def __init__(self, config: Config, count: int) -> None:
        ids = node_ids(config, count)
        self.workers = [
            _Worker(i, replace(config, cluster=replace(config.cluster, node_id=ids[i])))
            for i in range(count)
        ]
        self._stopping = False
        self._failed: int | None = None  # a worker's status when one could not start

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        started = await asyncio.gather(
            *(self._start(w) for w in self.workers), return_exceptions=True
        )
        failures = [r for r in started if isinstance(r, BaseException)]
        if failures:
            self._fail(failures[0])
        else:
            lines = started[0]
            assert isinstance(lines, list)
            for line in lines:
                print(line, flush=True)
            print(f"hubbub: workers    {len(self.workers)}", flush=True)
        await asyncio.gather(*(self._keep(w) for w in self.workers))
        if self._failed is not None:
            return self._failed if self._failed > 0 else 1
        return 0 if all(w.proc is not None and w.proc.returncode == 0 for w in self.workers) else 1

    def _on_signal(self) -> None:
        if not self._stopping:
            log.info("stopping workers")
            self._stop()
            return
        print("hubbub: second signal, exiting now", file=sys.stderr, flush=True)
        for worker in self.workers:
            if worker.alive:
                assert worker.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()

    def _stop(self) -> None:
        """Close every pair: each worker drains and exits."""
        self._stopping = True
        for worker in self.workers:
            if worker.channel is not None:
                worker.channel.close()

    def _fail(self, problem: BaseException) -> None:
        if not isinstance(problem, _StartFailed):
            raise problem
        if not self._stopping:
            self._failed = problem.status
            log.error(
                "a worker could not start; stopping", extra={"fields": {"status": problem.status}}
            )
            self._stop()

    async def _start(self, worker: _Worker) -> list[str]:
        """Start the worker's process; its listener lines once it listens."""
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hubbub.workers",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        worker.started_at = loop.time()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker.channel = writer
        payload = pickle.dumps(worker.config)
        writer.write(_LENGTH.pack(len(payload)) + payload)
        if self._stopping:  # stopped while this one started: it drains as soon as it listens
            writer.close()
        ready = await reader.readline()
        if not ready:  # it exited before listening
            raise _StartFailed(await worker.proc.wait())
        log.info(
            "worker started",
            extra={
                "fields": {
                    "worker": worker.index,
                    "pid": worker.proc.pid,
                    "node": worker.config.cluster.node_id,
                }
            },
        )
        lines: list[str] = json.loads(ready)["lines"]
        return lines

    async def _keep(self, worker: _Worker) -> None:
        """Wait for the worker to exit; restart it unless the supervisor is stopping."""
        loop = asyncio.get_running_loop()
        while worker.proc is not None:
            status = await worker.proc.wait()
            if worker.channel is not None:
                worker.channel.close()
            if self._stopping:
                return
            log.warning(
                "worker exited; restarting it",
                extra={
                    "fields": {
                        "worker": worker.index,
                        "pid": worker.proc.pid,
                        "status": status,
                        "node": worker.config.cluster.node_id,
                    }
                },
            )
            await asyncio.sleep(max(0.0, worker.started_at + RESTART_SPACING - loop.time()))
            if self._stopping:
                return
            try:
                await self._start(worker)
            except _StartFailed as exc:
                self._fail(exc)


# -- the worker process ---------------------------------------------------------------------------
def worker_main(fd: int) -> int:
    """A worker: read the config from the supervisor, run one gateway, report when listening."""
    channel = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)  # handlers' subprocesses must not keep the pair open
    with channel.makefile("rb") as stream:
        header = stream.read(_LENGTH.size)
        payload = stream.read(_LENGTH.unpack(header)[0]) if len(header) == _LENGTH.size else b""
    if not payload:
        return 1  # the supervisor is already gone
    # Pickle is safe here: the bytes come from our own parent, over a private socket pair.
    config: Config = pickle.loads(payload)

    def on_started(gateway: Gateway, stop: asyncio.Event) -> None:
        try:
            channel.sendall(json.dumps({"lines": listener_lines(gateway)}).encode() + b"\n")
        except OSError:  # the supervisor is stopping or gone
            stop.set()
            return
        channel.setblocking(False)
        asyncio.get_running_loop().add_reader(fd, _watch_supervisor, channel, stop)

    try:
        return run_gateway(config, on_started=on_started, reuse_port=True)
    except ConfigError as exc:
        print(f"hubbub: config error: {exc}", file=sys.stderr)
        return 2


def _watch_supervisor(channel: socket.socket, stop: asyncio.Event) -> None:
    """The pair is readable: the supervisor closed it (stopping, or gone), so drain and exit."""
    try:
        data = channel.recv(64)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        asyncio.get_running_loop().remove_reader(channel.fileno())
        stop.set()


if __name__ == "__main__":  # pragma: no cover - the supervisor starts this
    sys.exit(worker_main(int(sys.argv[1])))

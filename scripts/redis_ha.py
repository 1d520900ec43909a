"""Private Redis topologies for the tests (stdlib only): Sentinel and Cluster on free ports.

``start_sentinel()`` starts a master, one replica of it and three Sentinels watching them (quorum
2, a master is declared down after ``down_after_ms``) and returns a :class:`SentinelSet` whose
``url`` is a ``redis+sentinel://`` store URL. ``kill_master()`` SIGKILLs the current master (a
crash) and ``wait_failover()`` waits until the Sentinels name another one.

``start_cluster()`` starts three ``cluster-enabled`` masters (each with ``replicas`` replicas,
none by default), joins them with ``redis-cli --cluster create`` (16384 slots split three ways)
and returns a :class:`ClusterSet` whose ``url`` is a ``redis+cluster://`` store URL;
``kill_owner(key)`` SIGKILLs the master serving a key and ``wait_failover()`` waits for its
replica to take over.

Every server runs without persistence in its own temporary directory (see
``scripts/ensure_redis.py``); ``close()`` stops them all. Run as a script,
``python3 scripts/redis_ha.py sentinel|cluster`` prints the URL and keeps the servers until Ctrl-C.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

if __name__ == "__main__":  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.ensure_redis import DEFAULT_HOST, RedisProcess, RedisUnavailable, find_redis_server
from scripts.ports import free_port
from scripts.provision import apt_install

__all__ = ["ClusterSet", "SentinelSet", "start_cluster", "start_sentinel"]

SERVICE = "mymaster"
READY_TIMEOUT = 20.0


def _find_redis_cli() -> str:
    """``redis-cli``: Debian ships it in redis-tools (a dependency of redis-server)."""
    path = shutil.which("redis-cli")
    if path is None:
        apt_install("redis-tools")
        path = shutil.which("redis-cli")
    if path is None:
        raise RedisUnavailable("redis-cli not found (Debian/Ubuntu: apt-get install redis-tools)")
    return path


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command (RESP) to 127.0.0.1:port and return the raw reply (first recv)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    with socket.create_connection((DEFAULT_HOST, port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        return sock.recv(65536)


def _info(port: int, section: str) -> dict[str, str]:
    try:
        raw = command(port, "INFO", section)
    except OSError:
        return {}
    fields = {}
    for line in raw.decode(errors="replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _wait(what: str, ready: object, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        time.sleep(0.05)
    raise RedisUnavailable(f"{what} not ready within {timeout:.0f}s")


class _Topology:
    servers: list[RedisProcess]

    @property
    def url(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> _Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SentinelSet(_Topology):
    """A master, a replica and three Sentinels (see the module docstring)."""

    def __init__(self, down_after_ms: int = 1000) -> None:
        binary = find_redis_server()
        self.master = RedisProcess(binary=binary)
        self.replica = RedisProcess(
            binary=binary, extra=["--replicaof", DEFAULT_HOST, str(self.master.port)]
        )
        self.sentinels = [
            RedisProcess(binary=binary, extra=["--sentinel"], config="sentinel.conf")
            for _ in range(3)
        ]
        for sentinel in self.sentinels:
            (sentinel.dir / "sentinel.conf").write_text(
                f"sentinel monitor {SERVICE} {DEFAULT_HOST} {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
        self.servers = [self.master, self.replica, *self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{DEFAULT_HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        _wait("replica sync", lambda: _info(self.replica.port, "replication").get(
            "master_link_status") == "up")  # fmt: skip
        for sentinel in self.sentinels:
            sentinel.start()
        # Every Sentinel must know the replica and the other Sentinels before a failover works.
        _wait("sentinels", self._sentinels_ready)

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            try:
                raw = command(sentinel.port, "SENTINEL", "MASTER", SERVICE).decode()
            except OSError:
                return False
            lines = raw.split("\r\n")
            fields = dict(zip(lines[2::4], lines[4::4], strict=False))
            if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                return False
        return True

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                raw = command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            except OSError:
                continue
            lines = raw.decode().split("\r\n")
            if len(lines) >= 5:
                return int(lines[4])
        raise RedisUnavailable("no sentinel answers")

    def kill_master(self) -> RedisProcess:
        """SIGKILL the current master; returns its process (stopped)."""
        port = self.master_port()
        victim = next(s for s in (self.master, self.replica) if s.port == port)
        victim.kill()
        return victim

    def wait_failover(self, old_port: int, timeout: float = READY_TIMEOUT) -> int:
        """Wait until every Sentinel names a master other than ``old_port`` that accepts
        writes; returns its port."""

        def promoted() -> bool:
            try:
                port = self.master_port()
            except RedisUnavailable:
                return False
            return port != old_port and _info(port, "replication").get("role") == "master"

        _wait("failover", promoted, timeout)
        return self.master_port()


class ClusterSet(_Topology):
    """Three cluster-enabled masters holding all 16384 slots, each with ``replicas`` replicas
    (see the module docstring)."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        binary = find_redis_server()
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        options += ["--cluster-node-timeout", "2000"]
        # The bus port defaults to port + 10000, which may be taken or past 65535: pick one.
        self.servers = [
            RedisProcess(binary=binary, extra=[*options, "--cluster-port", str(free_port())])
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{DEFAULT_HOST}:{s.port}" for s in self.servers)
        return f"redis+cluster://{hosts}"

    def start(self) -> None:
        for server in self.servers:
            server.start()
        cli = _find_redis_cli()
        nodes = [f"{DEFAULT_HOST}:{s.port}" for s in self.servers]
        done = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RedisUnavailable(
                f"redis-cli --cluster create failed: {done.stdout.decode()[-1000:]}"
                f"{done.stderr.decode()[-1000:]}"
            )
        _wait("cluster", self._ready)

    def _ready(self) -> bool:
        for server in self.servers:
            if not server.running:
                continue
            if b"cluster_state:ok" not in command(server.port, "CLUSTER", "INFO"):
                return False
            replication = _info(server.port, "replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def owner(self, key: str) -> RedisProcess:
        """The running master that serves ``key`` (the others answer MOVED)."""
        for server in self.servers:
            if not server.running or _info(server.port, "replication").get("role") != "master":
                continue
            if command(server.port, "EXISTS", key).startswith(b":"):
                return server
        raise RedisUnavailable(f"no master serves {key!r}")

    def kill_owner(self, key: str) -> int:
        """SIGKILL the master that serves ``key``; returns its port."""
        victim = self.owner(key)
        victim.kill()
        return victim.port

    def wait_failover(self, key: str, old_port: int, timeout: float = READY_TIMEOUT) -> int:
        """Wait until a replica serves ``key`` in place of ``old_port`` and the cluster is ok;
        returns the new master's port."""

        def promoted() -> bool:
            try:
                return self.owner(key).port != old_port and self._ready()
            except (RedisUnavailable, OSError):
                return False

        _wait("cluster failover", promoted, timeout)
        return self.owner(key).port


def start_sentinel(down_after_ms: int = 1000) -> SentinelSet:
    topology = SentinelSet(down_after_ms)
    try:
        topology.start()
    except BaseException:
        topology.close()
        raise
    return topology


def start_cluster(replicas: int = 0) -> ClusterSet:
    topology = ClusterSet(replicas=replicas)
    try:
        topology.start()
    except BaseException:
        topology.close()
        raise
    return topology


def main() -> int:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in ("sentinel", "cluster"):
        print("usage: python3 scripts/redis_ha.py sentinel|cluster", file=sys.stderr)
        return 2
    # Stop the servers on SIGTERM and on SIGINT, also when started in the background (where
    # SIGINT is ignored by default).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    topology: _Topology = start_sentinel() if kind == "sentinel" else start_cluster()
    with topology:
        print(topology.url, flush=True)
        try:
            while True:
                time.sleep(0.5)
        except (KeyboardInterrupt, SystemExit):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real multi-node clusters: ``hubbub serve`` processes sharing one Redis.

Each node is a subprocess started from a generated ``hubbub.toml`` (ports 0, a unique
``store.key_prefix``, a short heartbeat) with a handler module that appends every event as one JSON
line to a file shared by all nodes, so a test can count ``$disconnect`` events cluster-wide.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.store.redis_server import unique_prefix

HEARTBEAT = 0.5
HUBBUB = Path(sys.executable).with_name("hubbub")
START_TIMEOUT = 20.0

HANDLERS = '''
import json, os

def _append(line):
    # One small write() on an O_APPEND file: lines from several processes never interleave.
    with open(os.environ["EVENTS_FILE"], "a") as f:
        f.write(json.dumps(line) + "\\n")

def record(event, context):
    rc = event["requestContext"]
    _append({
        "pid": os.getpid(),
        "route": rc["routeKey"],
        "cid": rc["connectionId"],
        "code": rc.get("disconnectStatusCode"),
        "reason": rc.get("disconnectReason"),
    })
    return {"statusCode": 200}

def whoami(event, context):
    """$default, two-way: answers the caller's connection id (and serves as a local echo)."""
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}
'''


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in str(item.path.parent.name):
            item.add_marker(pytest.mark.redis)


@dataclass
class NodeProcess:
    """One ``hubbub serve`` process."""

    name: str
    proc: subprocess.Popen[bytes]
    ws_url: str
    api_url: str  # http://127.0.0.1:PORT/dev: boto3's endpoint_url
    log: Path

    @property
    def health_url(self) -> str:
        return self.api_url.rsplit("/", 1)[0] + "/health"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye to Redis."""
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM: the graceful drain. Returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


class Cluster:
    """Start nodes sharing one Redis and one events file; stop them all at the end."""

    def __init__(self, root: Path, redis_url: str, extra_config: str = "") -> None:
        self.root = root
        self.redis_url = redis_url
        self.extra_config = extra_config  # TOML tables appended to every node's hubbub.toml
        self.key_prefix = unique_prefix()
        self.events_file = root / "events.jsonl"
        self.events_file.touch()
        (root / "handlers.py").write_text(HANDLERS)
        self.nodes: list[NodeProcess] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def config(self, name: str) -> Path:
        path = self.root / f"{name}.toml"
        path.write_text(
            f"""
[api]
stage = "dev"
[server]
port = 0
shutdown_grace = 5
[management]
port = 0
tls = false
[store]
key_prefix = "{self.key_prefix}"
[cluster]
node_id = "{name}-{os.getpid()}"
heartbeat_interval = {HEARTBEAT}
[environment]
EVENTS_FILE = "{self.events_file}"
[routes]
"$connect" = {{ handler = "handlers.record" }}
"$disconnect" = {{ handler = "handlers.record" }}
"$default" = {{ handler = "handlers.whoami", route_response = true }}
{self.extra_config}
"""
        )
        return path

    def start(self, *names: str) -> list[NodeProcess]:
        """Start nodes in parallel; return them once each printed its listener URLs."""
        pending = []
        for name in names:
            log = self.root / f"{name}.log"
            with log.open("ab") as err:
                proc = subprocess.Popen(
                    [
                        *(str(HUBBUB), "serve", "--config", str(self.config(name))),
                        *("--store", self.redis_url, "--log-level", "info"),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd=self.root,
                )
            self._procs.append(proc)  # stopped at the end even if it never becomes ready
            pending.append((name, proc, log))
        started = [self._ready(name, proc, log) for name, proc, log in pending]
        self.nodes += started
        return started

    def _ready(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> NodeProcess:
        # Raw reads on the pipe: a buffered readline() could hide the second line from select().
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        output = b""
        urls: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(urls) < 2:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                proc.kill()
                proc.wait()
                pytest.fail(f"node {name} did not start:\n{log.read_text()[-3000:]}")
            output += chunk
            # "hubbub: websocket  ws://127.0.0.1:PORT/dev" / "hubbub: management http://..."
            for line in output.decode().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "hubbub:":
                    urls[parts[1]] = parts[2]
        return NodeProcess(name, proc, urls["websocket"], urls["management"], log)

    def events(self, route: str | None = None) -> list[dict[str, Any]]:
        lines = self.events_file.read_text().splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if route is None or e["route"] == route]

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@contextlib.contextmanager
def cluster_on(root: Path, redis_url: str, extra_config: str = "") -> Iterator[Cluster]:
    cluster = Cluster(root, redis_url, extra_config)
    try:
        yield cluster
    finally:
        cluster.stop()
        _delete_prefix(redis_url, cluster.key_prefix)


def _delete_prefix(url: str, key_prefix: str) -> None:
    import redis

    if not url.startswith(("redis://", "rediss://", "unix://")):
        return  # a private Sentinel or Cluster topology: thrown away whole by its test

    with contextlib.suppress(redis.exceptions.ConnectionError):
        client = redis.Redis.from_url(url, socket_timeout=2)
        # Registry keys carry the hash tag "{prefix}"; room history keys start with the prefix.
        keys = [
            key
            for pattern in ("{" + key_prefix + "}*", key_prefix + "*")
            for key in client.scan_iter(match=pattern, count=1000)
        ]
        if keys:
            client.delete(*keys)
        client.close()

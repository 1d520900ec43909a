"""Find or start a Redis server for the tests (stdlib only).

``ensure_redis()`` returns ``(url, stop)``:

- a Redis already answering ``PING`` on 127.0.0.1:6379 is used as it is (``stop`` does nothing);
- otherwise ``redis-server`` (installed from Debian when missing and we are root or have sudo) is
  started on a free port with persistence off, in a temporary directory, and ``stop`` ends it.

``start_redis(port)`` always starts a private server and returns a ``RedisProcess`` that tests can
``kill()`` (SIGKILL) and ``restart()`` on the same port, to exercise reconnection.

Run as a script, ``python3 scripts/ensure_redis.py`` prints the URL and keeps the server it started
until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

if __name__ == "__main__":  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.ports import free_port
from scripts.provision import apt_install, log

__all__ = ["RedisProcess", "RedisUnavailable", "ensure_redis", "ping", "start_redis"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6379
READY_TIMEOUT = 10.0


class RedisUnavailable(RuntimeError):
    """No Redis is running and none could be installed or started."""


def ping(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 1.0) -> bool:
    """True when something on ``host:port`` answers a RESP ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def find_redis_server(install: bool = True) -> str:
    """Path of ``redis-server``; installs Debian's package when missing and allowed."""
    path = shutil.which("redis-server")
    if path:
        return path
    reason = "redis-server is not on PATH"
    if install:
        log("redis: redis-server not found, installing Debian's redis-server package")
        failure = apt_install("redis-server")
        path = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
        )
        if path:
            return path
        reason = failure or "apt-get succeeded but no redis-server binary appeared"
    raise RedisUnavailable(
        f"{reason}; install Redis (Debian/Ubuntu: `sudo apt-get install redis-server`) "
        f"or start one on {DEFAULT_HOST}:{DEFAULT_PORT}"
    )


class RedisProcess:
    """A private ``redis-server`` child process on 127.0.0.1, without persistence.

    ``stop()`` ends it gracefully, ``kill()`` with SIGKILL (a crash), ``restart()`` starts it again
    on the same port (its data is gone: persistence is off). ``close()`` also removes its temporary
    directory. Usable as a context manager.
    """

    def __init__(
        self,
        port: int | None = None,
        binary: str | None = None,
        extra: Sequence[str] = (),
        config: str = "",
    ) -> None:
        self.binary = binary or find_redis_server()
        self.extra = list(extra)  # more redis-server options, e.g. replicaof or cluster-enabled
        self.config = config  # a config file name in dir(), written by the caller (Sentinel's)
        self.port = port if port is not None else free_port()
        self.host = DEFAULT_HOST
        self._dir = Path(tempfile.mkdtemp(prefix="hubbub-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def dir(self) -> Path:
        """The server's private working directory (its log and any config files live there)."""
        return self._dir

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        if self.running:
            return
        cmd = [
            self.binary,
            *([str(self._dir / self.config)] if self.config else []),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._dir),
            *self.extra,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self._dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ping(self.host, self.port, timeout=0.5):
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.kill()
        raise RedisUnavailable(
            f"redis-server on port {self.port} did not answer PING within {timeout:.0f}s:\n{tail}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Redis shuts down cleanly), then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything, like a crash."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisProcess {self.url} {state}>"


def start_redis(port: int | None = None) -> RedisProcess:
    """Start a private Redis (on ``port``, or a free one) and return it once it answers PING."""
    server = RedisProcess(port)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def ensure_redis() -> tuple[str, Callable[[], None]]:
    """Return ``(url, stop)``: the Redis on 127.0.0.1:6379 if one answers, else a private one."""
    if ping(DEFAULT_HOST, DEFAULT_PORT):
        return f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0", lambda: None
    server = start_redis()
    return server.url, server.close


def main() -> int:
    try:
        if ping(DEFAULT_HOST, DEFAULT_PORT):
            print(f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0")
            log("redis: already running (not started by this script)")
            return 0
        server = start_redis()
    except RedisUnavailable as exc:
        log(f"redis: {exc}")
        return 1
    with server:
        print(server.url, flush=True)
        log(f"redis: started (pid {server.pid}); Ctrl-C to stop")
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

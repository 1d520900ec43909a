"""Start and stop every server the benchmark measures, pinned to core 0.

Each server runs in its own session (process group) with stdout and stderr in a log file under the
work directory; it is ready when its log shows its listening line. ``stop`` sends SIGTERM to that
group, then SIGKILL to what is left, so helper processes (serverless-offline's Python runners) go
too. A server that cannot be installed or started raises :class:`Unavailable` with the reason; the
harness records it and carries on with the others.

Servers (``SERVERS``), by the dialect the load generator speaks to them:
- ``hubbub`` (and ``hubbub-async-connect``): ``hubbub serve`` with bench/hubbub_app;
- ``picows``, ``aiohttp``: bench/peers/bare_*.py, the ceilings;
- ``node``: Node ``ws`` (bench/peers/node, ``npm install`` on first use);
- ``socketio``: python-socketio on aiohttp;
- ``sls``: serverless-offline 13 on Serverless Framework 3 (bench/peers/sls, ``npm install`` into
  the work directory on first use, unless installs are disabled);
- ``hubbub-runtimes``, ``hubbub-python``: ``hubbub serve`` with
  bench/hubbub_app/hubbub-runtimes.toml (Lambda runtimes: the Node.js function of
  bench/functions/node through the Runtime API; Python in-process and process-isolated);
- ``sls-node``: serverless-offline running that same Node.js file (bench/peers/sls_node). Both
  Node folders are installed with ``npm ci`` from their committed package-lock.json on first use
  (and again when the lock file changes), unless installs are disabled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import pin, raise_nofile

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
HUBBUB_APP = BENCH / "hubbub_app"
FUNCTIONS = BENCH / "functions"  # Lambda functions run by hubbub's runtimes and by a peer
SERVER_CORE = 0

# name -> (label for tables, dialect)
SERVERS: dict[str, tuple[str, str]] = {
    "hubbub": ("hubbub", "hubbub"),
    "hubbub-async-connect": ("hubbub (async $connect)", "hubbub"),
    "picows": ("bare picows", "raw"),
    "aiohttp": ("bare aiohttp", "raw"),
    "node": ("Node ws", "raw"),
    "socketio": ("python-socketio", "socketio"),
    "sls": ("serverless-offline", "hubbub"),
    "hubbub-runtimes": ("hubbub", "hubbub"),
    "hubbub-python": ("hubbub", "hubbub"),
    "sls-node": ("serverless-offline", "hubbub"),
}

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Unavailable(Exception):
    """This server cannot run here; the message says why."""


@dataclass
class Running:
    name: str
    ws_url: str
    mgmt_url: str | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    extra_ws_url: str | None = None  # cross-node: the publisher's node
    extra_mgmt_url: str | None = None
    version: str = ""
    crash_pattern: str | None = None  # a log line that means "it died" though the root lives
    store_url: str | None = None  # the Redis the gateway uses (hubbub --workers), if any

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def crashed(self) -> str | None:
        """Why the server is no longer whole, or None."""
        for proc, log in zip(self.procs, self.logs, strict=False):
            if proc.poll() is not None:
                return f"{log.stem} exited with {proc.returncode}"
        if self.crash_pattern:
            for log in self.logs:
                text = log.read_text(errors="replace") if log.exists() else ""
                found = re.search(self.crash_pattern, text)
                if found:
                    return f"{log.stem}: {found.group(0).strip()}"
        return None

    def stop(self) -> None:
        for proc in self.procs:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End the process group this harness started for ``proc`` (its own session)."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _preexec() -> None:
    pin(SERVER_CORE)
    raise_nofile()


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (all held open until every one is chosen)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def retry_port_clash(start: Callable[[], Running], attempts: int = 3) -> Running:
    """Ports are chosen before the server binds them; on a shared machine another process may
    take one in between. Try again with fresh ports."""
    for attempt in range(attempts):
        try:
            return start()
        except Unavailable as exc:
            if "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


_starts: dict[str, int] = {}


def log_path(work: Path, name: str) -> Path:
    """A fresh log file per start: logs/NAME-N.log."""
    _starts[name] = _starts.get(name, 0) + 1
    return work / "logs" / f"{name}-{_starts[name]}.log"


def _spawn(
    cmd: list[str], log: Path, *, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(ROOT))
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_preexec,  # noqa: PLW1509 - only affinity + rlimit, no locks taken
            start_new_session=True,
        )


def _wait_for(
    proc: subprocess.Popen[bytes], log: Path, patterns: list[str], timeout: float
) -> list[re.Match[str]]:
    """Wait until every regex in ``patterns`` matches a line of the log."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = [re.search(p, text) for p in patterns]
        if all(found):
            return [m for m in found if m is not None]
        if proc.poll() is not None:
            raise Unavailable(f"exited with {proc.returncode}: {_tail(text)}")
        if time.monotonic() > deadline:
            _stop_group(proc)
            raise Unavailable(f"not ready after {timeout:g}s: {_tail(text)}")
        time.sleep(0.05)


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"


# -- hubbub ------------------------------------------------------------------------------------
HUBBUB_READY = [r"hubbub: websocket\s+(ws://\S+)", r"hubbub: management (http://\S+)"]


def hubbub_command(config: Path, port: int, mgmt_port: int, *extra: str) -> list[str]:
    script = Path(sys.executable).with_name("hubbub")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "hubbub.cli"]
    return [
        *base,
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--management-port",
        str(mgmt_port),
        "--log-level",
        "warning",
        *extra,
    ]


def start_hubbub(work: Path, config: str = "hubbub.toml", name: str = "hubbub") -> Running:
    port, mgmt = free_ports(2)
    env = {**AWS_ENV, "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{mgmt}/dev"}
    log = log_path(work, name)
    proc = _spawn(hubbub_command(HUBBUB_APP / config, port, mgmt), log, env=env)
    ws, api = _wait_for(proc, log, HUBBUB_READY, 20)
    return Running(name, ws.group(1), api.group(1), [proc], [log])


def start_hubbub_runtimes(work: Path, allow_install: bool, name: str) -> Running:
    """hubbub with bench/hubbub_app/hubbub-runtimes.toml, from a copy in the work directory: its
    code roots made absolute, and WEBSOCKET_ENDPOINT (what the Node function's management client
    posts to) set to the management port chosen here. ``hubbub-runtimes`` runs the Node.js rows
    (Node and the function's packages needed); ``hubbub-python`` the Python ones (neither:
    environments start on a route's first message)."""
    if name == "hubbub-runtimes":
        if shutil.which("node") is None:
            raise Unavailable("node is not installed")
        npm_ci(FUNCTIONS / "node", "@aws-sdk/client-apigatewaymanagementapi", allow_install, work)
    port, mgmt = free_ports(2)
    config = hubbub_runtimes_config(work, port, mgmt)
    env = {**AWS_ENV, "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{mgmt}/dev"}
    log = log_path(work, name)
    proc = _spawn(hubbub_command(config, port, mgmt), log, env=env)
    ws, api = _wait_for(proc, log, HUBBUB_READY, 30)
    version = _node_version() if name == "hubbub-runtimes" else ""
    return Running(name, ws.group(1), api.group(1), [proc], [log], version=version)


def hubbub_runtimes_config(work: Path, port: int, mgmt: int) -> Path:
    """A copy of bench/hubbub_app/hubbub-runtimes.toml in ``work`` with the code roots made
    absolute and WEBSOCKET_ENDPOINT on management port ``mgmt``."""
    text = (HUBBUB_APP / "hubbub-runtimes.toml").read_text()
    text = text.replace('"../functions/', f'"{FUNCTIONS}/')
    text = text.replace("http://127.0.0.1:8081/dev", f"http://127.0.0.1:{mgmt}/dev")
    config = work / f"hubbub-runtimes-{port}.toml"
    config.write_text(text)
    return config


def start_cluster(work: Path, redis_url: str | None) -> Running:
    """Two hubbub nodes sharing a Redis store (node A publishes, node B holds the members)."""
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    running = Running("hubbub-cluster", "", procs=procs, logs=logs)
    try:
        if redis_url is None:
            redis_url = _start_redis(work, running)
        prefix = f"hubbub-bench-{uuid.uuid4().hex[:8]}:"
        urls = []
        ports = free_ports(4)
        for node, port, mgmt in (("a", ports[0], ports[1]), ("b", ports[2], ports[3])):
            env = {
                **AWS_ENV,
                "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{mgmt}/dev",
                "HUBBUB_STORE_KEY_PREFIX": prefix,
            }
            log = log_path(work, f"hubbub-node-{node}")
            cmd = hubbub_command(HUBBUB_APP / "hubbub.toml", port, mgmt, "--store", redis_url)
            proc = _spawn(cmd, log, env=env)
            procs.append(proc)
            logs.append(log)
            try:
                ws, api = _wait_for(proc, log, HUBBUB_READY, 20)
            except Unavailable as exc:
                raise Unavailable(f"hubbub node {node} with --store {redis_url}: {exc}") from exc
            urls.append((ws.group(1), api.group(1)))
    except BaseException:
        running.stop()
        raise
    (running.extra_ws_url, running.extra_mgmt_url), (running.ws_url, running.mgmt_url) = urls
    return running


def start_hubbub_workers(work: Path, redis_url: str | None, workers: int) -> Running:
    """``hubbub serve --workers N`` on a Redis store. The supervisor is ``procs[0]`` (its process
    tree is the gateway); a private Redis, when one had to be started, comes after it."""
    running = Running("hubbub", "", procs=[], logs=[])
    try:
        if redis_url is None:
            redis_url = _start_redis(work, running)
        port, mgmt = free_ports(2)
        env = {
            **AWS_ENV,
            "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{mgmt}/dev",
            "HUBBUB_STORE_KEY_PREFIX": f"hubbub-bench-{uuid.uuid4().hex[:8]}:",
        }
        log = log_path(work, "hubbub-workers")
        cmd = hubbub_command(
            HUBBUB_APP / "hubbub.toml", port, mgmt, "--store", redis_url, "--workers", str(workers)
        )
        proc = _spawn(cmd, log, env=env)
        running.procs.insert(0, proc)
        running.logs.insert(0, log)
        ws, api, _ = _wait_for(proc, log, [*HUBBUB_READY, r"hubbub: workers\s+\d+"], 60)
    except BaseException:
        running.stop()
        raise
    running.ws_url, running.mgmt_url, running.store_url = ws.group(1), api.group(1), redis_url
    return running


def redis_info(url: str) -> dict[str, Any]:
    """Redis's INFO (memory, CPU): what the gateway's shared store costs, reported apart.

    Empty for a redis+sentinel:// or redis+cluster:// store (several servers: not measured)."""
    import redis

    if "+" in url.split("://", 1)[0]:
        return {}

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info: dict[str, Any] = client.info()
    finally:
        client.close()
    return info


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(work: Path, running: Running) -> str:
    """A Redis on 127.0.0.1:6379 if one answers, else a private one (no persistence) on core 0."""
    if _redis_answers(6379):
        return "redis://127.0.0.1:6379/0"
    binary = shutil.which("redis-server")
    if binary is None:
        raise Unavailable("no Redis on 127.0.0.1:6379 and no redis-server binary")
    port = free_port()
    log = log_path(work, "redis")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = _spawn(cmd, log, cwd=work)
    running.procs.append(proc)
    running.logs.append(log)
    _wait_for(proc, log, [r"Ready to accept connections"], 10)
    return f"redis://127.0.0.1:{port}/0"


# -- bare peers --------------------------------------------------------------------------------
READY = [r"READY (ws://\S+)"]


def start_python_peer(work: Path, name: str, module: str) -> Running:
    log = log_path(work, name)
    proc = _spawn([sys.executable, "-m", module, "--port", "0"], log)
    (ws,) = _wait_for(proc, log, READY, 20)
    return Running(name, ws.group(1), None, [proc], [log])


def ensure_node_ws(allow_install: bool) -> Path:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None:
        raise Unavailable("node is not installed")
    folder = PEERS / "node"
    if not (folder / "node_modules" / "ws").is_dir():
        if not allow_install:
            raise Unavailable("ws is not installed (bench/peers/node) and installs are off")
        if npm is None:
            raise Unavailable("npm is not installed")
        _npm_install(folder, ROOT / "bench" / ".work" / "logs" / "node-npm-install.log")
    return folder


def start_node(work: Path, allow_install: bool) -> Running:
    folder = ensure_node_ws(allow_install)
    log = log_path(work, "node")
    proc = _spawn(["node", str(folder / "ws_server.js"), "--port", "0"], log, cwd=folder)
    (ws,) = _wait_for(proc, log, READY, 20)
    return Running("node", ws.group(1), None, [proc], [log], version=_node_version())


def _node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return f"node {done.stdout.strip()}"


def _npm_install(folder: Path, log: Path) -> None:
    print(f"bench: npm install in {folder} (log: {log})", file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise Unavailable(
            f"npm install failed in {folder}: {_tail(log.read_text(errors='replace'))}"
        )


def npm_ci(folder: Path, package: str, allow_install: bool, work: Path) -> None:
    """``npm ci`` in ``folder`` unless ``package`` is installed there from the current
    package-lock.json (a stamp in node_modules records the lock file it was installed from)."""
    if shutil.which("npm") is None:
        raise Unavailable("npm is not installed")
    lock = hashlib.sha256((folder / "package-lock.json").read_bytes()).hexdigest()
    stamp = folder / "node_modules" / ".hubbub-bench-lock"
    current = stamp.read_text().strip() if stamp.exists() else ""
    if (folder / "node_modules" / package).is_dir() and current == lock:
        return
    rel = folder.relative_to(ROOT)
    if not allow_install:
        raise Unavailable(f"{package} is not installed in {rel} and installs are off")
    log = work / "logs" / f"npm-ci-{folder.name}.log"
    print(f"bench: npm ci in {rel} (log: {log})", file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise Unavailable(f"npm ci failed in {rel}: {_tail(log.read_text(errors='replace'))}")
    stamp.write_text(lock + "\n")


# -- serverless-offline ------------------------------------------------------------------------
def ensure_sls(work: Path, allow_install: bool) -> Path:
    """Copy bench/peers/sls into the work directory and install its packages there."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise Unavailable("node/npm are not installed")
    folder = work / "sls"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("serverless.yml", "handler.py", "handler_boto.py", "package.json"):
        shutil.copyfile(PEERS / "sls" / name, folder / name)
    if not (folder / "node_modules" / "serverless-offline").is_dir():
        if not allow_install:
            raise Unavailable(
                "serverless-offline is not installed yet and installs are off (--quick)"
            )
        _npm_install(folder, work / "logs" / "sls-npm-install.log")
    return folder


def start_sls(work: Path, allow_install: bool) -> Running:
    return _start_sls("sls", ensure_sls(work, allow_install), work)


def start_sls_node(work: Path, allow_install: bool) -> Running:
    """serverless-offline running bench/functions/node/handler.js, in place: its serverless.yml
    names the handlers by their path from bench/peers/sls_node."""
    if shutil.which("node") is None:
        raise Unavailable("node is not installed")
    npm_ci(FUNCTIONS / "node", "@aws-sdk/client-apigatewaymanagementapi", allow_install, work)
    folder = PEERS / "sls_node"
    npm_ci(folder, "serverless-offline", allow_install, work)
    return _start_sls("sls-node", folder, work)


def _start_sls(name: str, folder: Path, work: Path) -> Running:
    ws_port, http_port, lambda_port = free_ports(3)
    env = {
        **AWS_ENV,
        # The Python runner puts $VIRTUAL_ENV/bin first on PATH: handlers get boto3 from our venv.
        "VIRTUAL_ENV": sys.prefix,
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "SLS_DEPRECATION_DISABLE": "*",
        "WEBSOCKET_ENDPOINT": f"http://127.0.0.1:{ws_port}",
    }
    cmd = [
        str(folder / "node_modules" / ".bin" / "serverless"),
        "offline",
        "start",
        "--host",
        "127.0.0.1",
        "--websocketPort",
        str(ws_port),
        "--httpPort",
        str(http_port),
        "--lambdaPort",
        str(lambda_port),
    ]
    log = log_path(work, name)
    proc = _spawn(cmd, log, cwd=folder, env=env)
    (ws,) = _wait_for(proc, log, [r"Offline \[websocket\] listening on (ws://\S+)"], 60)
    return Running(
        name,
        ws.group(1).rstrip("/"),
        None,
        [proc],
        [log],
        version=_sls_version(folder),
        crash_pattern=r"Uncaught exception[^\n]*|Error: [^\n]*EPIPE[^\n]*",
    )


def _sls_version(folder: Path) -> str:
    import json

    def version(pkg: str) -> str:
        try:
            data = json.loads((folder / "node_modules" / pkg / "package.json").read_text())
            return str(data["version"])
        except (OSError, ValueError, KeyError):
            return "?"

    return f"serverless {version('serverless')}, serverless-offline {version('serverless-offline')}"


def start(name: str, work: Path, *, allow_install: bool = True) -> Running:
    """Start one server by name; raises Unavailable when it cannot run here."""
    if name == "hubbub":
        return retry_port_clash(lambda: start_hubbub(work))
    if name == "hubbub-async-connect":
        return retry_port_clash(lambda: start_hubbub(work, "hubbub-async-connect.toml", name))
    if name == "picows":
        return start_python_peer(work, name, "bench.peers.bare_picows")
    if name == "aiohttp":
        return start_python_peer(work, name, "bench.peers.bare_aiohttp")
    if name == "socketio":
        return start_python_peer(work, name, "bench.peers.socketio_server")
    if name == "node":
        return start_node(work, allow_install)
    if name == "sls":
        return retry_port_clash(lambda: start_sls(work, allow_install))
    if name in ("hubbub-runtimes", "hubbub-python"):
        return retry_port_clash(lambda: start_hubbub_runtimes(work, allow_install, name))
    if name == "sls-node":
        return retry_port_clash(lambda: start_sls_node(work, allow_install))
    raise ValueError(f"unknown server {name!r}")

"""Scenarios: which servers each one measures, and how (one load generator run per server).

Every row of the results is one (scenario, server) pair run in the same harness run as the rows it
is compared with. A row is a plain dict (JSON-ready):

``scenario, key, server, label, status ("ok" | "unavailable" | "failed"), reason, unit, rate,
latency {p50_ms, p99_ms, ...}, server_us_per_msg, server_cpu_pct, gen_cpu_pct, errors, detail``

Servers run pinned to core 0 (bench/servers.py), the generator to core 1 (bench/loadgen.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile, servers
from bench.procstat import busy_seconds, rss_bytes, tree, tree_cpu_seconds, tree_rss_bytes
from bench.servers import SERVERS, Running, Unavailable, redis_info

Row = dict[str, Any]


@dataclass
class Settings:
    quick: bool = False
    warmup: float = 1.0
    duration: float = 5.0
    connections: int = 100
    fanout_members: int = 1000
    fanout_big: int = 10_000
    idle_connections: int = 10_000
    idle_max: int = 100_000
    connect_concurrency: int = 50
    peers: list[str] | None = None
    allow_install: bool = True
    work: Path = Path("bench/.work")
    redis_url: str | None = None
    progress: Callable[[str], None] = lambda message: None
    finished: Callable[[Row], None] = lambda row: None
    # (run index, server) -> routed msgs/s, for the latency scenario's offered rate
    routed_max: dict[tuple[int, str], float] = field(default_factory=dict)
    run_index: int = 0
    # scenario -> the row keys it runs (quick mode); scenarios not listed run every row.
    only: dict[str, set[str]] | None = None
    idle_settle: float = 2.0  # seconds between the last idle connection and reading RSS
    idle_cpu_window: float = 3.0
    # Shared machines: before each row, wait up to quiet_wait s for the two benchmark cores to
    # be used less than quiet_pct % (of one core) by anything else.
    quiet_wait: float = 0.0
    quiet_pct: float = 25.0
    # routed and fanout (1k): every server running, measured in alternating slices
    interleave: bool = True
    profile_dir: Path | None = None  # --profile: py-spy hubbub's measured windows into here

    def wants(self, key: str, scenario: str) -> bool:
        """Whether the row ``key`` (a server name, or hubbub-<variant>) of ``scenario`` runs."""
        if self.only is not None and scenario in self.only and key not in self.only[scenario]:
            return False
        if self.peers is None:
            return True
        base = "hubbub" if key.startswith("hubbub") else key
        return base in self.peers or key in self.peers


class LoadgenError(RuntimeError):
    pass


def wait_for_quiet(limit: float, threshold: float, sample: float = 1.0) -> tuple[float, float]:
    """Sample the busy time of cores 0-1 (nothing of ours runs now) until it is below
    ``threshold`` % or ``limit`` s have passed. Returns (seconds waited, last load %)."""
    started = time.monotonic()
    while True:
        before = busy_seconds()
        time.sleep(sample)
        load = 100 * (busy_seconds() - before) / sample
        waited = time.monotonic() - started
        if load < threshold or waited >= limit:
            return waited, load


def source_ips(count: int, first: int = 2) -> list[str]:
    """127.0.0.2, 127.0.0.3, ... (from 127.0.0.``first``): the whole 127/8 block is local on
    Linux."""
    return [f"127.0.0.{i}" for i in range(first, first + count)]


class Loadgen:
    """One load generator process; ``events`` yields its ``@name {json}`` lines."""

    def __init__(self, spec: dict[str, Any], log: Path) -> None:
        spec = {"core": 1, **spec}
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log
        self._err = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
            cwd=servers.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )

    def next_event(self, timeout: float) -> tuple[str, dict[str, Any]]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise LoadgenError(f"load generator exited ({self.proc.returncode}): {self.tail()}")
            if line.startswith("@"):
                name, _, data = line[1:].partition(" ")
                return name, json.loads(data)
        raise LoadgenError("load generator timed out")

    def wait_for(self, wanted: str, timeout: float) -> dict[str, Any]:
        while True:
            name, data = self.next_event(timeout)
            if name == wanted:
                return data

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def tail(self) -> str:
        self._err.flush()
        text = self._log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-3:]) or "(no output)"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._err.close()


def run_loadgen(
    spec: dict[str, Any], settings: Settings, name: str, timeout: float | None = None
) -> dict[str, Any]:
    """Run the generator to its result; with ``--profile``, py-spy hubbub during the window."""
    if timeout is None:
        timeout = 120 + 2 * (settings.warmup + settings.duration) + spec.get("members", 0) / 200
    gen = Loadgen(spec, settings.work / "logs" / f"loadgen-{name}.log")
    spy = None
    raw = settings.profile_dir / f"{name}.raw" if settings.profile_dir else None
    try:
        while True:
            event, data = gen.next_event(timeout)
            pid = spec.get("profile_pid") or (
                spec["server_pids"][-1] if name_is_hubbub(name) else 0
            )
            if event == "window" and raw is not None and pid:
                spy = profile.start(pid, data["duration"], raw)
            elif event == "result":
                break
    finally:
        gen.close()
    if spy is not None and raw is not None:
        spy.wait(timeout=60)
        if raw.exists():
            text = profile.summarize(raw)
            raw.with_suffix(".txt").write_text(text)
            data["profile"] = str(raw.with_suffix(".txt"))
    return data


def name_is_hubbub(name: str) -> bool:
    return "hubbub" in name or name in ("cross-node",)


def base_row(scenario: str, key: str, server: str, unit: str) -> Row:
    return {
        "scenario": scenario,
        "key": key,
        "server": server,
        "label": SERVERS.get(server, (server, ""))[0],
        "unit": unit,
        "status": "ok",
        "reason": "",
    }


def fill(row: Row, out: dict[str, Any]) -> Row:
    row.update(
        rate=out.get("rate"),
        latency=out.get("latency", {}),
        server_us_per_msg=out.get("server_us_per_msg"),
        server_cpu_pct=out.get("server_cpu_pct"),
        gen_cpu_pct=out.get("gen_cpu_pct"),
        gen_us_per_msg=out.get("gen_us_per_msg"),
        other_cpu_pct=out.get("other_cpu_pct"),
        errors=out.get("errors", 0),
        detail={k: v for k, v in out.items() if k not in row and k != "latency"},
    )
    return row


def with_server(
    row: Row,
    server: str,
    settings: Settings,
    body: Callable[[Running], None],
    start: Callable[[], Running] | None = None,
) -> Row:
    """Start the server, run ``body``, stop it; turn failures into the row's status."""
    if settings.quiet_wait > 0:
        waited, load = wait_for_quiet(settings.quiet_wait, settings.quiet_pct)
        row["quiet_wait_s"] = round(waited, 1)
        row["load_before_pct"] = round(load)
    began = time.monotonic()
    try:
        running = (
            start()
            if start
            else servers.start(server, settings.work, allow_install=settings.allow_install)
        )
    except Unavailable as exc:
        row.update(status="unavailable", reason=str(exc))
        settings.finished(row)
        return row
    try:
        if running.version:
            row["version"] = running.version
        body(running)
        problem = running.crashed()
        if problem:
            row["reason"] = f"server crashed during the run ({problem})"
    except (LoadgenError, Unavailable) as exc:
        row.update(status="failed", reason=str(exc))
    finally:
        running.stop()
        row["elapsed_s"] = round(time.monotonic() - began, 1)
        settings.finished(row)
    return row


# -- scenarios -----------------------------------------------------------------------------------
def warmup_for(running: Running, settings: Settings) -> float:
    # serverless-offline keeps starting Python processes for a while after the first replies.
    return max(settings.warmup, 3.0) if is_sls(running) else settings.warmup


def is_sls(running: Running) -> bool:
    """serverless-offline, with the Python handlers (``sls``) or the Node.js one (``sls-node``)."""
    return running.name in ("sls", "sls-node")


def echo_spec(running: Running, settings: Settings, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": "echo",
        "url": running.ws_url,
        "dialect": SERVERS[running.name][1],
        "connections": settings.connections,
        "warmup": warmup_for(running, settings),
        "duration": settings.duration,
        "server_pids": running.pids,
        "prime_timeout": 150.0 if is_sls(running) else 30.0,
        # serverless-offline: grow its pool of Python processes (Node: worker threads) 10
        # connections at a time
        "ramp": 10 if is_sls(running) else 0,
        **extra,
    }


def routed(settings: Settings) -> list[Row]:
    """Client frame → route → handler → reply; 100 connections, one message in flight each.
    hubbub routes ``{"action": "echo", ...}`` to its ``echo`` route."""
    rows = _routed(settings, "routed", ("hubbub", "aiohttp", "picows", "node", "sls"))
    for row in rows:
        settings.routed_max[settings.run_index, row["server"]] = row.get("rate") or 0.0
    return rows


def routed_default(settings: Settings) -> list[Row]:
    """The same closed loop with what chat clients send in practice: a 96-byte JSON message
    without the ``action`` key (bench/wsclient.py ``chat_template``), which hubbub routes to
    ``$default``; the bare servers echo it as any other."""
    return _routed(settings, "routed-default", ("hubbub", "aiohttp", "picows", "node"), "chat")


def _routed(
    settings: Settings, scenario: str, names: tuple[str, ...], message: str | None = None
) -> list[Row]:
    plan = [(server, server) for server in names if settings.wants(server, scenario)]
    extra = {"message": message} if message else {}

    def target(key: str, running: Running, row: Row) -> dict[str, Any]:
        spec = echo_spec(running, settings, **extra)
        if running.name == "sls" and settings.quick:
            # Quick mode: 10 connections, so serverless-offline starts 10 Python processes, not
            # 100 (its rate at 10 connections is the higher one: conservative).
            spec["connections"] = min(10, settings.connections)
            row["label"] = f"{row['label']} ({spec['connections']} conns)"
        return spec

    if settings.interleave:
        return interleaved(
            scenario, "msg/s", plan, settings, loadgen_scenario="echo-interleaved", target=target
        )
    rows = []
    for key, server in plan:
        row = base_row(scenario, key, server, "msg/s")
        settings.progress(f"{scenario} · {row['label']}")

        def body(running: Running, row: Row = row, key: str = key) -> None:
            spec = target(key, running, row)
            fill(row, run_loadgen(spec, settings, f"{scenario}-{running.name}"))

        rows.append(with_server(row, server, settings, body))
    return rows


def interleaved(
    scenario: str,
    unit: str,
    plan: list[tuple[str, str]],
    settings: Settings,
    *,
    loadgen_scenario: str,
    target: Callable[[str, Running, Row], dict[str, Any]],
    labels: dict[str, str] | None = None,
    starters: dict[str, Callable[[], Running]] | None = None,
) -> list[Row]:
    """Start every server of ``plan`` ((row key, server name) pairs), measure them in
    alternating slices with one generator (bench/interleave.py), stop them all. ``labels``:
    row key -> label, for rows whose server's own label does not say what they run.
    ``starters``: row key -> how to start its server, where ``servers.start`` cannot."""
    rows: dict[str, Row] = {key: base_row(scenario, key, server, unit) for key, server in plan}
    if "hubbub-http" in rows:
        rows["hubbub-http"]["label"] = "hubbub (POST @rooms)"
    for key, label in (labels or {}).items():
        if key in rows:
            rows[key]["label"] = label
    started: dict[str, Running] = {}
    waited = load = None
    if settings.quiet_wait > 0:
        waited, load = wait_for_quiet(settings.quiet_wait, settings.quiet_pct)
    began = time.monotonic()
    names = ", ".join(rows[key]["label"] for key, _ in plan)
    print(f"   {scenario}: {names}, interleaved ...", file=sys.stderr, flush=True)
    try:
        for key, server in plan:
            row = rows[key]
            try:
                if starters and key in starters:
                    running = starters[key]()
                else:
                    running = servers.start(
                        server, settings.work, allow_install=settings.allow_install
                    )
            except Unavailable as exc:
                row.update(status="unavailable", reason=str(exc))
                continue
            started[key] = running
            if running.version:
                row["version"] = running.version
        if started:
            measure_interleaved(
                scenario, rows, started, settings, loadgen_scenario=loadgen_scenario, target=target
            )
    finally:
        for running in started.values():
            running.stop()
    elapsed = round(time.monotonic() - began, 1)
    for row in rows.values():
        row["elapsed_s"] = elapsed
        if waited is not None and load is not None:
            row["quiet_wait_s"] = round(waited, 1)
            row["load_before_pct"] = round(load)
        settings.progress(f"{scenario} · {row['label']}")
        settings.finished(row)
    return list(rows.values())


def measure_interleaved(
    scenario: str,
    rows: dict[str, Row],
    started: dict[str, Running],
    settings: Settings,
    *,
    loadgen_scenario: str,
    target: Callable[[str, Running, Row], dict[str, Any]],
) -> None:
    targets = [target(key, running, rows[key]) for key, running in started.items()]
    spec = {
        "scenario": loadgen_scenario,
        "targets": targets,
        "warmup": settings.warmup,
        "duration": settings.duration,
        "slice": 0.5 if settings.quick else 1.0,
        "settle": 0.1,
        "prime_timeout": max(t.get("prime_timeout", 30.0) for t in targets),
        "server_pids": [pid for r in started.values() for pid in r.pids],
    }
    hubbub = started.get("hubbub")
    if hubbub is not None:
        spec["profile_pid"] = hubbub.pids[-1]
    members = sum(t.get("members", 0) for t in targets)
    timeout = 240 + len(targets) * 3 * (settings.warmup + settings.duration) + members / 100
    try:
        out = run_loadgen(spec, settings, f"{scenario}-interleaved", timeout=timeout)
    except LoadgenError as exc:
        for key in started:
            rows[key].update(status="failed", reason=str(exc))
        return
    for (key, running), res in zip(started.items(), out["targets"], strict=True):
        row = rows[key]
        if "failed" in res:
            row.update(status="failed", reason=res["failed"])
            continue
        fill(row, res)
        row["detail"]["interleaved"] = True
        if out.get("profile"):
            row["detail"]["profile"] = out["profile"]
        problem = running.crashed()
        if problem:
            row["reason"] = f"server crashed during the run ({problem})"


def routed_boto3(settings: Settings) -> list[Row]:
    """The seed's pattern: a plain def handler posting back with boto3 post_to_connection."""
    rows = []
    for server in ("hubbub", "sls"):
        if not settings.wants(server, "routed-boto3"):
            continue
        row = base_row("routed-boto3", server, server, "msg/s")
        settings.progress(f"routed-boto3 · {row['label']}")

        def body(running: Running, row: Row = row) -> None:
            spec = echo_spec(running, settings, action="echoboto", msg_timeout=10.0)
            fill(row, run_loadgen(spec, settings, f"boto3-{running.name}"))

        rows.append(with_server(row, server, settings, body))
    return rows


def fanout_rows(settings: Settings, members: int, scenario: str) -> list[Row]:
    """One publisher, ``members`` receivers in one room, 4 publishes in flight."""
    publishers = {"hubbub-http": "http"}
    servers_by_key = {
        "hubbub": "hubbub",
        "hubbub-http": "hubbub",
        "picows": "picows",
        "aiohttp": "aiohttp",
        "node": "node",
        "socketio": "socketio",
    }
    plan = [(k, s) for k, s in servers_by_key.items() if settings.wants(k, scenario)]

    def target(key: str, running: Running, row: Row) -> dict[str, Any]:
        return fanout_spec(running, settings, members, publishers.get(key, "ws"))

    # Interleaving holds every room at once: only while that fits the file-descriptor budget.
    if settings.interleave and members * len(plan) <= 15_000:
        return interleaved(
            scenario,
            "deliveries/s",
            plan,
            settings,
            loadgen_scenario="fanout-interleaved",
            target=target,
        )
    rows = []
    for key, server in plan:
        row = base_row(scenario, key, server, "deliveries/s")
        if key == "hubbub-http":
            row["label"] = "hubbub (POST @rooms)"
        settings.progress(f"{scenario} · {row['label']}")

        def body(running: Running, row: Row = row, key: str = key) -> None:
            spec = target(key, running, row)
            fill(row, run_loadgen(spec, settings, f"{scenario}-{key}"))

        rows.append(with_server(row, server, settings, body))
    return rows


def fanout_spec(
    running: Running, settings: Settings, members: int, publisher: str = "ws"
) -> dict[str, Any]:
    return {
        "scenario": "fanout",
        "url": running.ws_url,
        "mgmt_url": running.mgmt_url,
        "publish_url": running.extra_ws_url or running.ws_url,
        "publish_mgmt_url": running.extra_mgmt_url or running.mgmt_url,
        "publisher": publisher,
        "dialect": SERVERS.get(running.name, ("", "hubbub"))[1],
        "members": members,
        "window": 4,
        # A publish that has not reached every member by then is given up on (counted).
        "stall_timeout": 2.0 + members / 500,
        "warmup": settings.warmup,
        "duration": settings.duration,
        "server_pids": running.pids,
        "source_ips": source_ips(1 + members // 20000),
    }


def fanout(settings: Settings) -> list[Row]:
    return fanout_rows(settings, settings.fanout_members, "fanout")


def fanout_big(settings: Settings) -> list[Row]:
    return fanout_rows(settings, settings.fanout_big, "fanout-10k")


def idle_rows(settings: Settings, scenario: str, count: int, names: tuple[str, ...]) -> list[Row]:
    rows = []
    for server in names:
        if not settings.wants(server, scenario):
            continue
        row = base_row(scenario, server, server, "KB/conn")
        settings.progress(f"{scenario} · {row['label']} ({count:,} connections)")

        def body(running: Running, row: Row = row) -> None:
            measure_idle(running, settings, row, count)

        rows.append(with_server(row, server, settings, body))
    return rows


def measure_idle(
    running: Running, settings: Settings, row: Row, count: int, generators: int = 1
) -> None:
    """Open ``count`` idle connections from ``generators`` load generator processes (each under
    the open-file limit, from its own source addresses) and read the server's RSS and CPU."""
    # hubbub --workers: the gateway is the supervisor's tree; its Redis is measured apart.
    pids = running.pids[:1] if running.store_url else running.pids
    shares = [count // generators + (g < count % generators) for g in range(generators)]
    first_ip = 2
    gens = []
    try:
        for g, share in enumerate(shares):
            ips = source_ips(1 + share // 20000, first=first_ip)
            first_ip += len(ips)
            spec = {
                "scenario": "idle",
                "url": running.ws_url,
                "dialect": SERVERS[running.name][1],
                "connections": share,
                "source_ips": ips,
                "server_pids": pids,
            }
            suffix = f"-{g}" if generators > 1 else ""
            log = settings.work / "logs" / f"loadgen-idle-{running.name}{suffix}.log"
            gens.append(Loadgen(spec, log))
        for gen in gens:
            gen.wait_for("warm", 120)
        time.sleep(1.0)
        base = min(tree_rss_bytes(pids) for _ in range(3))
        store_base = redis_info(running.store_url) if running.store_url else None
        for gen in gens:
            gen.send("go")
        helds = [gen.wait_for("held", 120 + count / 500) for gen in gens]
        time.sleep(settings.idle_settle)
        rss = tree_rss_bytes(pids)
        store_held = redis_info(running.store_url) if running.store_url else None
        cpu0, t0 = tree_cpu_seconds(pids), time.monotonic()
        time.sleep(settings.idle_cpu_window)
        window = time.monotonic() - t0
        idle_cpu = 100 * (tree_cpu_seconds(pids) - cpu0) / window
        store_idle = redis_info(running.store_url) if running.store_url else None
        per_process = process_table(pids)
        for gen in gens:
            gen.send("close")
        outs = [gen.wait_for("result", 60) for gen in gens]
    finally:
        for gen in gens:
            gen.close()
    n = sum(h["connections"] for h in helds)
    failed = sum(h["failed"] for h in helds)
    row.update(
        rate=(rss - base) / n / 1024 if n else None,
        errors=failed,
        server_cpu_pct=idle_cpu,
        detail={
            "connections": n,
            "wanted": count,
            "rss_base_mb": base / 2**20,
            "rss_held_mb": rss / 2**20,
            "open_s": max(h["open_s"] for h in helds),
            "generators": generators,
            "processes": per_process,
            "loadgen": outs[0] if generators == 1 else outs,
        },
    )
    if store_base and store_held and store_idle:
        row["detail"]["redis"] = redis_cost(store_base, store_held, store_idle, n, window)
    if n < count:
        row["status"] = "failed" if n == 0 else "ok"
        row["reason"] = f"held {n:,} of {count:,} ({failed} failed)"


def process_table(pids: list[int]) -> list[dict[str, Any]]:
    """Each process of the server's trees: pid, RSS (MB) and open file descriptors (with
    --workers, about the connections each worker holds)."""
    out = []
    for pid in (p for root in pids for p in tree(root)):
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        out.append({"pid": pid, "rss_mb": rss_bytes(pid) / 2**20, "fds": fds})
    return out


def redis_cost(
    base: dict[str, Any], held: dict[str, Any], idle: dict[str, Any], n: int, window: float
) -> dict[str, Any]:
    """Redis's memory for the held connections, and its CPU while they were idle."""

    def cpu(info: dict[str, Any]) -> float:
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    used = int(held["used_memory"]) - int(base["used_memory"])
    return {
        "used_memory_base_mb": int(base["used_memory"]) / 2**20,
        "used_memory_held_mb": int(held["used_memory"]) / 2**20,
        "kb_per_conn": used / n / 1024 if n else None,
        "idle_cpu_pct": 100 * (cpu(idle) - cpu(held)) / window,
    }


def idle(settings: Settings) -> list[Row]:
    names = ("hubbub", "picows", "aiohttp", "node", "socketio")
    return idle_rows(settings, "idle", settings.idle_connections, names)


def idle_max(settings: Settings) -> list[Row]:
    """Idle connections held on this machine, up to 100,000: by one hubbub process (as many as
    its open-file limit allows: the per-process figure), and by ``hubbub serve --workers`` on
    Redis with enough workers and load generators that each process stays under that limit."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 10**7
    feasible = min(settings.idle_max, limit - 500)
    rows = idle_rows(settings, "idle-max", feasible, ("hubbub",))
    if feasible < settings.idle_max:
        for row in rows:
            row["reason"] = (
                f"RLIMIT_NOFILE hard limit is {hard:,} in this environment and cannot be raised "
                f"(no CAP_SYS_RESOURCE): held {row.get('detail', {}).get('connections', 0):,} "
                f"instead of {settings.idle_max:,}. " + row.get("reason", "")
            ).strip()
            row["status"] = "partial" if row["status"] == "ok" else row["status"]
    return rows + idle_workers(settings, limit)


# Connections per worker and per load generator at most: under the open-file limit, with room
# for the unevenness of the kernel's spreading and each process's own descriptors.
WORKER_SHARE = 18_000


def idle_workers(settings: Settings, limit: int) -> list[Row]:
    key = "hubbub-workers"
    if not settings.wants(key, "idle-max"):
        return []
    count = settings.idle_max
    share = min(WORKER_SHARE, limit - 2000)
    processes = -(-count // share)  # ceil
    row = base_row("idle-max", key, "hubbub", "KB/conn")
    row["label"] = f"hubbub --workers {processes} + Redis"
    settings.progress(f"idle-max · {row['label']} ({count:,} connections)")

    def start() -> Running:
        try:
            return servers.retry_port_clash(
                lambda: servers.start_hubbub_workers(settings.work, settings.redis_url, processes)
            )
        except Unavailable as exc:
            raise Unavailable(f"skipped: hubbub --workers on Redis did not start ({exc})") from exc

    def body(running: Running) -> None:
        measure_idle(running, settings, row, count, generators=processes)
        row["detail"]["workers"] = processes

    return [with_server(row, "hubbub", settings, body, start=start)]


def connect_rate(settings: Settings) -> list[Row]:
    """Handshakes per second, each connection closed right after its 101. The servers are
    measured interleaved (the handshake goal is a ratio of two of them), serverless-offline
    after them on its own: it keeps starting Python processes long after a slice ends."""
    plan = [
        (server, server)
        for server in ("hubbub", "hubbub-async-connect", "aiohttp", "picows", "node")
        if settings.wants(server, "connect")
    ]

    def spec(running: Running) -> dict[str, Any]:
        return {
            "scenario": "connect",
            "url": running.ws_url,
            "dialect": SERVERS[running.name][1],
            "concurrency": settings.connect_concurrency,
            "source_ips": source_ips(8),
            "warmup": warmup_for(running, settings),
            "duration": settings.duration,
            "server_pids": running.pids,
        }

    rows: list[Row] = []
    if settings.interleave and plan:
        rows += interleaved(
            "connect",
            "conn/s",
            plan,
            settings,
            loadgen_scenario="connect-interleaved",
            target=lambda key, running, row: spec(running),
        )
        plan = []
    for server in [s for s, _ in plan] + (["sls"] if settings.wants("sls", "connect") else []):
        row = base_row("connect", server, server, "conn/s")
        settings.progress(f"connect · {row['label']}")

        def body(running: Running, row: Row = row) -> None:
            fill(row, run_loadgen(spec(running), settings, f"connect-{running.name}"))

        rows.append(with_server(row, server, settings, body))
    return rows


def latency(settings: Settings) -> list[Row]:
    """Open loop at half of each server's maximum routed rate (measured earlier in this run)."""
    rows = []
    for server in ("hubbub", "aiohttp", "picows", "node", "sls"):
        if not settings.wants(server, "latency"):
            continue
        row = base_row("latency", server, server, "msg/s")
        settings.progress(f"latency · {row['label']}")

        def body(running: Running, row: Row = row) -> None:
            top = settings.routed_max.get((settings.run_index, running.name))
            if not top:
                probe = run_loadgen(
                    echo_spec(running, settings, warmup=0.5, duration=2.0),
                    settings,
                    f"latency-max-{running.name}",
                )
                top = probe["rate"]
            spec = {
                **echo_spec(running, settings),
                "scenario": "rate",
                "rate": max(1.0, top / 2),
            }
            fill(row, run_loadgen(spec, settings, f"latency-{running.name}"))
            row["detail"]["max_rate"] = top

        rows.append(with_server(row, server, settings, body))
    return rows


def cross_node(settings: Settings) -> list[Row]:
    """Fan-out across two hubbub nodes on Redis (publisher on node A, 1,000 members on node B),
    interleaved with the same fan-out on one node (its own row, key ``hubbub``): the goal's
    ratio compares two servers that saw the same machine, slice by slice, rather than rows
    measured minutes apart (this ratio moved between 0.72 and 0.97 when they were)."""
    if not settings.wants("hubbub-cluster", "cross-node"):
        return []
    members = settings.fanout_members

    def start_cluster() -> Running:
        try:
            return servers.retry_port_clash(
                lambda: servers.start_cluster(settings.work, settings.redis_url)
            )
        except Unavailable as exc:
            raise Unavailable(f"skipped: the Redis store did not start ({exc})") from exc

    def target(key: str, running: Running, row: Row) -> dict[str, Any]:
        spec = fanout_spec(running, settings, members)
        spec["dialect"] = "hubbub"
        return spec

    return interleaved(
        "cross-node",
        "deliveries/s",
        [("hubbub-cluster", "hubbub"), ("hubbub", "hubbub")],
        settings,
        loadgen_scenario="fanout-interleaved",
        target=target,
        labels={"hubbub-cluster": "hubbub, 2 nodes + Redis", "hubbub": "hubbub, one node"},
        starters={"hubbub-cluster": start_cluster},
    )


SCENARIOS: dict[str, Callable[[Settings], list[Row]]] = {
    "routed": routed,
    "routed-default": routed_default,
    "routed-boto3": routed_boto3,
    "fanout": fanout,
    "fanout-10k": fanout_big,
    "idle": idle,
    "idle-max": idle_max,
    "connect": connect_rate,
    "latency": latency,
    "cross-node": cross_node,
}

FULL = list(SCENARIOS)
QUICK = [
    "routed",
    "routed-default",
    "routed-boto3",
    "fanout",
    "idle",
    "connect",
    "latency",
    "cross-node",
]
# Quick mode's rows: every goal's pair once, nothing else.
QUICK_ROWS = {
    "routed": {"hubbub", "aiohttp", "picows", "node", "sls"},
    "routed-default": {"hubbub", "aiohttp"},
    "routed-boto3": {"hubbub"},
    "fanout": {"hubbub", "picows", "node", "socketio"},
    "idle": {"hubbub", "aiohttp"},
    "connect": {"hubbub", "aiohttp"},
    "latency": {"hubbub", "aiohttp"},
    "cross-node": {"hubbub-cluster", "hubbub"},
}


def planned_steps(names: list[str], settings: Settings) -> int:
    """How many rows the scenarios will produce (for the progress counter)."""
    per = {
        "routed": ["hubbub", "aiohttp", "picows", "node", "sls"],
        "routed-default": ["hubbub", "aiohttp", "picows", "node"],
        "routed-boto3": ["hubbub", "sls"],
        "fanout": ["hubbub", "hubbub-http", "picows", "aiohttp", "node", "socketio"],
        "fanout-10k": ["hubbub", "hubbub-http", "picows", "aiohttp", "node", "socketio"],
        "idle": ["hubbub", "picows", "aiohttp", "node", "socketio"],
        "idle-max": ["hubbub", "hubbub-workers"],
        "connect": ["hubbub", "hubbub-async-connect", "aiohttp", "picows", "node", "sls"],
        "latency": ["hubbub", "aiohttp", "picows", "node", "sls"],
        "cross-node": ["hubbub-cluster", "hubbub"],
    }
    return sum(1 for n in names for s in per.get(n, []) if settings.wants(s, n))

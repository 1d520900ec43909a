"""``hubbub serve --workers N``: real supervisor and worker processes on one Redis.

Which worker holds a connection is read from the ``$connect`` event (the handler records its
process id); the workers are the supervisor's child processes.
"""

from __future__ import annotations

import asyncio
import os
import resource
import select
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from tests.cluster.conftest import HUBBUB, START_TIMEOUT, Cluster, NodeProcess, cluster_on
from tests.cluster.test_multinode import management, post_json, put, recv
from tests.helpers import TIME_SCALE, eventually

CLIENTS = 16  # both of 2 workers get some: all on one has odds of 2 in 65,536


def start_workers(
    cluster: Cluster, name: str, workers: int = 2, config: Path | None = None, **popen: Any
) -> tuple[NodeProcess, list[str]]:
    """Start ``hubbub serve --workers`` (on the cluster's config for ``name`` unless ``config``
    is given); the node and every line it printed."""
    config = config or cluster.config(name)
    log = cluster.root / f"{name}.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [
                *(str(HUBBUB), "serve", "--config", str(config)),
                *("--store", cluster.redis_url, "--workers", str(workers), "--log-level", "info"),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=cluster.root,
            **popen,
        )
    cluster._procs.append(proc)
    assert proc.stdout is not None
    output = b""
    deadline = time.monotonic() + START_TIMEOUT * TIME_SCALE
    # The workers line comes last, once every worker listens. Raw reads, as in Cluster._ready.
    while b"hubbub: workers" not in output:
        left = deadline - time.monotonic()
        ready = select.select([proc.stdout], [], [], left)[0] if left > 0 else []
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            pytest.fail(f"{name} did not start:\n{log.read_text()[-3000:]}")
        output += chunk
    lines = output.decode().splitlines()
    urls = {parts[1]: parts[2] for parts in (line.split() for line in lines)}
    node = NodeProcess(name, proc, urls["websocket"], urls["management"], log)
    cluster.nodes.append(node)
    return node, lines


def worker_pids(supervisor: int) -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def on_worker(cluster: Cluster) -> dict[str, int]:
    """connection id -> the pid of the worker whose ``$connect`` ran (the one holding it)."""
    return {e["cid"]: e["pid"] for e in cluster.events("$connect")}


async def open_clients(
    node: NodeProcess, count: int
) -> list[tuple[websockets.ClientConnection, str]]:
    opened = []
    for _ in range(count):
        ws = await websockets.connect(node.ws_url)
        await ws.send("whoami")
        opened.append((ws, str(await recv(ws))))
    return opened


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Cluster]:
    """One supervisor with two workers, shared by the tests that leave it running."""
    with cluster_on(tmp_path_factory.mktemp("workers"), redis_url) as cluster:
        start_workers(cluster, "w")
        yield cluster


@pytest.fixture
async def spread(pair: Cluster) -> AsyncIterator[list[tuple[websockets.ClientConnection, str]]]:
    """CLIENTS connections to the pair, on both workers."""
    opened = await open_clients(pair.nodes[0], CLIENTS)
    try:
        yield opened
    finally:
        for ws, _ in opened:
            await ws.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def test_connections_on_one_port_land_on_every_worker(
    pair: Cluster, spread: list[tuple[Any, str]]
) -> None:
    node = pair.nodes[0]
    workers = worker_pids(node.pid)
    assert len(workers) == 2
    where = on_worker(pair)
    assert {where[cid] for _, cid in spread} == workers
    # The management port is shared the same way: /health answers from either node.
    seen = set()
    for _ in range(CLIENTS):
        async with aiohttp.ClientSession() as fresh, fresh.get(node.health_url) as resp:
            seen.add((await resp.json())["node"])  # a new TCP connection each time
    assert seen == {f"w-{os.getpid()}-0", f"w-{os.getpid()}-1"}  # {cluster.node_id}-{i}


async def test_management_calls_reach_connections_on_either_worker(
    pair: Cluster, spread: list[tuple[Any, str]], http: aiohttp.ClientSession
) -> None:
    api = management(pair.nodes[0])
    for ws, cid in spread:
        await asyncio.to_thread(
            api.post_to_connection, ConnectionId=cid, Data=b"hi " + cid.encode()
        )
        assert await recv(ws) == f"hi {cid}"
        info = await asyncio.to_thread(api.get_connection, ConnectionId=cid)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
    async with http.get(f"{pair.nodes[0].api_url}/@connections?limit=1000") as resp:
        listed = (await resp.json())["connections"]
    assert {cid for _, cid in spread} <= set(listed)


async def test_rooms_span_workers(
    pair: Cluster, spread: list[tuple[Any, str]], http: aiohttp.ClientSession
) -> None:
    url = pair.nodes[0].api_url
    for _, cid in spread:
        await put(http, f"{url}/@rooms/all/connections/{cid}")
    assert await post_json(http, f"{url}/@rooms/all", b"to all") == {"delivered": CLIENTS}
    for ws, _ in spread:
        assert await recv(ws) == "to all"


async def test_sigterm_drains_every_worker_with_one_disconnect_each(
    tmp_path: Path, redis_url: str
) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        node, lines = start_workers(cluster, "d")
        assert lines[0] == f"hubbub: websocket  {node.ws_url}"
        assert lines[1] == f"hubbub: management {node.api_url}"
        assert lines[2:] == ["hubbub: workers    2"]
        workers = worker_pids(node.pid)
        opened = await open_clients(node, CLIENTS)
        stopping = asyncio.create_task(asyncio.to_thread(node.terminate))
        for ws, _ in opened:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(ws, timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        assert await stopping == 0
        disconnects = cluster.events("$disconnect")
        assert sorted(e["cid"] for e in disconnects) == sorted(cid for _, cid in opened)
        assert {e["code"] for e in disconnects} == {1001}
        assert {e["pid"] for e in disconnects} == workers
        assert not any(running(pid) for pid in workers)


async def test_a_killed_worker_is_restarted_and_its_connections_reaped(
    tmp_path: Path, redis_url: str
) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        node, _ = start_workers(cluster, "k")
        opened = await open_clients(node, CLIENTS)
        where = on_worker(cluster)
        victim, survivor = sorted(worker_pids(node.pid))
        doomed = {cid for _, cid in opened if where[cid] == victim}
        kept = [(ws, cid) for ws, cid in opened if where[cid] == survivor]
        os.kill(victim, signal.SIGKILL)
        successor = await eventually(
            lambda: (worker_pids(node.pid) - {survivor}) - {victim}, message="a new worker"
        )
        disconnects = await eventually(
            lambda: (
                [e for e in cluster.events("$disconnect") if e["cid"] in doomed]
                if len(cluster.events("$disconnect")) >= len(doomed)
                else None
            ),
            timeout=10,
            message="a $disconnect per connection of the killed worker",
        )
        assert sorted(e["cid"] for e in disconnects) == sorted(doomed)  # exactly once each
        assert {(e["code"], e["reason"]) for e in disconnects} == {(1006, "Gateway node lost")}
        assert {e["pid"] for e in disconnects} <= {survivor, *successor}
        for ws, cid in kept:  # the other worker's clients noticed nothing
            await ws.send("whoami")
            assert await recv(ws) == cid
        # And the port serves on both workers again, once the successor listens: its process
        # shows up before it has imported the handlers and bound the port, so new clients may
        # all reach the survivor for a moment (longer on a busy machine).
        more = await open_clients(node, CLIENTS)
        deadline = time.monotonic() + 10 * TIME_SCALE
        while {on_worker(cluster)[cid] for _, cid in more} != {survivor, *successor}:
            assert time.monotonic() < deadline, "the successor never took a connection"
            await asyncio.sleep(0.2)
            more += await open_clients(node, CLIENTS)
        assert {on_worker(cluster)[cid] for _, cid in more} == {survivor, *successor}
        for ws, _ in [*opened, *more]:
            await ws.close()
        assert await asyncio.to_thread(node.terminate) == 0


async def test_workers_drain_when_the_supervisor_is_killed(tmp_path: Path, redis_url: str) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        node, _ = start_workers(cluster, "o")
        workers = worker_pids(node.pid)
        opened = await open_clients(node, 4)
        node.kill()
        for ws, _ in opened:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(ws, timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        await eventually(
            lambda: not any(running(pid) for pid in workers),
            timeout=10,
            message="the orphaned workers to exit",
        )
        assert len(cluster.events("$disconnect")) == 4


def test_memory_store_with_workers_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(HUBBUB), "serve", "--port", "0", "--management-port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "server.workers" in done.stderr
    assert "shared store" in done.stderr
    assert "Redis" in done.stderr


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path, redis_url: str) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        config = cluster.config("bad")
        config.write_text(config.read_text().replace("handlers.whoami", "missing.whoami"))
        done = subprocess.run(
            [str(HUBBUB), "serve", "--config", str(config), "--store", redis_url, "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=60 * TIME_SCALE,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert "config error" in done.stderr
    assert "missing" in done.stderr
    assert "hubbub: websocket" not in done.stdout


def test_a_port_in_use_is_refused_before_any_worker_starts(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(str(HUBBUB), "serve", "--port", str(port), "--management-port", "0"),
                *("--store", redis_url, "--workers", "2"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
    assert "worker started" not in done.stderr


def test_each_worker_raises_its_open_files_limit(tmp_path: Path, redis_url: str) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(hard, 512)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    with cluster_on(tmp_path, redis_url) as cluster:
        node, _ = start_workers(cluster, "n", preexec_fn=lower)
        for pid in worker_pids(node.pid):
            limits = Path(f"/proc/{pid}/limits").read_text()
            row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
            assert row.split()[3:5] == [str(hard), str(hard)]
        assert node.terminate() == 0


def test_auto_starts_one_worker_per_core(tmp_path: Path, redis_url: str) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        node, lines = start_workers(cluster, "a", workers=0)
        cores = len(os.sched_getaffinity(node.pid))
        assert lines[-1] == f"hubbub: workers    {cores}"
        assert len(worker_pids(node.pid)) == cores
        assert node.terminate() == 0


async def test_a_second_signal_kills_the_workers_at_once(tmp_path: Path, redis_url: str) -> None:
    with cluster_on(tmp_path, redis_url) as cluster:
        # A $disconnect that takes 4 s keeps every worker's drain busy (shutdown_grace is 5 s).
        (tmp_path / "slow.py").write_text(
            "import time\n\ndef bye(event, context):\n    time.sleep(4)\n"
        )
        config = tmp_path / "slow.toml"
        config.write_text(
            cluster.config("s")
            .read_text()
            .replace(
                '"$disconnect" = { handler = "handlers.record" }',
                '"$disconnect" = { handler = "slow.bye" }',
            )
        )
        node, _ = start_workers(cluster, "s", config=config)
        workers = worker_pids(node.pid)
        opened = await open_clients(node, CLIENTS)
        node.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        assert all(running(pid) for pid in workers)  # draining: in their $disconnect handlers
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(node.proc.wait, 10) == 1
        assert time.monotonic() - started < 2.5  # not the rest of the slow $disconnect
        assert not any(running(pid) for pid in workers)
        for ws, _ in opened:
            await ws.close()


async def test_one_scrape_of_metrics_covers_every_worker(
    pair: Cluster, spread: list[tuple[Any, str]], http: aiohttp.ClientSession
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    node = pair.nodes[0]
    url = node.api_url.rsplit("/", 1)[0] + "/metrics"

    async def totals() -> tuple[float, set[str]] | None:
        async with http.get(url) as response:
            text = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        open_now = families["hubbub_connections"].samples[0].value
        nodes = {s.labels["node"] for s in families["hubbub_store_up"].samples}
        assert families["hubbub_cluster_nodes"].samples[0].value == 2  # both workers, in Redis
        # Another worker's part is at most a second old (hubbub.gateway.metrics).
        return (open_now, nodes) if open_now == CLIENTS and len(nodes) == 2 else None

    for _ in range(8):  # each scrape lands on either worker: both must answer for the machine
        deadline = time.monotonic() + 5 * TIME_SCALE
        while (found := await totals()) is None:
            assert time.monotonic() < deadline, "no scrape covered both workers"
            await asyncio.sleep(0.2)
        assert found == (CLIENTS, found[1])

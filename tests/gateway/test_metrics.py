"""GET /metrics: what the gateway counts, scraped over real sockets, parsed as Prometheus does."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import ModuleType

import aiohttp
import boto3
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from hubbub.gateway.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    Gauges,
    Histogram,
    Metrics,
    RouteStats,
    merge,
    render,
    snapshot,
)
from hubbub.gateway.observability import percentiles
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels), as a Prometheus server would read the page."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(url: str) -> tuple[int, str, Samples]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
        return response.status, response.headers.get("Content-Type", ""), parse(text)


# -- the pure parts ------------------------------------------------------------------------
def test_histogram_buckets_are_cumulative_in_the_exposition() -> None:
    stats = RouteStats()
    for seconds in (0.00007, 0.0003, 0.0003, 2.0, 100.0):
        stats.observe("ok", seconds)
    gauges = Gauges(node="n1", routes={"echo": stats})
    samples = parse(render(snapshot(Metrics(), gauges)).decode())
    bucket = "hubbub_invocation_seconds_bucket"
    assert value(samples, bucket, route="echo", le="0.0001") == 1
    assert value(samples, bucket, route="echo", le="0.0005") == 3
    assert value(samples, bucket, route="echo", le="2.5") == 4
    assert value(samples, bucket, route="echo", le="+Inf") == 5
    assert value(samples, "hubbub_invocation_seconds_count", route="echo") == 5
    assert value(samples, "hubbub_invocation_seconds_sum", route="echo") == pytest.approx(102.0006)
    assert value(samples, "hubbub_invocations_total", route="echo", outcome="ok") == 5


def test_worker_snapshots_add_up() -> None:
    one, two = Metrics(), Metrics()
    one.opened, two.opened = 3, 4
    one.closed[1000] += 2
    two.closed[1000] += 1
    two.closed[1006] += 5
    echo_one, echo_two = RouteStats(), RouteStats()
    echo_one.observe("ok", 0.001)
    echo_two.observe("error", 0.002)
    w0 = Gauges(node="w0", connections=1, cluster_nodes=2, routes={"echo": echo_one})
    w1 = Gauges(
        node="w1", connections=2, cluster_nodes=2, store_up=False, routes={"echo": echo_two}
    )
    merged = merge([snapshot(one, w0), snapshot(two, w1)])
    samples = parse(render(merged).decode())
    assert value(samples, "hubbub_connections") == 3
    assert value(samples, "hubbub_connections_opened_total") == 7
    assert value(samples, "hubbub_connections_closed_total", code="1000") == 3
    assert value(samples, "hubbub_connections_closed_total", code="1006") == 5
    assert value(samples, "hubbub_invocation_seconds_count", route="echo") == 2
    assert value(samples, "hubbub_cluster_nodes") == 2  # the same cluster, not a sum
    assert value(samples, "hubbub_store_up", node="w0") == 1
    assert value(samples, "hubbub_store_up", node="w1") == 0


def test_percentiles_interpolate_within_the_bucket() -> None:
    histogram = Histogram()
    for _ in range(100):
        histogram.observe(0.0002)  # all in (0.0001, 0.00025]
    p = percentiles(histogram.as_list())
    assert p["p50"] is not None
    assert 0.1 <= p["p50"] <= 0.25
    assert percentiles(Histogram().as_list()) == {"p50": None, "p90": None, "p99": None}
    assert tuple(sorted(LATENCY_BUCKETS)) == LATENCY_BUCKETS


# -- over sockets --------------------------------------------------------------------------
async def test_a_scrape_counts_connections_messages_invocations_and_closes(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    spec = routes(
        _connect="record",
        echo={"handler": "echo", "route_response": True},
        boom="boom",
    )
    async with gateway(routes=spec) as gw:
        async with websockets.connect(gw.websocket_url) as a, websockets.connect(gw.websocket_url):
            for n in range(3):
                await a.send(f'{{"action": "echo", "n": {n}}}')
                assert (await a.recv()).startswith('{"action": "echo"')
            await a.send('{"action": "boom"}')
            assert "Internal server error" in await a.recv()
            await a.send('{"action": "nowhere"}')
            assert "Forbidden" in await a.recv()
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = boto3.client(
                "apigatewaymanagementapi", endpoint_url=gw.management_url, region_name="us-east-1"
            )
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"hi")
            assert await a.recv() == "hi"
            with pytest.raises(client.exceptions.GoneException):
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x"
                )
            status, content_type, samples = await scrape(gw.management_url.rsplit("/", 1)[0])
        assert status == 200
        assert content_type == CONTENT_TYPE
        assert value(samples, "hubbub_connections") == 2
        assert value(samples, "hubbub_connections_opened_total") == 2
        assert value(samples, "hubbub_handshakes_total", outcome="accepted", status="101") == 2
        assert value(samples, "hubbub_messages_in_total", route="echo") == 3
        assert value(samples, "hubbub_messages_in_total", route="") == 1
        assert value(samples, "hubbub_messages_out_total", kind="route_response") == 3
        assert value(samples, "hubbub_messages_out_total", kind="error") == 2
        assert value(samples, "hubbub_messages_out_total", kind="post") == 2
        assert value(samples, "hubbub_invocations_total", route="echo", outcome="ok") == 3
        assert value(samples, "hubbub_invocations_total", route="boom", outcome="error") == 1
        assert value(samples, "hubbub_invocations_total", route="$connect", outcome="ok") == 2
        assert value(samples, "hubbub_invocation_seconds_count", route="echo") == 3
        assert value(samples, "hubbub_frames_written_total") >= 4  # 3 route responses, 1 post
        assert (
            value(
                samples, "hubbub_management_calls_total", operation="connection_post", status="200"
            )
            == 1
        )
        assert (
            value(
                samples, "hubbub_management_calls_total", operation="connection_post", status="410"
            )
            == 1
        )
        assert value(samples, "hubbub_store_operations_total", operation="add") == 2
        assert value(samples, "hubbub_store_up", node=gw.node_id) == 1
        assert value(samples, "hubbub_cluster_nodes") == 1

        async def closed() -> Mapping[str, float]:
            _, _, after = await scrape(gw.management_url.rsplit("/", 1)[0])
            return {"1000": value(after, "hubbub_connections_closed_total", code="1000")}

        got: Mapping[str, float] = {}

        async def both_closed() -> bool:
            nonlocal got
            got = await closed()
            return got["1000"] == 2

        for _ in range(50):
            if await both_closed():
                break
            await asyncio.sleep(0.05)
        assert got == {"1000": 2}


async def test_handshakes_refused_and_authorizer_decisions_are_counted(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_RESULT.update({"statusCode": 403})
    async with gateway(routes=routes(_connect="record")) as gw:
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(gw.websocket_url)
        _, _, samples = await scrape(gw.management_url.rsplit("/", 1)[0])
    assert value(samples, "hubbub_handshakes_total", outcome="refused", status="403") == 1
    assert value(samples, "hubbub_handshakes_total", outcome="accepted", status="101") == 0


async def test_metrics_follow_the_management_auth(gateway: GatewayFactory) -> None:
    credentials = [{"access_key_id": "AKIDMETRICS", "secret_access_key": "s3cret"}]
    async with gateway(management={"auth": "sigv4", "credentials": credentials}) as gw:
        base = gw.management_url.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics") as response:
                assert response.status == 403
            async with http.get(base + "/dashboard/data") as response:
                assert response.status == 403
        # A signed GET (botocore's signer, as any SigV4 client) is let through.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method="GET", url=base + "/metrics")
        SigV4Auth(Credentials("AKIDMETRICS", "s3cret"), "execute-api", "us-east-1").add_auth(
            request
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics", headers=dict(request.headers)) as response:
                assert response.status == 200
                assert "hubbub_connections" in await response.text()


async def test_the_dashboard_log_tails_access_lines_while_polled(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    spec = routes(_connect="record", echo={"handler": "echo", "route_response": True})
    async with gateway(routes=spec) as gw:
        base = gw.management_url.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/dashboard/log") as response:
                first = await response.json()
            async with websockets.connect(gw.websocket_url) as ws:
                await ws.send('{"action": "echo"}')
                await ws.recv()
                cid = app.EVENTS[0]["requestContext"]["connectionId"]

                async def lines() -> list[dict[str, object]]:
                    url = f"{base}/dashboard/log?after={first['seq']}&route=echo"
                    async with http.get(url) as response:
                        return list((await response.json())["lines"])

                found: list[dict[str, object]] = []

                async def has_line() -> bool:
                    nonlocal found
                    found = await lines()
                    return bool(found)

                for _ in range(50):
                    if await has_line():
                        break
                    await asyncio.sleep(0.05)
            assert [line["route"] for line in found] == ["echo"]
            assert found[0]["connectionId"] == cid
            assert found[0]["event"] == "invoke"
            async with http.get(base + "/dashboard/data") as response:
                data = await response.json()
            assert data["node"] == gw.node_id
            assert data["latency"]["echo"]["p50"] is not None
            async with http.post(base + "/metrics") as response:
                assert response.status == 405
    await eventually(lambda: True)

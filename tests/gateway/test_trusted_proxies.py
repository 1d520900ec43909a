"""[server] trusted_proxies: the client's address through a real nginx, and forgeries ignored."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import websockets

from hubbub.gateway.proxies import TrustedProxies
from hubbub.wire.http import Handshake
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]


def _hs(remote: str, *headers: tuple[str, str]) -> Handshake:
    return Handshake("/dev", "", headers, remote, port=8080, scheme="http")


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    hs = proxies.apply(
        _hs(
            "127.0.0.1",
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "443"),
        )
    )
    assert (hs.remote, hs.scheme, hs.port) == ("203.0.113.7", "https", 443)
    # What the client itself claimed stays in the header; the hops we consumed do not.
    assert ("X-Forwarded-For", "6.6.6.6") in hs.headers
    assert ("X-Forwarded-Proto", "https") in hs.headers


def test_headers_from_an_untrusted_peer_change_nothing() -> None:
    proxies = TrustedProxies(["127.0.0.1/32"])
    original = _hs("192.0.2.9", ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"))
    assert proxies.apply(original) is original


def test_a_malformed_hop_ends_the_walk() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    hs = proxies.apply(_hs("127.0.0.1", ("X-Forwarded-For", "not-an-ip, 198.51.100.4")))
    assert hs.remote == "198.51.100.4"
    only_junk = proxies.apply(_hs("127.0.0.1", ("X-Forwarded-For", "junk")))
    assert only_junk.remote == "127.0.0.1"  # nothing believable: the proxy itself


def test_ipv4_mapped_peers_match_ipv4_networks() -> None:
    assert TrustedProxies(["127.0.0.1/32"]).trusts("::ffff:127.0.0.1")
    assert not TrustedProxies(["127.0.0.1/32"]).trusts("::1")


# -- through a real nginx, configured with the block docs/scaling.md shows --------------------
def _documented_site() -> str:
    text = (ROOT / "docs" / "scaling.md").read_text()
    marker = "<!-- tested: tests/gateway/test_trusted_proxies.py -->"
    block = text.split(marker, 1)[1]
    found = re.search(r"```nginx\n(.*?)```", block, re.S)
    assert found is not None, "docs/scaling.md lost its tested nginx block"
    return found.group(1)


@pytest.fixture
def nginx_binary() -> str:
    path = os.environ.get("HUBBUB_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(path, os.X_OK):
        pytest.skip("no nginx: `python3 dev.py test` installs Debian's nginx-light")
    return path


class Nginx:
    def __init__(self, binary: str, folder: Path, upstream: int) -> None:
        self.port = free_port()
        site = _documented_site()
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{upstream}")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        temp = "\n".join(
            f"    {kind}_temp_path {folder / sub};"
            for kind, sub in (
                ("client_body", "body"),
                ("proxy", "proxy"),
                ("fastcgi", "fastcgi"),
                ("uwsgi", "uwsgi"),
                ("scgi", "scgi"),
            )
        )
        (folder / "nginx.conf").write_text(
            f"worker_processes 1;\n"
            f"error_log {folder / 'error.log'};\n"
            f"pid {folder / 'nginx.pid'};\n"
            f"{'user root;' if os.geteuid() == 0 else ''}\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log off;\n"
            f"{temp}\n{site}\n}}\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read() if self.proc.stderr else b""
                raise RuntimeError(f"nginx did not start: {err.decode(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def nginx(nginx_binary: str, tmp_path: Path) -> Iterator[type[Nginx]]:
    started: list[Nginx] = []

    class Started(Nginx):
        def __init__(self, upstream: int) -> None:
            super().__init__(nginx_binary, tmp_path / f"nginx{len(started)}", upstream)
            started.append(self)

    yield Started
    for proxy in started:
        proxy.stop()


def _connect(url: str, source: str) -> websockets.asyncio.client.connect:
    return websockets.connect(url, local_addr=(source, 0))


async def test_behind_nginx_the_client_address_is_the_source(
    gateway: GatewayFactory, app: ModuleType, nginx: type[Nginx]
) -> None:
    config = {
        "routes": routes(_connect="record"),
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "limits": {"connect_rate_per_ip": 0.001},  # one connection per client address
    }
    async with gateway(**config) as gw:
        assert gw.public is not None
        proxy = nginx(gw.public.port)
        through = f"ws://127.0.0.1:{proxy.port}/dev"
        async with _connect(through, "127.0.0.2"):
            await eventually(lambda: len(app.EVENTS) == 1)
        event = app.EVENTS[0]
        assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.2"
        headers = event["headers"]
        assert headers["X-Forwarded-For"] == "127.0.0.2"
        assert headers["X-Forwarded-Proto"] == "http"
        assert headers["X-Forwarded-Port"] == str(proxy.port)
        assert event["multiValueHeaders"]["X-Forwarded-For"] == ["127.0.0.2"]
        # The per-IP rate limit counts the client, not nginx: 127.0.0.2 is out of tokens now,
        # 127.0.0.4 is not.
        with pytest.raises(websockets.InvalidStatus) as refused:
            await _connect(through, "127.0.0.2")
        assert refused.value.response.status_code == 429
        async with _connect(through, "127.0.0.4"):
            await eventually(lambda: len(app.EVENTS) == 2)
        assert app.EVENTS[1]["requestContext"]["identity"]["sourceIp"] == "127.0.0.4"


async def test_forwarded_headers_from_anyone_else_are_only_claims(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    config = {"routes": routes(_connect="record"), "server": {"trusted_proxies": ["127.0.0.1"]}}
    async with gateway(**config) as gw:
        forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
        async with websockets.connect(
            gw.websocket_url, local_addr=("127.0.0.3", 0), additional_headers=forged
        ):
            await eventually(lambda: len(app.EVENTS) == 1)
        event = app.EVENTS[0]
        assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.3"
        assert event["headers"]["X-Forwarded-For"] == "6.6.6.6, 127.0.0.3"  # as API Gateway does
        assert event["headers"]["X-Forwarded-Proto"] == "https"  # the client's claim, kept

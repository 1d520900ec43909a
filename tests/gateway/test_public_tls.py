"""wss:// on the public listener ([server] tls_cert, tls_key, tls_ca), with clients that verify."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import aiohttp
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hubbub.config import build_config
from hubbub.errors import ConfigError
from hubbub.gateway.tls import LocalTls, ensure_local_tls
from hubbub.testing import run_gateway
from tests.gateway.conftest import HANDLERS, routes
from tests.helpers import eventually


@pytest.fixture
def pki(tmp_path: Path) -> LocalTls:
    """A CA and a server certificate for the loopback names (hubbub's own CA code makes them)."""
    return ensure_local_tls(tmp_path / "pki", ["127.0.0.1"])


def _client_cert(pki: LocalTls, folder: Path) -> tuple[Path, Path]:
    """A client certificate signed by the CA (for tls_ca)."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "client.pem", folder / "client-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _verifying(pki: LocalTls) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_cert))


async def test_wss_and_https_pages_with_a_client_that_verifies_the_chain(
    pki: LocalTls, tmp_path: Path
) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<p>secure page</p>")
    config = {
        "server": {"tls_cert": str(pki.cert), "tls_key": str(pki.key)},
        "static": {"dir": str(tmp_path / "public")},
        "routes": routes(echo={"handler": "echo", "route_response": True}),
    }
    async with run_gateway(config, base_dir=HANDLERS) as gw:
        assert gw.websocket_url.startswith("wss://127.0.0.1:")
        async with websockets.connect(gw.websocket_url, ssl=_verifying(pki)) as ws:
            await ws.send('{"action": "echo"}')
            assert await asyncio.wait_for(ws.recv(), 5) == '{"action": "echo"}'
        connector = aiohttp.TCPConnector(ssl=_verifying(pki))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(gw.http_url + "/") as response:
                assert response.status == 200
                assert "secure page" in await response.text()
        # A client that trusts only the public roots refuses the certificate.
        with pytest.raises(ssl.SSLCertVerificationError):
            await websockets.connect(gw.websocket_url, ssl=ssl.create_default_context())
        # Plain ws:// to a TLS listener gets nowhere.
        with pytest.raises((websockets.InvalidMessage, ConnectionError, EOFError)):
            await websockets.connect(gw.websocket_url.replace("wss://", "ws://"), open_timeout=5)


async def test_tls_ca_requires_a_client_certificate(pki: LocalTls, tmp_path: Path) -> None:
    client_cert, client_key = _client_cert(pki, tmp_path)
    config = {
        "server": {"tls_cert": str(pki.cert), "tls_key": str(pki.key), "tls_ca": str(pki.ca_cert)},
        "routes": routes(echo={"handler": "echo", "route_response": True}),
    }
    async with run_gateway(config, base_dir=HANDLERS) as gw:
        with_cert = _verifying(pki)
        with_cert.load_cert_chain(client_cert, client_key)
        async with websockets.connect(gw.websocket_url, ssl=with_cert) as ws:
            await ws.send('{"action": "echo"}')
            assert await asyncio.wait_for(ws.recv(), 5) == '{"action": "echo"}'
        with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage, EOFError)):
            async with websockets.connect(gw.websocket_url, ssl=_verifying(pki)) as ws:
                await ws.recv()


def test_tls_files_are_checked_at_load(pki: LocalTls, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server.tls_key: tls_cert and tls_key go together"):
        build_config({"server": {"tls_cert": str(pki.cert)}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"server.tls_cert: .*missing.pem is not a file"):
        build_config(
            {"server": {"tls_cert": "missing.pem", "tls_key": str(pki.key)}}, base_dir=tmp_path
        )
    relative = build_config(
        {"server": {"tls_cert": "pki/server.pem", "tls_key": "pki/server-key.pem"}},
        base_dir=tmp_path,
    )
    assert relative.server.tls_cert == tmp_path / "pki" / "server.pem"


async def test_a_key_that_does_not_match_is_a_config_error(pki: LocalTls, tmp_path: Path) -> None:
    other = ensure_local_tls(tmp_path / "other", ["127.0.0.1"])
    config = {"server": {"tls_cert": str(pki.cert), "tls_key": str(other.key)}}
    with pytest.raises(ConfigError, match=r"server.tls_cert: cannot use"):
        async with run_gateway(config, base_dir=HANDLERS):
            pass


async def test_health_probes_on_the_public_listener(tmp_path: Path) -> None:
    async with run_gateway({}, base_dir=HANDLERS) as gw, aiohttp.ClientSession() as http:
        async with http.get(gw.http_url + "/healthz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with http.get(gw.http_url + "/readyz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ready"})
        gw.status.accepting = False  # what close() sets first: the drain has begun
        async with http.get(gw.http_url + "/readyz") as response:
            assert (response.status, await response.json()) == (503, {"status": "draining"})
        async with http.get(gw.http_url + "/healthz") as response:
            assert response.status == 200


async def test_a_room_send_over_wss_goes_through_tls(pki: LocalTls) -> None:
    """The fan-out loop writes plain sockets by file descriptor; a TLS socket's descriptor
    carries ciphertext, so its frames must go through the TLS transport."""
    config = {"server": {"tls_cert": str(pki.cert), "tls_key": str(pki.key)}, "routes": routes()}
    async with run_gateway(config, base_dir=HANDLERS) as gw:
        async with websockets.connect(gw.websocket_url, ssl=_verifying(pki)) as ws:
            await eventually(lambda: gw.hub.connections)
            (cid,) = gw.hub.connections
            await gw.rooms.join("secure", cid)
            assert await gw.rooms.send("secure", "over tls") == 1
            assert await asyncio.wait_for(ws.recv(), 5) == "over tls"

"""The local CA and the HTTPS management listener: ``https://{domainName}/{stage}`` just works.

Pure parts (CA reuse, leaf re-issue, file modes, bundle) run without a loop; the end-to-end tests
serve the gateway's management API over TLS and call it with a real boto3 client that verifies
the certificate, as an unchanged Lambda handler would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import multiprocessing
import os
import ssl
import stat
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import websockets
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hubbub.config import ManagementConfig
from hubbub.gateway.app import Gateway
from hubbub.gateway.management.api import ManagementApi
from hubbub.gateway.tls import (
    LocalTls,
    default_trust_bundle,
    ensure_local_tls,
    event_domain,
    handler_environment,
    server_ssl_context,
)
from hubbub.gateway.transport_aiohttp import Listener, start_http
from hubbub.testing import run_gateway
from tests.helpers import eventually

UNKNOWN_ID = "AAAAAAAAAAAAAAA="


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(path: Path) -> set[str]:
    ext = _cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in ext}


@pytest.fixture
def trust(tmp_path: Path) -> Path:
    """A stand-in for the system's CA bundle: one recognisable (self-signed) certificate."""
    other = ensure_local_tls(tmp_path / "other-ca", [], trust_bundle=None)
    return other.ca_cert


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- the CA -----------------------------------------------------------------------------------
def test_ca_is_created_once_and_reused(state: Path, trust: Path) -> None:
    first = ensure_local_tls(state, [], trust_bundle=trust)
    ca_pem, ca_key = first.ca_cert.read_bytes(), first.ca_key.read_bytes()
    second = ensure_local_tls(state, ["example.test"], trust_bundle=trust)
    assert second == first
    assert second.ca_cert.read_bytes() == ca_pem
    assert second.ca_key.read_bytes() == ca_key


def test_ca_is_a_signing_ca_named_hubbub_local_ca(state: Path, trust: Path) -> None:
    ca = _cert(ensure_local_tls(state, [], trust_bundle=trust).ca_cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hubbub local CA"
    assert ca.subject == ca.issuer
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert lifetime >= dt.timedelta(days=3650)


def test_a_new_ca_replaces_one_whose_key_is_missing(state: Path, trust: Path) -> None:
    first = ensure_local_tls(state, [], trust_bundle=trust)
    old_ca = first.ca_cert.read_bytes()
    first.ca_key.unlink()
    second = ensure_local_tls(state, [], trust_bundle=trust)
    assert second.ca_cert.read_bytes() != old_ca
    # The leaf was issued again, by the new CA.
    _cert(second.cert).verify_directly_issued_by(_cert(second.ca_cert))


# -- the leaf ---------------------------------------------------------------------------------
def test_leaf_names_loopback_and_the_configured_hosts(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(
        state, ["Gateway.Example.test:8443", "[fd00::7]:8443", "0.0.0.0", "::"], trust_bundle=trust
    )
    names = _san(tls.cert)
    assert names == {
        "localhost",
        "gateway.example.test",
        str(ipaddress.ip_address("127.0.0.1")),
        str(ipaddress.ip_address("::1")),
        str(ipaddress.ip_address("fd00::7")),
    }


def test_leaf_encodes_idn_and_leaves_out_non_names(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, ["bücher.test", "a..b"], trust_bundle=trust)
    names = _san(tls.cert)
    assert "xn--bcher-kva.test" in names
    assert not any(".." in name for name in names)


def test_leaf_is_a_server_certificate_issued_by_the_ca(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    leaf = _cert(tls.cert)
    leaf.verify_directly_issued_by(_cert(tls.ca_cert))
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Apple platforms reject server certificates valid for more than 825 days.
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < dt.timedelta(days=825)


def test_leaf_is_kept_while_hosts_are_unchanged(state: Path, trust: Path) -> None:
    first = ensure_local_tls(state, ["example.test"], trust_bundle=trust)
    serial = _cert(first.cert).serial_number
    ensure_local_tls(state, ["example.test:9999"], trust_bundle=trust)  # same host, other port
    assert _cert(first.cert).serial_number == serial


def test_leaf_is_reissued_for_new_hosts(state: Path, trust: Path) -> None:
    first = ensure_local_tls(state, ["one.test"], trust_bundle=trust)
    serial = _cert(first.cert).serial_number
    ca_pem = first.ca_cert.read_bytes()
    second = ensure_local_tls(state, ["two.test"], trust_bundle=trust)
    assert _cert(second.cert).serial_number != serial
    assert "two.test" in _san(second.cert)
    assert "one.test" not in _san(second.cert)
    assert second.ca_cert.read_bytes() == ca_pem


def test_leaf_is_reissued_within_30_days_of_expiry(state: Path, trust: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    first = ensure_local_tls(state, [], trust_bundle=trust, now=now)
    leaf = _cert(first.cert)
    ca_pem = first.ca_cert.read_bytes()
    ensure_local_tls(state, [], trust_bundle=trust, now=leaf.not_valid_after_utc - dt.timedelta(31))
    assert _cert(first.cert).serial_number == leaf.serial_number
    ensure_local_tls(state, [], trust_bundle=trust, now=leaf.not_valid_after_utc - dt.timedelta(29))
    assert _cert(first.cert).serial_number != leaf.serial_number
    assert first.ca_cert.read_bytes() == ca_pem


def test_a_leaf_with_a_foreign_key_is_reissued(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    serial = _cert(tls.cert).serial_number
    tls.key.write_bytes(tls.ca_key.read_bytes())  # e.g. a crash between the two writes
    ensure_local_tls(state, [], trust_bundle=trust)
    assert _cert(tls.cert).serial_number != serial
    server_ssl_context(tls)  # key and certificate match again


# -- files ------------------------------------------------------------------------------------
@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_file_modes(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(state) == 0o700
    assert mode(tls.ca_key) == 0o600
    assert mode(tls.key) == 0o600
    assert mode(tls.ca_cert) == 0o644
    assert mode(tls.cert) == 0o644
    assert mode(tls.bundle) == 0o644


def test_a_key_that_lost_its_mode_is_tightened(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    tls.ca_key.chmod(0o644)
    tls.key.chmod(0o640)
    ensure_local_tls(state, [], trust_bundle=trust)
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600


def test_an_existing_state_dir_keeps_its_mode(tmp_path: Path, trust: Path) -> None:
    # The user's own folder: hubbub creates 0700 folders, it does not chmod existing ones.
    tmp_path.joinpath("mine").mkdir(mode=0o755)
    tmp_path.joinpath("mine").chmod(0o755)
    ensure_local_tls(tmp_path / "mine", [], trust_bundle=trust)
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o755


def _first_start(state: str, trust: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        tls = ensure_local_tls(Path(state), [], trust_bundle=Path(trust))
        results.put(tls.ca_cert.read_bytes())
    except Exception as exc:  # the parent asserts on what each child reports
        results.put(repr(exc))


def test_processes_starting_together_share_one_state_dir_and_one_ca(
    tmp_path: Path, trust: Path
) -> None:
    # `hubbub serve --workers N` starts N gateways at once on one state dir: none may fail on
    # the folder another has just created, and all must end up with the same CA.
    context = multiprocessing.get_context("fork")
    for attempt in range(6):
        state = tmp_path / f"state-{attempt}"
        barrier, results = context.Barrier(4), context.Queue()
        procs = [
            context.Process(target=_first_start, args=(str(state), str(trust), barrier, results))
            for _ in range(4)
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(60)
        assert all(isinstance(out, bytes) for out in outcomes), outcomes
        assert len(set(outcomes)) == 1
        assert stat.S_IMODE(state.stat().st_mode) == 0o700


# -- the bundle and the environment -----------------------------------------------------------
def test_bundle_is_the_ca_followed_by_the_default_bundle(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    bundle = tls.bundle.read_bytes()
    assert bundle.startswith(tls.ca_cert.read_bytes())
    assert bundle.endswith(trust.read_bytes())


def test_bundle_without_a_default_bundle_is_the_ca(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hubbub.gateway.tls.default_trust_bundle", lambda **_: None)
    tls = ensure_local_tls(state, [])
    assert tls.bundle.read_bytes() == tls.ca_cert.read_bytes()


def test_default_trust_bundle_is_what_botocore_would_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.httpsession import where

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    bundle = default_trust_bundle()
    assert bundle is not None
    assert bundle.resolve() == Path(where()).resolve()


def test_default_trust_bundle_keeps_a_users_aws_ca_bundle(tmp_path: Path, trust: Path) -> None:
    # A corporate proxy's bundle, say: botocore would use it, so ours must include it.
    assert default_trust_bundle({"AWS_CA_BUNDLE": str(trust)}) == trust


def test_default_trust_bundle_ignores_our_own_bundle(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    found = default_trust_bundle({"AWS_CA_BUNDLE": str(tls.bundle)}, exclude=tls.bundle)
    assert found != tls.bundle


def test_handler_environment_names_the_bundle_and_the_ca(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    assert handler_environment(tls) == {
        "AWS_CA_BUNDLE": str(tls.bundle),
        "NODE_EXTRA_CA_CERTS": str(tls.ca_cert),
    }


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1:8443"),
        ("gateway.test", "gateway.test:8443"),
        ("::1", "[::1]:8443"),
        ("0.0.0.0", "127.0.0.1:8443"),
        ("::", "[::1]:8443"),
    ],
)
def test_event_domain(host: str, expected: str) -> None:
    assert event_domain(host, 8443) == expected


# -- TLS on the wire --------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _tls_echo(tls: LocalTls) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ssl_context(tls))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_strict_python_client_accepts_the_certificate(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    client = ssl.create_default_context(cafile=str(tls.ca_cert))
    # Python 3.13's default: RFC 5280 checks (AKI, critical basicConstraints, ...).
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    async with _tls_echo(tls) as port:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        assert writer.get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_a_name_outside_the_certificate_is_refused(state: Path, trust: Path) -> None:
    tls = ensure_local_tls(state, [], trust_bundle=trust)
    client = ssl.create_default_context(cafile=str(tls.ca_cert))
    async with _tls_echo(tls) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname="elsewhere.test"
            )


# -- end to end: boto3 over HTTPS against the gateway's management API ------------------------
@dataclass
class HttpsGateway:
    gateway: Gateway
    tls: LocalTls
    listener: Listener

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.listener.port}/{self.gateway.config.api.stage}"


@pytest.fixture
async def https_gateway(tmp_path: Path, trust: Path) -> AsyncIterator[HttpsGateway]:
    """A real gateway plus a second management listener serving the same API over TLS."""
    tls = ensure_local_tls(tmp_path / "state", [])  # the real default bundle, as in production
    async with run_gateway({}, base_dir=tmp_path) as gw:
        api = ManagementApi(gw, stage=gw.config.api.stage, health=gw.health)
        listener = await start_http(
            host="127.0.0.1",
            port=0,
            handler=api.handle,
            max_body=gw.config.limits.max_post_bytes,
            ssl_context=server_ssl_context(tls),
        )
        try:
            yield HttpsGateway(gw, tls, listener)
        finally:
            await listener.close()


def _management(endpoint: str, **kwargs: Any) -> Any:
    # A fresh session: boto3's default session would cache configuration between tests.
    return boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1", **kwargs
    )


async def test_boto3_verifies_the_certificate_with_the_bundle(https_gateway: HttpsGateway) -> None:
    def call() -> None:
        client = _management(https_gateway.endpoint, verify=str(https_gateway.tls.bundle))
        with pytest.raises(client.exceptions.GoneException):
            client.get_connection(ConnectionId=UNKNOWN_ID)

    await asyncio.to_thread(call)


async def test_boto3_trusts_the_ca_through_aws_ca_bundle(
    https_gateway: HttpsGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in handler_environment(https_gateway.tls).items():
        monkeypatch.setenv(key, value)

    def call() -> None:
        client = _management(https_gateway.endpoint)  # no verify=: what a handler writes
        with pytest.raises(client.exceptions.GoneException):
            client.get_connection(ConnectionId=UNKNOWN_ID)

    await asyncio.to_thread(call)


async def test_boto3_without_the_ca_refuses_the_endpoint(
    https_gateway: HttpsGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the two tests above: certificate checks are really on.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)

    def call() -> None:
        client = _management(https_gateway.endpoint)
        with pytest.raises(botocore.exceptions.SSLError):
            client.get_connection(ConnectionId=UNKNOWN_ID)

    await asyncio.to_thread(call)


async def test_post_to_connection_over_https_reaches_the_client(
    https_gateway: HttpsGateway,
) -> None:
    gw = https_gateway.gateway
    async with websockets.connect(gw.websocket_url) as ws:
        connection_id = (await eventually(lambda: list(gw.hub.connections), message="connect"))[0]

        def post() -> None:
            client = _management(https_gateway.endpoint, verify=str(https_gateway.tls.bundle))
            client.post_to_connection(ConnectionId=connection_id, Data=b"over https")

        await asyncio.to_thread(post)
        assert await asyncio.wait_for(ws.recv(), 5) == "over https"


# -- the promise itself: an unchanged handler building https://{domainName}/{stage} ----------
_AWS_STYLE_HANDLER = textwrap.dedent(
    '''
    """Written exactly as for AWS: the endpoint comes from the event, no verify=, no env."""
    import boto3


    def handler(event, context):
        rc = event["requestContext"]
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"https://{rc['domainName']}/{rc['stage']}",
        )
        client.post_to_connection(ConnectionId=rc["connectionId"], Data=b"pong")
        return {"statusCode": 200}
    '''
)


def _gateway_serves_tls() -> bool:
    return {"tls_port", "state_dir"} <= {f.name for f in fields(ManagementConfig)}


@pytest.mark.skipif(
    not _gateway_serves_tls(),
    reason="Gateway does not serve TLS yet ([management] tls_port/state_dir not wired)",
)
@pytest.mark.parametrize("in_process", [False, True])  # over TLS, and answered in-process
async def test_an_unchanged_aws_handler_reaches_the_gateway_over_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    (tmp_path / "aws_style.py").write_text(_AWS_STYLE_HANDLER)
    config = {
        "management": {
            "tls_port": 0,
            "state_dir": str(tmp_path / "state"),
            "in_process": in_process,
        },
        "routes": {"ping": {"handler": "aws_style.handler"}},
    }
    async with run_gateway(config, base_dir=tmp_path) as gw:
        assert gw.api_context is not None
        assert gw.api_context.domain_name.startswith("127.0.0.1:")
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "ping"}')
            assert await asyncio.wait_for(ws.recv(), 10) == "pong"


_KEEPS_ITS_CLIENT = textwrap.dedent(
    '''
    """The usual Lambda pattern: one client per container, kept between invocations."""
    import boto3

    client = None


    def handler(event, context):
        global client
        rc = event["requestContext"]
        if client is None:
            client = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=f"https://{rc['domainName']}/{rc['stage']}",
            )
        client.post_to_connection(ConnectionId=rc["connectionId"], Data=b"pong")
        return {"statusCode": 200}
    '''
)


def _open_sockets_on_port(port: int) -> list[object]:
    """Server-side asyncio transports of this process still holding a socket on ``port``."""
    import gc
    from asyncio.selector_events import _SelectorSocketTransport

    found = []
    for obj in gc.get_objects():
        # type(), not isinstance(): gc also lists weak proxies, whose referent may be gone.
        if type(obj) is _SelectorSocketTransport and not obj.is_closing():
            sockname = obj.get_extra_info("sockname")
            if sockname is not None and sockname[1] == port:
                found.append(obj)
    return found


async def test_closing_the_gateway_closes_https_connections_a_kept_client_holds_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A boto3 client kept alive keeps its TLS connection idle: the listener's graceful close sends
    # close_notify and would wait for an answer that never comes, leaving the socket open (and a
    # ResourceWarning when it is collected).
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    (tmp_path / "keeps.py").write_text(_KEEPS_ITS_CLIENT)
    config = {
        "management": {"state_dir": str(tmp_path / "state"), "in_process": False},
        "routes": {"ping": {"handler": "keeps.handler"}},
    }
    async with run_gateway(config, base_dir=tmp_path) as gw:
        assert gw.management_tls is not None
        tls_port = gw.management_tls.port
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "ping"}')
            assert await asyncio.wait_for(ws.recv(), 10) == "pong"
        assert _open_sockets_on_port(tls_port), "the kept client should hold a connection"
    assert _open_sockets_on_port(tls_port) == []

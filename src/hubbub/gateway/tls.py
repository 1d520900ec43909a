"""A local certificate authority so that ``https://{domainName}/{stage}`` works on any machine.

Lambda handlers build the management endpoint from the event, as docs/https-endpoint.md
shows: ``boto3.client("apigatewaymanagementapi",
endpoint_url=f"https://{rc['domainName']}/{rc['stage']}")``. For that URL to reach hubbub
unchanged, hubbub serves its management API over TLS as well, with a
certificate the handler's SDK trusts.

Theory of operation:

- On first start a CA (EC P-256, 10 years, CN "hubbub local CA") is created in ``state_dir`` and
  reused afterwards, so a CA trusted once (browser, OS store, ``curl --cacert``) stays trusted.
- A leaf certificate for the loopback names plus the configured hosts is issued by that CA, and
  issued again when the host set changes, the CA changes, or the leaf expires within 30 days.
- Handlers are told about the CA the way AWS SDKs look for one: ``AWS_CA_BUNDLE`` (boto3,
  botocore, aiobotocore, the Go and CLI tools) and ``NODE_EXTRA_CA_CERTS`` (Node, read once when
  a Node process starts). ``AWS_CA_BUNDLE`` *replaces* botocore's trust store for every call a
  handler makes (DynamoDB, S3, ...), so the file it names, ``bundle.pem``, is our CA followed by
  the bundle botocore would otherwise have used.

Files in ``state_dir`` (created with mode 0700)::

    ca.pem          the CA certificate: the file to trust in other tools
    ca-key.pem      the CA private key (0600): whoever reads it can impersonate any site to
                    software that trusts ca.pem
    server.pem      the leaf certificate served by the HTTPS management listener
    server-key.pem  its private key (0600)
    bundle.pem      ca.pem + the default trust bundle, for AWS_CA_BUNDLE

Everything here is synchronous and runs once at start-up (a few milliseconds).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import importlib.util
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hubbub.errors import ConfigError

__all__ = [
    "LOOPBACK_HOSTS",
    "LocalTls",
    "default_state_dir",
    "default_trust_bundle",
    "ensure_local_tls",
    "event_domain",
    "handler_environment",
    "server_ssl_context",
]

log = logging.getLogger("hubbub.tls")

CA_NAME = "hubbub local CA"
# Names every leaf carries, whatever the configuration: in-process handlers reach the listener
# over loopback, and "localhost" is what people type.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# Bind addresses that mean "every interface": not names a client can connect to or verify.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})

_CA_DAYS = 3650
# Apple platforms refuse TLS server certificates valid for more than 825 days, even from a
# user-trusted CA; 397 days also satisfies the stricter public-CA rule that some tools apply.
_LEAF_DAYS = 397
_RENEW_BEFORE = dt.timedelta(days=30)
# Backdated a little so a client whose clock runs slightly behind still accepts a fresh cert.
_BACKDATE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class LocalTls:
    """Paths of the local CA, the leaf served by the HTTPS listener, and the handler bundle."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    bundle: Path


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the CA lives when the config does not say: one per user, like mkcert's CAROOT.

    ``$XDG_STATE_HOME/hubbub`` (default ``~/.local/state/hubbub``); ``%LOCALAPPDATA%\\hubbub``
    on Windows. One CA per user means trusting it once in a browser is enough for every project.
    """
    env = os.environ if environ is None else environ
    if os.name == "nt" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "hubbub"
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hubbub"


def ensure_local_tls(
    state_dir: Path,
    hosts: Sequence[str],
    *,
    trust_bundle: Path | None = None,
    now: dt.datetime | None = None,
) -> LocalTls:
    """Create or reuse the CA in ``state_dir`` and make sure the leaf covers ``hosts``.

    ``hosts`` are names or IP addresses, optionally with a port (``"example.test:8443"``,
    ``"[::1]:8443"``); the loopback names are always added and wildcard bind addresses
    (``0.0.0.0``, ``::``) skipped. ``trust_bundle`` is what ``bundle.pem`` appends to our CA;
    by default :func:`default_trust_bundle`. ``now`` is for tests.
    """
    now = now or dt.datetime.now(dt.UTC)
    tls = LocalTls(
        ca_cert=state_dir / "ca.pem",
        ca_key=state_dir / "ca-key.pem",
        cert=state_dir / "server.pem",
        key=state_dir / "server-key.pem",
        bundle=state_dir / "bundle.pem",
    )
    # exist_ok: gateways that start together (`--workers N`) race to create it; an existing
    # folder keeps its mode (mkdir's mode applies only to a folder it creates).
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = _general_names(hosts)
    # Two hubbub processes sharing a state dir (several nodes on one machine) must not both
    # create a CA: the second would orphan the first one's leaf.
    with _locked(state_dir / ".lock"):
        ca_cert, ca_key = _ensure_ca(tls, now)
        _ensure_leaf(tls, ca_cert, ca_key, names, now)
        base = (
            trust_bundle if trust_bundle is not None else default_trust_bundle(exclude=tls.bundle)
        )
        _write_bundle(tls, base)
    return tls


def server_ssl_context(tls: LocalTls) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or later) serving the leaf certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    return context


def public_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The public listener's context (``[server] tls_cert``/``tls_key``, optional ``tls_ca``).

    A file that is not PEM, or a key that does not match the certificate, is a ConfigError
    naming the key; with ``client_ca`` only clients presenting a certificate it signed connect.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "server.tls_cert", f"cannot use {cert} with {key}: {exc.strerror or exc}"
        ) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("server.tls_ca", f"cannot read {client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def handler_environment(tls: LocalTls) -> dict[str, str]:
    """Environment variables that make handlers' SDKs trust the local CA.

    ``AWS_CA_BUNDLE`` names the full bundle (it replaces botocore's trust store);
    ``NODE_EXTRA_CA_CERTS`` names the CA alone (Node adds it to its built-in roots).
    ``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE`` are deliberately left out: they would change
    trust for every library in the process (``requests``, ``httpx``, OpenSSL itself), not only
    for the AWS SDK calls a Lambda handler makes; set them in ``[environment]`` if wanted.
    """
    return {"AWS_CA_BUNDLE": str(tls.bundle), "NODE_EXTRA_CA_CERTS": str(tls.ca_cert)}


def event_domain(host: str, port: int) -> str:
    """The ``domainName`` for events when the HTTPS listener is bound to ``host``:``port``.

    A wildcard bind address is replaced by loopback (where in-process handlers connect); IPv6
    addresses are bracketed so that ``https://{domainName}/{stage}`` is a valid URL.
    """
    if host in _WILDCARDS:
        host = "::1" if host == "::" else "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_trust_bundle(
    environ: Mapping[str, str] | None = None, *, exclude: Path | None = None
) -> Path | None:
    """The CA bundle botocore would use if ``AWS_CA_BUNDLE`` were not ours.

    In botocore's order: an ``AWS_CA_BUNDLE`` already set (unless it is ``exclude``, our own
    bundle from an earlier start in this process), ``certifi.where()``, botocore's vendored
    ``cacert.pem``; then OpenSSL's default CA file for a process without botocore. ``None`` when
    none exists.
    """
    env = os.environ if environ is None else environ
    given = env.get("AWS_CA_BUNDLE")
    if given and Path(given).is_file() and not _same_file(Path(given), exclude):
        return Path(given)
    try:
        import certifi  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415 - optional dependency
    except ImportError:
        pass
    else:
        return Path(certifi.where())
    spec = importlib.util.find_spec("botocore")
    if spec is not None and spec.origin:
        vendored = Path(spec.origin).parent / "cacert.pem"
        if vendored.is_file():
            return vendored
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and Path(cafile).is_file():
        return Path(cafile)
    return None


# -- the CA -----------------------------------------------------------------------------------
def _ensure_ca(
    tls: LocalTls, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    existing = _load_ca(tls)
    if existing is not None and existing[0].not_valid_after_utc - now > _RENEW_BEFORE:
        _tighten(tls.ca_key)
        return existing
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hubbub local development CA"),
            # Tells CAs of several machines or users apart in a trust store listing.
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _owner()),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(tls.ca_key, _key_pem(key), 0o600)
    _write(tls.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info(
        "created a local CA for the HTTPS management endpoint",
        extra={"fields": {"ca": str(tls.ca_cert)}},
    )
    return cert, key


def _load_ca(tls: LocalTls) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None  # missing or unreadable: start over with a new CA
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _matches(cert, key):
        return None
    return cert, key


# -- the leaf ---------------------------------------------------------------------------------
def _ensure_leaf(
    tls: LocalTls,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: frozenset[x509.GeneralName],
    now: dt.datetime,
) -> None:
    if _leaf_is_current(tls, ca_cert, names, now):
        _tighten(tls.key)
        return
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "hubbub management API"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hubbub local development CA"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sorted(names, key=_name_order)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a crash between the two writes leaves a mismatched pair, which the next
    # start detects (_leaf_is_current) and replaces.
    _write(tls.key, _key_pem(key), 0o600)
    _write(tls.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _leaf_is_current(
    tls: LocalTls,
    ca_cert: x509.Certificate,
    names: frozenset[x509.GeneralName],
    now: dt.datetime,
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
        key = serialization.load_pem_private_key(tls.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _matches(cert, key):
        return False
    if cert.not_valid_after_utc - now <= _RENEW_BEFORE:
        return False
    return frozenset(san) == names


def _general_names(hosts: Sequence[str]) -> frozenset[x509.GeneralName]:
    names: set[x509.GeneralName] = set()
    for given in (*LOOPBACK_HOSTS, *hosts):
        host = _strip_port(given.strip()).lower()
        if host in _WILDCARDS:
            continue
        name = _general_name(host)
        if name is None:
            # Not a usable host name (e.g. "a..b"): leave it out rather than refuse to start;
            # a client using it fails the name check and says so.
            log.warning(
                "not a host name, left out of the certificate", extra={"fields": {"host": given}}
            )
        else:
            names.add(name)
    return frozenset(names)


def _general_name(host: str) -> x509.GeneralName | None:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        # Certificates carry ASCII (A-label) DNS names; encode internationalised ones.
        return x509.DNSName(host.encode("idna").decode("ascii"))
    except UnicodeError:
        return None


def _strip_port(host: str) -> str:
    if host.startswith("["):  # "[::1]:8443" or "[::1]"
        return host[1:].partition("]")[0]
    if host.count(":") == 1:  # "name:8443"; a bare IPv6 address has several colons
        return host.partition(":")[0]
    return host


def _name_order(name: x509.GeneralName) -> tuple[int, str]:
    # DNS names first, then addresses: deterministic, and readable in `openssl x509 -text`.
    return (0 if isinstance(name, x509.DNSName) else 1, str(name.value))


# -- the bundle -------------------------------------------------------------------------------
def _write_bundle(tls: LocalTls, base: Path | None) -> None:
    ca_pem = tls.ca_cert.read_bytes()
    extra = b""
    if base is not None:
        try:
            extra = base.read_bytes()
        except OSError as exc:
            log.warning(
                "cannot read the default CA bundle; handlers will trust only the local CA",
                extra={"fields": {"bundle": str(base), "error": str(exc)}},
            )
    else:
        log.warning("no default CA bundle found; handlers will trust only the local CA")
    content = ca_pem.rstrip(b"\n") + b"\n"
    if extra:
        content += extra if extra.endswith(b"\n") else extra + b"\n"
    with contextlib.suppress(OSError):
        if tls.bundle.read_bytes() == content:
            return  # unchanged: leave the file (and its mtime) alone
    _write(tls.bundle, content, 0o644)


# -- small helpers ----------------------------------------------------------------------------
def _matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    public = cert.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public == key.public_key()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename) with ``mode`` from the first byte on.

    Creating the file with its final mode, instead of chmod after writing, leaves no moment in
    which a private key is readable by others.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, mode)  # the umask may have removed bits we asked for (0644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _tighten(path: Path) -> None:
    # A key restored from a backup or copied by hand may have lost its 0600.
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def _same_file(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:  # Windows: no advisory locks; concurrent first starts are rare there
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock

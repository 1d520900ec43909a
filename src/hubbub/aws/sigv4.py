"""Verify AWS Signature Version 4 requests exactly as botocore signs them.

Theory of operation
-------------------
A SigV4 client never sends its secret; it sends a *claim* (access key id, date, region, service,
the list of headers it signed) plus an HMAC over a canonical rendering of the request. The verifier
rebuilds that canonical rendering from the bytes it received, derives the same signing key from the
secret it holds for the claimed access key, and compares signatures in constant time.

Everything hinges on rebuilding the canonical request byte for byte the way the *client* built it.
The reference client is botocore (``SigV4Auth`` in ``botocore.auth``). The canonical request is
built here, from the client's own claim (its ``SignedHeaders``, its query as sent), as botocore
built it:

- canonical URI: ``quote(normalize_url_path(raw_path), safe="/~")`` applied to the path *as it
  was sent*, which is already percent-encoded. The URI is therefore double-encoded:
  ``/dev/@connections/abc%3D`` → ``/dev/%40connections/abc%253D``.
- canonical query: ``key=value`` pairs, each part URI-encoded with ``-_.~`` safe, sorted.
- canonical headers: the names listed in ``SignedHeaders``, values trimmed and inner runs of
  spaces collapsed, repeated headers joined with ``,``.
- payload hash: the ``x-amz-content-sha256`` header when present (which may be the literal
  ``UNSIGNED-PAYLOAD``), else the SHA-256 of the body.

What follows — the string to sign, the signing key and the signature — is computed by botocore's
own ``SigV4Auth`` (:func:`_signed`): the same code that signed the request checks it.

Both transports of the claim are accepted: the ``Authorization`` header (what the management API
clients use) and a presigned query string (``X-Amz-Signature`` and friends, what a browser uses to
open an IAM-authorised WebSocket). Any region is accepted; the service must match.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path, remove_dot_segments

from hubbub.errors import SignatureError

__all__ = [
    "ALGORITHM",
    "UNSIGNED_PAYLOAD",
    "Credential",
    "SigV4Verifier",
    "canonical_query_string",
    "canonical_uri",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_SHA256_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
_TERMINATOR = "aws4_request"
# AWS caps presigned URLs at seven days.
_MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
_QUERY_SAFE = "-_.~"
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)


@dataclass(frozen=True)
class Credential:
    """An access key pair the gateway accepts; the secret is kept out of ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class _Claim:
    """What the client says it signed, parsed from the header or the presigned query."""

    access_key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: str
    signature: str
    timestamp: str
    # None for header auth: the allowed window is then ±max_skew around the timestamp.
    expires: int | None
    # The header that carried the date for header auth; it must itself be signed.
    date_header: str | None


def canonical_uri(raw_path: str) -> str:
    """Return the canonical URI botocore signs for ``raw_path`` (the path as sent, still encoded).

    Mirrors ``SigV4Auth._normalize_url_path``: dot segments and empty segments are removed, then
    the result is percent-encoded again, so ``%3D`` becomes ``%253D`` and ``@`` becomes ``%40``.
    (:meth:`SigV4Verifier.verify` refuses a path this would change: the router does not
    normalise, so the signature would cover a different path than the one served.)
    """
    normalized: str = normalize_url_path(raw_path)
    return quote(normalized, safe="/~")


def canonical_query_string(raw_query: str, *, exclude: Iterable[str] = ()) -> str:
    """Return the canonical query string for ``raw_query`` (the query as sent, without ``?``).

    Each name and value is decoded and re-encoded with only ``-_.~`` left bare, then the pairs are
    sorted. For a query botocore built this is the identity on each pair (it encodes the same way),
    and for a client that sent a character bare it is what the SigV4 specification prescribes.
    Parameters whose decoded name is in ``exclude`` are left out (``X-Amz-Signature`` when
    presigned).
    """
    excluded = set(exclude)
    pairs: list[tuple[str, str]] = []
    for name, value in _split_query(raw_query):
        if unquote(name) in excluded:
            continue
        pairs.append(
            (quote(unquote(name), safe=_QUERY_SAFE), quote(unquote(value), safe=_QUERY_SAFE))
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _split_query(raw_query: str) -> list[tuple[str, str]]:
    if not raw_query:
        return []
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return pairs


def _fold_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    # items() rather than keys(): a multidict (aiohttp's CIMultiDictProxy) yields every
    # occurrence of a repeated header there, and SigV4 signs them joined with commas.
    folded: dict[str, list[str]] = {}
    for name, value in headers.items():
        folded.setdefault(name.lower(), []).append(value)
    return folded


def _single(folded: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = folded.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise SignatureError(f"Repeated {name} header")
    return values[0]


def _signed(secret: str, claim: _Claim, canonical_request: str) -> tuple[str, str]:
    """The string to sign and the signature botocore makes of ``canonical_request`` for
    ``claim``'s key, region, service and time (the claim's scope date is that time's date)."""
    signer = SigV4Auth(Credentials(claim.access_key_id, secret), claim.service, claim.region)
    request = AWSRequest()
    request.context["timestamp"] = claim.timestamp
    string_to_sign: str = signer.string_to_sign(request, canonical_request)
    signature: str = signer.signature(string_to_sign, request)
    return string_to_sign, signature


def _parse_credential(value: str) -> tuple[str, str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or not all(parts):
        raise SignatureError(
            "Credential should be scoped to a valid region, like "
            "'<access key>/<yyyymmdd>/<region>/<service>/aws4_request'"
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def _parse_header_claim(authorization: str, folded: Mapping[str, Sequence[str]]) -> _Claim:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(f"Authorization header must use the {ALGORITHM} algorithm")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or key in fields:
            raise SignatureError(f"Malformed Authorization header component {key!r}")
        fields[key] = value
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise SignatureError(f"Authorization header requires {', '.join(missing)}")
    access_key_id, scope_date, region, service, terminator = _parse_credential(fields["Credential"])

    amz_date = _single(folded, "x-amz-date")
    if amz_date is not None:
        timestamp, date_header = amz_date.strip(), "x-amz-date"
    else:
        # SigV4 allows the plain Date header instead; botocore switches to it when one is set.
        date = _single(folded, "date")
        if date is None:
            raise SignatureError("Authorization header requires an X-Amz-Date or Date header")
        try:
            parsed = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise SignatureError("Date header is not a valid HTTP date") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        timestamp, date_header = parsed.astimezone(UTC).strftime(_TIMESTAMP_FORMAT), "date"

    return _Claim(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=fields["SignedHeaders"],
        signature=fields["Signature"],
        timestamp=timestamp,
        expires=None,
        date_header=date_header,
    )


def _parse_query_claim(pairs: Sequence[tuple[str, str]]) -> _Claim:
    params: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = unquote(raw_name)
        if name.startswith("X-Amz-"):
            if name in params:
                raise SignatureError(f"Repeated {name} query parameter")
            params[name] = unquote(raw_value)
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError(f"X-Amz-Algorithm must be {ALGORITHM}")
    required = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")
    missing = [k for k in (*required, "X-Amz-Signature") if k not in params]
    if missing:
        raise SignatureError(f"Presigned request requires {', '.join(missing)}")
    expires_text = params["X-Amz-Expires"]
    if not expires_text.isdigit() or not 0 < int(expires_text) <= _MAX_PRESIGN_EXPIRES:
        raise SignatureError(
            f"X-Amz-Expires must be a number of seconds between 1 and {_MAX_PRESIGN_EXPIRES}"
        )
    access_key_id, scope_date, region, service, terminator = _parse_credential(
        params["X-Amz-Credential"]
    )
    return _Claim(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=params["X-Amz-SignedHeaders"],
        signature=params["X-Amz-Signature"],
        timestamp=params["X-Amz-Date"],
        expires=int(expires_text),
        date_header=None,
    )


class SigV4Verifier:
    """Checks SigV4 signatures against a fixed set of credentials.

    Pure: give it the request as received and the current time; it touches no clock or network.
    """

    def __init__(
        self,
        credentials: Iterable[Credential],
        *,
        service: str = "execute-api",
        max_skew_seconds: int = 300,
    ) -> None:
        self._secrets = {c.access_key_id: c.secret_access_key for c in credentials}
        self._service = service
        self._max_skew = timedelta(seconds=max_skew_seconds)

    def verify(
        self,
        *,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> str:
        """Return the access key id that signed the request, or raise :class:`SignatureError`.

        ``raw_path`` is the path exactly as sent (still percent-encoded, without the query);
        ``raw_query`` is the query as sent, without ``?``. ``headers`` may use any case and may be
        a multidict. ``now`` must be timezone-aware.
        """
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        folded = _fold_headers(headers)
        pairs = _split_query(raw_query)
        authorization = _single(folded, "authorization")
        if authorization is not None:
            claim = _parse_header_claim(authorization, folded)
        elif any(unquote(name) == "X-Amz-Algorithm" for name, _ in pairs):
            claim = _parse_query_claim(pairs)
        else:
            raise SignatureError(
                "Missing Authentication Token: no Authorization header "
                "and no X-Amz-Signature query parameter"
            )

        self._check_scope(claim)
        self._check_time(claim, now)
        secret = self._secrets.get(claim.access_key_id)
        if secret is None:
            # AWS's wording; the key id is not echoed (it would confirm what a prober sent).
            raise SignatureError("The security token included in the request is invalid.")
        if raw_path and remove_dot_segments(raw_path) != raw_path:
            # botocore signs the path with dot and empty segments removed, but the router
            # reads it as sent: a signature for GET /dev/@connections/x must not cover
            # GET /dev/@connections/x/attributes/.. (a different route).
            raise SignatureError("The request path must not contain '.', '..' or empty segments")
        payload_hash = _payload_hash(folded, body)
        header_block = _canonical_headers(claim, folded)

        exclude = ("X-Amz-Signature",) if claim.expires is not None else ()
        canonical_request = "\n".join(
            [
                method.upper(),
                canonical_uri(raw_path),
                canonical_query_string(raw_query, exclude=exclude),
                header_block + "\n",
                claim.signed_headers,
                payload_hash,
            ]
        )
        string_to_sign, expected = _signed(secret, claim, canonical_request)
        if not hmac.compare_digest(expected, claim.signature):
            raise SignatureError(
                _MISMATCH, canonical_request=canonical_request, string_to_sign=string_to_sign
            )
        return claim.access_key_id

    def _check_scope(self, claim: _Claim) -> None:
        if claim.service != self._service:
            raise SignatureError(
                f"Credential should be scoped to correct service: '{self._service}'"
            )
        if claim.terminator != _TERMINATOR:
            raise SignatureError(f"Credential scope must end with '{_TERMINATOR}'")
        if _SIGNATURE_RE.fullmatch(claim.signature) is None:
            raise SignatureError("Signature must be 64 lower-case hexadecimal characters")
        names = claim.signed_headers.split(";")
        if not all(names):
            raise SignatureError("SignedHeaders is malformed")
        # Without host the signature could be replayed against any other server.
        if "host" not in (n.lower() for n in names):
            raise SignatureError("SignedHeaders must include host")
        if claim.date_header is not None and claim.date_header not in names:
            raise SignatureError(f"SignedHeaders must include {claim.date_header}")

    def _check_time(self, claim: _Claim, now: datetime) -> None:
        if _TIMESTAMP_RE.fullmatch(claim.timestamp) is None:
            raise SignatureError("X-Amz-Date must be in the form yyyyMMddTHHmmssZ")
        try:
            signed_at = datetime.strptime(claim.timestamp, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise SignatureError(f"X-Amz-Date {claim.timestamp!r} is not a valid date") from None
        if claim.scope_date != claim.timestamp[:8]:
            raise SignatureError(
                f"Credential date {claim.scope_date} does not match X-Amz-Date {claim.timestamp}"
            )
        now_text = now.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
        if claim.expires is None:
            if abs(now - signed_at) > self._max_skew:
                raise SignatureError(
                    f"Signature expired: {claim.timestamp} is outside "
                    f"{int(self._max_skew.total_seconds())} seconds of {now_text}"
                )
            return
        if signed_at - now > self._max_skew:
            raise SignatureError(
                f"Signature not yet current: {claim.timestamp} is after {now_text}"
            )
        if now > signed_at + timedelta(seconds=claim.expires):
            raise SignatureError(
                f"Signature expired: {claim.timestamp} + {claim.expires}s is before {now_text}"
            )


def _payload_hash(folded: Mapping[str, Sequence[str]], body: bytes) -> str:
    declared = _single(folded, "x-amz-content-sha256")
    if declared is None:
        return hashlib.sha256(body).hexdigest()
    if declared == UNSIGNED_PAYLOAD:
        return declared
    if _SHA256_HEX_RE.fullmatch(declared) is None:
        raise SignatureError(f"Unsupported x-amz-content-sha256 value {declared!r}")
    if not hmac.compare_digest(declared.lower(), hashlib.sha256(body).hexdigest()):
        raise SignatureError("The provided x-amz-content-sha256 header does not match the body")
    # The client signed the header as it sent it, so the canonical request uses it verbatim.
    return declared


def _canonical_headers(claim: _Claim, folded: Mapping[str, Sequence[str]]) -> str:
    lines: list[str] = []
    for name in claim.signed_headers.split(";"):
        values = folded.get(name.lower())
        if values is None:
            raise SignatureError(f"Signed header {name!r} is missing from the request")
        joined = ",".join(" ".join(v.split()) for v in values)
        lines.append(f"{name}:{joined}")
    return "\n".join(lines)

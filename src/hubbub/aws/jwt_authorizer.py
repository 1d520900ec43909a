"""A built-in JWT authorizer for ``$connect``: no user code, same contract as a Lambda one.

:meth:`JwtAuthorizer.authorize` behaves like a REQUEST Lambda authorizer: for a valid token it
returns a Lambda-authorizer-shaped result (``principalId`` = ``sub``, an Allow policy on the method
ARN, the claims as ``context``), which goes through
:func:`hubbub.aws.authorizer.evaluate_authorizer_result` like any other; for an invalid token it
raises ``Exception("Unauthorized")``, which :func:`~hubbub.aws.authorizer.authorizer_error_status`
turns into 401. The reason is kept as the exception's ``__cause__`` for the log.

Keys come either from a shared secret (HS256/384/512) or from a JWKS file (RS*, PS*, ES*); never
both, so a public key can never be mistaken for an HMAC secret. The checks follow what the AWS
HTTP API JWT authorizer does: signature and algorithm, ``exp`` required and in the future,
``nbf`` and ``iat`` not in the future, ``iss`` when configured, and the audience in ``aud`` or,
for Cognito access tokens, in ``client_id``. ``sub`` is required: it becomes the principal.

Requires PyJWT with its ``crypto`` extra (hubbub's ``jwt`` extra).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from hubbub.aws.authorizer import INVOKE_ACTION, ContextValue

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "JwtAuthorizer",
    "token_from_identity",
]

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS = frozenset(a for a in ASYMMETRIC_ALGORITHMS if a[:2] in ("RS", "PS"))
_EC_CURVE_ALGORITHM = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
# Private JWK members (RFC 7518 §6.2.2, §6.3.2); a JWKS file for verification needs none of them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def token_from_identity(value: str) -> str:
    """Return the token in an identity value, without an optional ``Bearer`` scheme.

    The scheme name matches case-insensitively (RFC 9110 §11.1) and surrounding spaces go.
    """
    stripped = value.strip()
    scheme, sep, rest = stripped.partition(" ")
    if sep and scheme.lower() == "bearer":
        return rest.strip()
    return stripped


@dataclass(frozen=True)
class _VerificationKey:
    """One key and the algorithms it may verify, each bound to a ready-to-use PyJWT key."""

    kid: str | None
    by_algorithm: Mapping[str, jwt.PyJWK | bytes]


class JwtAuthorizer:
    """Validates bearer JWTs with a shared secret or a JWKS file; see the module docstring.

    ``issuer`` and ``audience`` are checked when given and skipped when ``None``.
    ``algorithms`` defaults to every HS algorithm the secret is long enough for, or to every
    RS/PS/ES algorithm for a JWKS file. Configuration mistakes (both or neither key source, an
    algorithm from the wrong family or ``none``, a secret too short for an HS algorithm, an
    unreadable JWKS file or one without a usable public key) raise ``ValueError``.
    """

    def __init__(
        self,
        *,
        issuer: str | None,
        audience: str | Sequence[str] | None,
        secret: str | None = None,
        jwks_file: str | Path | None = None,
        algorithms: Sequence[str] | None = None,
        leeway_seconds: int = 0,
    ) -> None:
        if (secret is None) == (jwks_file is None):
            raise ValueError("give exactly one of secret or jwks_file")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")
        if isinstance(audience, str):
            audience = (audience,)
        if audience is not None and not audience:
            raise ValueError("audience must not be empty; use None to skip the audience check")
        self._issuer = issuer
        self._audience = None if audience is None else frozenset(audience)
        self._leeway = leeway_seconds
        if secret is not None:
            self._keys = [_secret_key(secret, algorithms)]
        else:
            assert jwks_file is not None
            self._keys = _jwks_keys(Path(jwks_file), algorithms)

    def authorize(self, token: str, *, method_arn: str, now: float | None = None) -> dict[str, Any]:
        """Return an authorizer result allowing ``method_arn`` for a valid ``token``.

        Raises ``Exception("Unauthorized")`` for any invalid token. ``now`` (epoch seconds)
        defaults to the current time.
        """
        try:
            claims = self._verify(token, time.time() if now is None else now)
        except (jwt.PyJWTError, ValueError) as exc:
            # Exactly this message is the Lambda convention for "answer 401".
            raise Exception("Unauthorized") from exc
        return {
            "principalId": claims["sub"],
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Action": INVOKE_ACTION, "Effect": "Allow", "Resource": method_arn}],
            },
            "context": _flatten(claims),
        }

    def _verify(self, token: str, now: float) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        key = self._key_for(header.get("kid"), algorithm)
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[str(algorithm)],
            issuer=self._issuer,
            # Time and audience are checked below: against the caller's clock, and with the
            # client_id fallback PyJWT does not know.
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise jwt.MissingRequiredClaimError("sub")
        self._check_times(claims, now)
        self._check_audience(claims)
        return claims

    def _key_for(self, kid: object, algorithm: object) -> jwt.PyJWK | bytes:
        candidates = [k for k in self._keys if kid is not None and k.kid == kid]
        if not candidates and len(self._keys) == 1:
            candidates = self._keys
        if not candidates:
            raise jwt.InvalidKeyError(f"no key for kid {kid!r}")
        for candidate in candidates:
            if isinstance(algorithm, str) and algorithm in candidate.by_algorithm:
                return candidate.by_algorithm[algorithm]
        raise jwt.InvalidAlgorithmError(f"algorithm {algorithm!r} is not allowed for this key")

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        if "exp" not in claims:
            raise jwt.MissingRequiredClaimError("exp")
        if _numeric(claims, "exp") <= now - self._leeway:
            raise jwt.ExpiredSignatureError("Signature has expired")
        if "nbf" in claims and _numeric(claims, "nbf") > now + self._leeway:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        if "iat" in claims and _numeric(claims, "iat") > now + self._leeway:
            raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        if self._audience is None:
            return
        if "aud" in claims:
            aud = claims["aud"]
            values = [aud] if isinstance(aud, str) else aud
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise jwt.InvalidAudienceError("Invalid claim format in token")
        elif "client_id" in claims:
            # Cognito access tokens carry the app client in client_id instead of aud.
            values = [claims["client_id"]]
        else:
            raise jwt.MissingRequiredClaimError("aud")
        if self._audience.isdisjoint(values):
            raise jwt.InvalidAudienceError("Audience doesn't match")


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int to Python but not a NumericDate; NaN would compare false both ways.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise jwt.DecodeError(f"{name} must be a number of seconds")
    return float(value)


def _flatten(claims: Mapping[str, Any]) -> dict[str, ContextValue]:
    # Authorizer context values must be scalars: structures travel as compact JSON.
    context: dict[str, ContextValue] = {}
    for name, value in claims.items():
        if value is None:
            continue
        if isinstance(value, str | int | float | bool):
            context[name] = value
        else:
            context[name] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return context


def _secret_key(secret: str, algorithms: Sequence[str] | None) -> _VerificationKey:
    key = secret.encode("utf-8")
    if algorithms is None:
        chosen = [a for a in HMAC_ALGORITHMS if len(key) >= _HMAC_MIN_BYTES[a]]
        if not chosen:
            raise ValueError(f"secret is {len(key)} bytes; HS256 needs at least 32 (RFC 7518 §3.2)")
    else:
        chosen = _checked_algorithms(algorithms, HMAC_ALGORITHMS, "a secret")
        for algorithm in chosen:
            if len(key) < _HMAC_MIN_BYTES[algorithm]:
                raise ValueError(
                    f"secret is {len(key)} bytes; {algorithm} needs at least "
                    f"{_HMAC_MIN_BYTES[algorithm]} (RFC 7518 §3.2)"
                )
    return _VerificationKey(None, dict.fromkeys(chosen, key))


def _checked_algorithms(algorithms: Sequence[str], family: Sequence[str], source: str) -> list[str]:
    if isinstance(algorithms, str) or not algorithms:
        raise ValueError("algorithms must be a non-empty list of names")
    for algorithm in algorithms:
        if algorithm not in family:
            raise ValueError(
                f"algorithm {algorithm!r} cannot be used with {source}; "
                f"choose from {', '.join(family)}"
            )
    return list(dict.fromkeys(algorithms))


def _jwks_keys(path: Path, algorithms: Sequence[str] | None) -> list[_VerificationKey]:
    allowed = (
        list(ASYMMETRIC_ALGORITHMS)
        if algorithms is None
        else _checked_algorithms(algorithms, ASYMMETRIC_ALGORITHMS, "a JWKS file")
    )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"jwks_file {path}: cannot read a JSON document: {exc}") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'jwks_file {path}: expected an object {{"keys": [...]}}')
    keys: list[_VerificationKey] = []
    for index, entry in enumerate(entries):
        key = _jwks_key(entry, allowed, f"jwks_file {path}: key {index}")
        if key is not None:
            keys.append(key)
    if not keys:
        raise ValueError(f"jwks_file {path}: no signing key usable with {', '.join(allowed)}")
    return keys


def _jwks_key(entry: object, allowed: Sequence[str], where: str) -> _VerificationKey | None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not an object")
    if _PRIVATE_MEMBERS & entry.keys():
        raise ValueError(f"{where} holds private key material; publish only public keys")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError(f"{where}: kid must be a string")
    # Encryption keys and keys of another family are legitimately present in shared JWKS
    # documents; they are skipped rather than refused.
    if entry.get("use", "sig") != "sig":
        return None
    if "alg" in entry:
        suited = {entry["alg"]}
    elif entry.get("kty") == "RSA":
        suited = set(_RSA_ALGORITHMS)
    elif entry.get("kty") == "EC" and entry.get("crv") in _EC_CURVE_ALGORITHM:
        suited = {_EC_CURVE_ALGORITHM[entry["crv"]]}
    else:
        suited = set()
    usable = [a for a in allowed if a in suited]
    if not usable:
        return None
    by_algorithm: dict[str, jwt.PyJWK | bytes] = {}
    for algorithm in usable:
        try:
            jwk = jwt.PyJWK(entry, algorithm=algorithm)
        except jwt.PyJWTError as exc:
            raise ValueError(f"{where} ({kid or 'no kid'}): {exc}") from exc
        # Refuse weak keys here, once, rather than have PyJWT warn on every handshake.
        weakness = jwk.Algorithm.check_key_length(jwk.key)
        if weakness:
            raise ValueError(f"{where} ({kid or 'no kid'}): {weakness}")
        by_algorithm[algorithm] = jwk
    return _VerificationKey(kid, by_algorithm)

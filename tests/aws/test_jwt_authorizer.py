"""The built-in JWT authorizer, with real tokens signed by PyJWT and keys from ``cryptography``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hubbub.aws.authorizer import authorizer_error_status, evaluate_authorizer_result
from hubbub.aws.jwt_authorizer import JwtAuthorizer, token_from_identity

ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"
ISSUER = "https://issuer.example.com/"
AUDIENCE = "hubbub-test"
SECRET = "k3y-that-is-long-enough-for-every-hmac-algorithm-we-support-1234"  # 64 bytes
NOW = 1_700_000_000


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "user-1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW - 10,
        "exp": NOW + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def hs_token(payload: dict[str, Any], *, algorithm: str = "HS256", secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def hs_authorizer(**overrides: Any) -> JwtAuthorizer:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "secret": SECRET}
    options.update(overrides)
    return JwtAuthorizer(**options)


def assert_unauthorized(authorizer: JwtAuthorizer, token: str, *, now: float = NOW) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$") as caught:
        authorizer.authorize(token, method_arn=ARN, now=now)
    assert type(caught.value) is Exception
    assert authorizer_error_status(caught.value) == 401


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str | None = "rsa-1", **extra: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, **({"kid": kid} if kid else {}), **extra}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str | None = "ec-1") -> dict[str, Any]:
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, **({"kid": kid} if kid else {})}


def write_jwks(tmp_path: Path, *keys: dict[str, Any]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], key: bytes, *, kid: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64url(json.dumps(payload).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


def jwks_authorizer(path: Path, **overrides: Any) -> JwtAuthorizer:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": path}
    options.update(overrides)
    return JwtAuthorizer(**options)


# --- valid tokens are allowed ----------------------------------------------------------------


def test_hs256_token_is_allowed() -> None:
    result = hs_authorizer().authorize(hs_token(claims()), method_arn=ARN, now=NOW)
    decision = evaluate_authorizer_result(result, method_arn=ARN)
    assert decision.allowed
    assert decision.principal_id == "user-1"


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_longer_hmac_algorithms_are_allowed_with_a_long_secret(algorithm: str) -> None:
    token = hs_token(claims(), algorithm=algorithm)
    result = hs_authorizer().authorize(token, method_arn=ARN, now=NOW)
    assert evaluate_authorizer_result(result, method_arn=ARN).allowed


def test_rs256_token_from_jwks_is_allowed(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    authorizer = jwks_authorizer(write_jwks(tmp_path, rsa_jwk(rsa_key)))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    result = authorizer.authorize(token, method_arn=ARN, now=NOW)
    assert evaluate_authorizer_result(result, method_arn=ARN).allowed


def test_es256_token_from_jwks_is_allowed(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    authorizer = jwks_authorizer(write_jwks(tmp_path, ec_jwk(ec_key)))
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    result = authorizer.authorize(token, method_arn=ARN, now=NOW)
    assert evaluate_authorizer_result(result, method_arn=ARN).allowed


@pytest.mark.parametrize("algorithm", ["PS256", "RS512"])
def test_rsa_key_without_alg_verifies_every_rsa_algorithm(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, algorithm: str
) -> None:
    authorizer = jwks_authorizer(write_jwks(tmp_path, rsa_jwk(rsa_key)))
    token = jwt.encode(claims(), rsa_key, algorithm=algorithm, headers={"kid": "rsa-1"})
    assert authorizer.authorize(token, method_arn=ARN, now=NOW)["principalId"] == "user-1"


def test_es384_key_verifies_es384(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    authorizer = jwks_authorizer(write_jwks(tmp_path, ec_jwk(key)))
    token = jwt.encode(claims(), key, algorithm="ES384", headers={"kid": "ec-1"})
    assert authorizer.authorize(token, method_arn=ARN, now=NOW)["principalId"] == "user-1"


def test_kid_selects_the_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    authorizer = jwks_authorizer(write_jwks(tmp_path, rsa_jwk(rsa_key), ec_jwk(ec_key)))
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert authorizer.authorize(token, method_arn=ARN, now=NOW)["principalId"] == "user-1"


def test_token_without_kid_uses_the_only_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    authorizer = jwks_authorizer(write_jwks(tmp_path, rsa_jwk(rsa_key, kid=None)))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert authorizer.authorize(token, method_arn=ARN, now=NOW)["principalId"] == "user-1"


def test_encryption_keys_in_the_jwks_are_skipped(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = write_jwks(tmp_path, rsa_jwk(other, kid="enc", use="enc"), rsa_jwk(rsa_key))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert jwks_authorizer(path).authorize(token, method_arn=ARN, now=NOW)["principalId"]


def test_result_is_shaped_like_a_lambda_authorizer_result() -> None:
    result = hs_authorizer().authorize(hs_token(claims()), method_arn=ARN, now=NOW)
    assert result["policyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ARN}],
    }


def test_claims_are_flattened_into_the_context() -> None:
    token = hs_token(
        claims(email="a@b.c", admin=True, level=3, score=1.5, groups=["a", "b"], meta={"x": 1})
        | {"nothing": None}
    )
    context = hs_authorizer().authorize(token, method_arn=ARN, now=NOW)["context"]
    assert context["sub"] == "user-1"
    assert context["email"] == "a@b.c"
    assert context["admin"] is True
    assert context["level"] == 3
    assert context["score"] == 1.5
    assert context["groups"] == '["a","b"]'
    assert context["meta"] == '{"x":1}'
    assert "nothing" not in context


def test_flattened_context_passes_the_result_checks() -> None:
    token = hs_token(claims(groups=["a"], meta={"nested": {"deep": [1]}}))
    result = hs_authorizer().authorize(token, method_arn=ARN, now=NOW)
    decision = evaluate_authorizer_result(result, method_arn=ARN)
    assert decision.allowed
    assert decision.context["meta"] == '{"nested":{"deep":[1]}}'


def test_leeway_admits_a_just_expired_token() -> None:
    token = hs_token(claims(exp=NOW - 5))
    assert hs_authorizer(leeway_seconds=10).authorize(token, method_arn=ARN, now=NOW)


def test_any_configured_audience_matches() -> None:
    authorizer = hs_authorizer(audience=["web", AUDIENCE])
    assert authorizer.authorize(hs_token(claims()), method_arn=ARN, now=NOW)


def test_token_audience_list_matches_when_one_entry_does() -> None:
    token = hs_token(claims(aud=["other", AUDIENCE]))
    assert hs_authorizer().authorize(token, method_arn=ARN, now=NOW)


def test_cognito_client_id_stands_in_for_audience() -> None:
    token = hs_token(claims(aud=..., client_id=AUDIENCE))
    assert hs_authorizer().authorize(token, method_arn=ARN, now=NOW)


def test_unconfigured_issuer_and_audience_are_not_checked() -> None:
    token = hs_token(claims(iss="https://anyone/", aud="anything"))
    authorizer = hs_authorizer(issuer=None, audience=None)
    assert authorizer.authorize(token, method_arn=ARN, now=NOW)


def test_now_defaults_to_the_current_time() -> None:
    # A token valid for the next hour from the real clock needs no explicit now.
    import time

    token = hs_token(claims(iat=int(time.time()), exp=int(time.time()) + 3600))
    assert hs_authorizer().authorize(token, method_arn=ARN)["principalId"] == "user-1"


# --- invalid tokens are Unauthorized ---------------------------------------------------------


def test_expired_token_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(exp=NOW)))


def test_token_not_yet_valid_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(nbf=NOW + 60)))


def test_token_issued_in_the_future_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(iat=NOW + 60)))


def test_wrong_issuer_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(iss="https://evil.example.com/")))


def test_missing_issuer_is_unauthorized_when_one_is_configured() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(iss=...)))


def test_wrong_audience_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(aud="someone-else")))


def test_missing_audience_is_unauthorized_when_one_is_configured() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(aud=...)))


def test_wrong_client_id_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(aud=..., client_id="someone-else")))


def test_bad_signature_is_unauthorized() -> None:
    other = "another-secret-that-is-also-long-enough-for-every-hmac-algorithm"
    assert_unauthorized(hs_authorizer(), hs_token(claims(), secret=other))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30.", "...."])
def test_malformed_token_is_unauthorized(token: str) -> None:
    assert_unauthorized(hs_authorizer(), token)


def test_alg_none_token_is_unauthorized() -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert_unauthorized(hs_authorizer(), token)


def test_algorithm_outside_the_configured_list_is_unauthorized() -> None:
    token = hs_token(claims(), algorithm="HS512")
    assert_unauthorized(hs_authorizer(algorithms=["HS256"]), token)


def test_hmac_algorithm_the_secret_is_too_short_for_is_not_accepted_by_default() -> None:
    short = "s" * 32
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        token = hs_token(claims(), algorithm="HS512", secret=short)
    assert_unauthorized(hs_authorizer(secret=short), token)


def test_hmac_token_signed_with_the_public_key_is_unauthorized(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    # The classic algorithm-confusion attack: HS256 keyed with the published RSA key. PyJWT
    # refuses to sign that, so the token is put together by hand.
    public = json.dumps(rsa_jwk(rsa_key)).encode()
    token = forge_hs256(claims(), public, kid="rsa-1")
    assert_unauthorized(jwks_authorizer(write_jwks(tmp_path, rsa_jwk(rsa_key))), token)


def test_token_signed_by_an_unknown_key_is_unauthorized(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(), stranger, algorithm="ES256", headers={"kid": "ec-1"})
    assert_unauthorized(jwks_authorizer(write_jwks(tmp_path, ec_jwk(ec_key))), token)


def test_unknown_kid_among_several_keys_is_unauthorized(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_jwks(tmp_path, rsa_jwk(rsa_key), ec_jwk(ec_key))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rotated-out"})
    assert_unauthorized(jwks_authorizer(path), token)


def test_rsa_token_against_an_ec_key_is_unauthorized(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
    assert_unauthorized(jwks_authorizer(write_jwks(tmp_path, ec_jwk(ec_key))), token)


def test_alg_pinned_by_the_jwk_is_enforced(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    path = write_jwks(tmp_path, rsa_jwk(rsa_key, alg="RS256"))
    token = jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "rsa-1"})
    assert_unauthorized(jwks_authorizer(path), token)


@pytest.mark.parametrize("sub", [..., "", 42, None])
def test_missing_or_invalid_subject_is_unauthorized(sub: Any) -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(sub=sub)))


def test_token_without_expiry_is_unauthorized() -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(exp=...)))


@pytest.mark.parametrize("exp", ["tomorrow", True, [NOW + 300]])
def test_non_numeric_expiry_is_unauthorized(exp: Any) -> None:
    assert_unauthorized(hs_authorizer(), hs_token(claims(exp=exp)))


def test_unauthorized_keeps_the_reason_as_its_cause() -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$") as caught:
        hs_authorizer().authorize(hs_token(claims(exp=NOW)), method_arn=ARN, now=NOW)
    assert isinstance(caught.value.__cause__, jwt.ExpiredSignatureError)


@given(token=st.text(max_size=200))
def test_any_garbage_token_is_unauthorized(token: str) -> None:
    assert_unauthorized(hs_authorizer(), token)


@given(token=st.from_regex(r"[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}"))
def test_any_token_shaped_garbage_is_unauthorized(token: str) -> None:
    assert_unauthorized(hs_authorizer(), token)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
_RESERVED = {"sub", "iss", "aud", "iat", "exp", "nbf", "jti"}


@given(extra=st.dictionaries(st.text().filter(lambda k: k not in _RESERVED), _JSON, max_size=5))
def test_any_claims_flatten_to_allowed_context_values(extra: dict[str, Any]) -> None:
    token = hs_token(claims() | extra)
    result = hs_authorizer().authorize(token, method_arn=ARN, now=NOW)
    assert evaluate_authorizer_result(result, method_arn=ARN).allowed
    context = result["context"]
    for name, value in extra.items():
        if value is None:
            assert name not in context
        elif isinstance(value, list | dict):
            assert json.loads(context[name]) == value
        else:
            assert context[name] == value


# --- configuration errors --------------------------------------------------------------------


def test_both_secret_and_jwks_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of secret or jwks_file"):
        JwtAuthorizer(issuer=None, audience=None, secret=SECRET, jwks_file=tmp_path / "j.json")


def test_neither_secret_nor_jwks_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="exactly one of secret or jwks_file"):
        JwtAuthorizer(issuer=None, audience=None)


@pytest.mark.parametrize("algorithms", [["none"], ["RS256"], ["HS256", "ES256"], [], "HS256"])
def test_algorithm_outside_the_secret_family_is_a_config_error(algorithms: Any) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        hs_authorizer(algorithms=algorithms)


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"]])
def test_algorithm_outside_the_jwks_family_is_a_config_error(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, algorithms: list[str]
) -> None:
    with pytest.raises(ValueError, match="cannot be used with a JWKS file"):
        jwks_authorizer(write_jwks(tmp_path, rsa_jwk(rsa_key)), algorithms=algorithms)


def test_secret_too_short_for_any_hmac_algorithm_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="HS256 needs at least 32"):
        hs_authorizer(secret="secret")


def test_secret_too_short_for_a_chosen_algorithm_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="HS512 needs at least 64"):
        hs_authorizer(secret="s" * 32, algorithms=["HS256", "HS512"])


def test_negative_leeway_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="leeway"):
        hs_authorizer(leeway_seconds=-1)


def test_empty_audience_list_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="audience must not be empty"):
        hs_authorizer(audience=[])


def test_missing_jwks_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        jwks_authorizer(tmp_path / "absent.json")


def test_jwks_file_that_is_not_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError, match="cannot read a JSON document"):
        jwks_authorizer(path)


def test_jwks_file_without_keys_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"kty": "RSA"}')
    with pytest.raises(ValueError, match=re.escape('expected an object {"keys"')):
        jwks_authorizer(path)


def test_jwks_file_without_a_usable_key_is_a_config_error(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = write_jwks(tmp_path, rsa_jwk(rsa_key, use="enc"))
    with pytest.raises(ValueError, match="no signing key usable"):
        jwks_authorizer(path)


def test_private_key_in_the_jwks_is_a_config_error(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    private = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    with pytest.raises(ValueError, match="private key material"):
        jwks_authorizer(write_jwks(tmp_path, private))


def test_weak_rsa_key_is_a_config_error(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024 bits"):
        jwks_authorizer(write_jwks(tmp_path, rsa_jwk(weak)))


def test_broken_jwk_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key 0"):
        jwks_authorizer(write_jwks(tmp_path, {"kty": "RSA", "kid": "x", "n": "!", "e": "AQAB"}))


# --- identity values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("BEARER   abc.def.ghi  ", "abc.def.ghi"),
        ("abc.def.ghi", "abc.def.ghi"),
        ("  abc.def.ghi ", "abc.def.ghi"),
        ("Bearerabc", "Bearerabc"),
        ("Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"),
    ],
)
def test_token_from_identity_strips_an_optional_bearer_scheme(value: str, token: str) -> None:
    assert token_from_identity(value) == token


def test_bearer_identity_round_trips_through_authorize() -> None:
    value = f"Bearer {hs_token(claims())}"
    result = hs_authorizer().authorize(token_from_identity(value), method_arn=ARN, now=NOW)
    assert result["principalId"] == "user-1"

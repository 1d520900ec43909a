"""SigV4 verification against requests signed by the real botocore signer.

Management API calls go through a real ``boto3`` client whose ``before-send`` hook captures the
prepared request (so the path encoding, headers and body are exactly what would hit the wire) and
answers with a canned response, so no network is touched. Presigned URLs and the less common
header forms are signed with botocore's ``SigV4QueryAuth`` / ``SigV4Auth`` directly.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from hubbub.aws.sigv4 import (
    Credential,
    SignatureError,
    SigV4Verifier,
    canonical_query_string,
    canonical_uri,
)
from hubbub.errors import ForbiddenError

ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ENDPOINT = "http://127.0.0.1:8081/dev"
# Every character botocore must percent-encode in a label, plus the ones it must not.
CONNECTION_ID = "R1k=mx+c/V-N_jM="
SIGNED_AT = datetime(2024, 1, 20, 11, 55, 8, tzinfo=UTC)
GET_CONNECTION_BODY = (
    b'{"connectedAt":"2024-01-20T11:54:57.419Z",'
    b'"identity":{"sourceIp":"203.0.113.7","userAgent":""},'
    b'"lastActiveAt":"2024-01-20T11:55:00.453Z"}'
)


@dataclass(frozen=True)
class Captured:
    """A request as the gateway would receive it."""

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes

    def verify(self, verifier: SigV4Verifier, *, now: datetime = SIGNED_AT) -> str:
        return verifier.verify(
            method=self.method,
            raw_path=self.raw_path,
            raw_query=self.raw_query,
            headers=self.headers,
            body=self.body,
            now=now,
        )

    def with_header(self, name: str, value: str) -> Captured:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        headers[name] = value
        return replace(self, headers=headers)

    def without_header(self, name: str) -> Captured:
        return replace(
            self, headers={k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        )


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _from_url(method: str, url: str, headers: Mapping[str, str | bytes], body: Any) -> Captured:
    parts = urlsplit(url)
    wire_headers = {name: _text(value) for name, value in headers.items()}
    # urllib3 adds Host on the wire; botocore signed the same value derived from the URL.
    wire_headers.setdefault("Host", parts.netloc)
    return Captured(method, parts.path, parts.query, wire_headers, body or b"")


def signing_clock() -> AbstractContextManager[object]:
    """Freeze botocore's signing clock at SIGNED_AT so signatures are reproducible."""
    return mock.patch(
        "botocore.auth.get_current_datetime", return_value=SIGNED_AT.replace(tzinfo=None)
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self._body


class ManagementClient:
    """A real apigatewaymanagementapi client whose requests are captured, never sent."""

    def __init__(self, *, secret: str, token: str | None, region: str) -> None:
        self._client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=ENDPOINT,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            aws_session_token=token,
        )
        self._client.meta.events.register("before-send", self._answer)
        self._captured: list[Captured] = []

    def _answer(self, request: AWSPreparedRequest, **_: object) -> AWSResponse:
        self._captured.append(_from_url(request.method, request.url, request.headers, request.body))
        if request.method == "DELETE":
            return AWSResponse(request.url, 204, {}, _Raw(b""))
        if request.method == "GET":
            return AWSResponse(
                request.url, 200, {"Content-Type": "application/json"}, _Raw(GET_CONNECTION_BODY)
            )
        return AWSResponse(request.url, 200, {}, _Raw(b""))

    def call(self, operation: str, **params: Any) -> Captured:
        self._captured.clear()
        with signing_clock():
            getattr(self._client, operation)(**params)
        (captured,) = self._captured
        return captured


@functools.cache
def management_client(
    *, secret: str = SECRET, token: str | None = None, region: str = "us-east-1"
) -> ManagementClient:
    return ManagementClient(secret=secret, token=token, region=region)


def post(data: str | bytes, connection_id: str = CONNECTION_ID) -> Captured:
    return management_client().call("post_to_connection", ConnectionId=connection_id, Data=data)


def sign_directly(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    service: str = "execute-api",
    context: Mapping[str, Any] | None = None,
) -> Captured:
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    request.context.update(context or {})
    with signing_clock():
        SigV4Auth(Credentials(ACCESS_KEY, SECRET), service, "us-east-1").add_auth(request)
    prepared = request.prepare()
    return _from_url(prepared.method, prepared.url, prepared.headers, prepared.body)


def presign(url: str, *, expires: int = 300) -> Captured:
    request = AWSRequest(method="GET", url=url)
    with signing_clock():
        SigV4QueryAuth(
            Credentials(ACCESS_KEY, SECRET), "execute-api", "us-east-1", expires
        ).add_auth(request)
    prepared = request.prepare()
    return _from_url(prepared.method, prepared.url, prepared.headers, prepared.body)


@pytest.fixture
def verifier() -> SigV4Verifier:
    return SigV4Verifier([Credential(ACCESS_KEY, SECRET)])


# --- what verifies ---------------------------------------------------------------------------


def test_post_to_connection_with_str_data_verifies(verifier: SigV4Verifier) -> None:
    assert post("héllo wörld").verify(verifier) == ACCESS_KEY


def test_post_to_connection_with_bytes_data_verifies(verifier: SigV4Verifier) -> None:
    assert post(b"\x00\xffbinary\r\n").verify(verifier) == ACCESS_KEY


def test_post_to_connection_with_largest_allowed_body_verifies(verifier: SigV4Verifier) -> None:
    assert post(bytes(range(256)) * 512).verify(verifier) == ACCESS_KEY


def test_get_connection_verifies(verifier: SigV4Verifier) -> None:
    captured = management_client().call("get_connection", ConnectionId=CONNECTION_ID)
    assert captured.method == "GET"
    assert captured.verify(verifier) == ACCESS_KEY


def test_delete_connection_verifies(verifier: SigV4Verifier) -> None:
    captured = management_client().call("delete_connection", ConnectionId=CONNECTION_ID)
    assert captured.method == "DELETE"
    assert captured.verify(verifier) == ACCESS_KEY


def test_connection_id_travels_percent_encoded_and_verifies(verifier: SigV4Verifier) -> None:
    captured = post("x")
    assert captured.raw_path == "/dev/@connections/R1k%3Dmx%2Bc%2FV-N_jM%3D"
    assert captured.verify(verifier) == ACCESS_KEY


def test_session_token_is_a_signed_header_and_verifies(verifier: SigV4Verifier) -> None:
    captured = management_client(token="FQoGZXIvYXdzEXAMPLETOKEN").call(
        "post_to_connection", ConnectionId=CONNECTION_ID, Data=b"hi"
    )
    assert "x-amz-security-token" in captured.headers["Authorization"]
    assert captured.verify(verifier) == ACCESS_KEY


def test_any_region_in_the_credential_scope_verifies(verifier: SigV4Verifier) -> None:
    captured = management_client(region="eu-west-3").call(
        "post_to_connection", ConnectionId=CONNECTION_ID, Data=b"hi"
    )
    assert "/eu-west-3/execute-api/" in captured.headers["Authorization"]
    assert captured.verify(verifier) == ACCESS_KEY


def test_header_names_in_any_case_verify(verifier: SigV4Verifier) -> None:
    captured = post("hi")
    lower = replace(captured, headers={k.lower(): v for k, v in captured.headers.items()})
    upper = replace(captured, headers={k.upper(): v for k, v in captured.headers.items()})
    assert lower.verify(verifier) == ACCESS_KEY
    assert upper.verify(verifier) == ACCESS_KEY


def test_date_within_the_skew_window_verifies(verifier: SigV4Verifier) -> None:
    captured = post("hi")
    assert captured.verify(verifier, now=SIGNED_AT + timedelta(minutes=4)) == ACCESS_KEY
    assert captured.verify(verifier, now=SIGNED_AT - timedelta(minutes=4)) == ACCESS_KEY


def test_second_credential_verifies() -> None:
    verifier = SigV4Verifier([Credential("AKIDOTHER", "other"), Credential(ACCESS_KEY, SECRET)])
    assert post("hi").verify(verifier) == ACCESS_KEY


def test_matching_content_sha256_header_verifies(verifier: SigV4Verifier) -> None:
    body = b"payload"
    captured = sign_directly(
        "POST",
        f"{ENDPOINT}/@connections/abc",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()},
        body=body,
    )
    assert captured.verify(verifier) == ACCESS_KEY


def test_unsigned_payload_verifies_whatever_the_body(verifier: SigV4Verifier) -> None:
    # botocore only sends UNSIGNED-PAYLOAD over https, when payload signing is switched off.
    captured = sign_directly(
        "POST",
        "https://gw.example.com/dev/@connections/abc",
        body=b"original",
        context={"payload_signing_enabled": False},
    )
    assert captured.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert replace(captured, body=b"anything else").verify(verifier) == ACCESS_KEY


def test_date_header_instead_of_x_amz_date_verifies(verifier: SigV4Verifier) -> None:
    captured = sign_directly(
        "GET",
        f"{ENDPOINT}/@connections/abc",
        headers={"Date": "Sat, 20 Jan 2024 11:55:08 GMT"},
    )
    assert "X-Amz-Date" not in captured.headers
    assert captured.verify(verifier) == ACCESS_KEY


def test_repeated_signed_header_in_a_multidict_verifies(verifier: SigV4Verifier) -> None:
    request = AWSRequest(method="GET", url=f"{ENDPOINT}/@connections/abc")
    # email.message semantics: assigning twice adds a second occurrence.
    request.headers["X-Custom"] = "one"
    request.headers["X-Custom"] = "  two   words "
    with signing_clock():
        SigV4Auth(Credentials(ACCESS_KEY, SECRET), "execute-api", "us-east-1").add_auth(request)
    headers = CIMultiDict[str]()
    for name, value in request.headers.items():
        headers.add(name, _text(value))
    headers.add("Host", "127.0.0.1:8081")
    captured = Captured("GET", "/dev/@connections/abc", "", headers, b"")
    assert "x-custom" in captured.headers["Authorization"]
    assert captured.verify(verifier) == ACCESS_KEY


def test_presigned_url_verifies(verifier: SigV4Verifier) -> None:
    captured = presign("http://127.0.0.1:8081/dev?room=a%20b&token=x%2By")
    assert "Authorization" not in captured.headers
    assert captured.verify(verifier) == ACCESS_KEY


def test_presigned_url_verifies_until_it_expires(verifier: SigV4Verifier) -> None:
    captured = presign(ENDPOINT, expires=600)
    assert captured.verify(verifier, now=SIGNED_AT + timedelta(seconds=600)) == ACCESS_KEY


# --- what is rejected ------------------------------------------------------------------------


def test_signature_error_is_a_forbidden_error() -> None:
    assert issubclass(SignatureError, ForbiddenError)
    assert SignatureError("x").status == 403


def test_wrong_secret_is_rejected() -> None:
    verifier = SigV4Verifier([Credential(ACCESS_KEY, "not-the-secret")])
    with pytest.raises(SignatureError, match="signature we calculated does not match"):
        post("hi").verify(verifier)


def test_unknown_access_key_is_rejected_without_echoing_the_key() -> None:
    verifier = SigV4Verifier([Credential("AKIDSOMEONEELSE", SECRET)])
    with pytest.raises(SignatureError, match="security token included in the request") as exc:
        post("hi").verify(verifier)
    assert ACCESS_KEY not in str(exc.value)


def test_a_signature_does_not_cover_a_path_with_dot_segments(verifier: SigV4Verifier) -> None:
    # botocore signs GET .../{id}/attributes/.. as GET .../{id} (it removes dot segments), but
    # the router serves .../{id}/attributes: the signature must not be accepted for it.
    signed = management_client().call("get_connection", ConnectionId="abc")
    assert signed.verify(verifier) == ACCESS_KEY
    for tail in ("/attributes/..", "/./", "/x/../", "//"):
        replayed = replace(signed, raw_path=signed.raw_path.rstrip("/") + tail)
        with pytest.raises(SignatureError, match="must not contain"):
            replayed.verify(verifier)


def test_botocore_signing_a_dot_segment_path_is_refused(verifier: SigV4Verifier) -> None:
    captured = sign_directly("GET", f"{ENDPOINT}/@connections/abc/attributes/..")
    assert captured.raw_path.endswith("/attributes/..")  # sent as is, signed normalised
    with pytest.raises(SignatureError, match="must not contain"):
        captured.verify(verifier)


def test_tampered_body_is_rejected(verifier: SigV4Verifier) -> None:
    captured = post(b"pay 1 coin")
    with pytest.raises(SignatureError, match="does not match"):
        replace(captured, body=b"pay 9 coin").verify(verifier)


def test_tampered_path_is_rejected(verifier: SigV4Verifier) -> None:
    captured = post("hi")
    other = captured.raw_path.replace("R1k", "XXX")
    with pytest.raises(SignatureError, match="does not match"):
        replace(captured, raw_path=other).verify(verifier)


def test_percent_decoded_path_is_rejected(verifier: SigV4Verifier) -> None:
    # The verifier must be given the path as sent; a decoded one canonicalises differently.
    captured = post("hi")
    with pytest.raises(SignatureError, match="does not match"):
        replace(captured, raw_path=f"/dev/@connections/{CONNECTION_ID}").verify(verifier)


def test_tampered_method_is_rejected(verifier: SigV4Verifier) -> None:
    captured = management_client().call("get_connection", ConnectionId=CONNECTION_ID)
    with pytest.raises(SignatureError, match="does not match"):
        replace(captured, method="DELETE").verify(verifier)


def test_tampered_session_token_is_rejected(verifier: SigV4Verifier) -> None:
    captured = management_client(token="FQoGZXIvYXdzEXAMPLETOKEN").call(
        "post_to_connection", ConnectionId=CONNECTION_ID, Data=b"hi"
    )
    with pytest.raises(SignatureError, match="does not match"):
        captured.with_header("X-Amz-Security-Token", "FORGED").verify(verifier)


def test_request_ten_minutes_old_is_rejected(verifier: SigV4Verifier) -> None:
    with pytest.raises(SignatureError, match="Signature expired"):
        post("hi").verify(verifier, now=SIGNED_AT + timedelta(minutes=10))


def test_request_dated_ten_minutes_ahead_is_rejected(verifier: SigV4Verifier) -> None:
    with pytest.raises(SignatureError, match="Signature expired"):
        post("hi").verify(verifier, now=SIGNED_AT - timedelta(minutes=10))


def test_skew_window_is_configurable() -> None:
    verifier = SigV4Verifier([Credential(ACCESS_KEY, SECRET)], max_skew_seconds=30)
    with pytest.raises(SignatureError, match="Signature expired"):
        post("hi").verify(verifier, now=SIGNED_AT + timedelta(seconds=31))


def test_missing_authorization_header_is_rejected(verifier: SigV4Verifier) -> None:
    with pytest.raises(SignatureError, match="Missing Authentication Token"):
        post("hi").without_header("Authorization").verify(verifier)


def test_missing_date_header_is_rejected(verifier: SigV4Verifier) -> None:
    with pytest.raises(SignatureError, match="requires an X-Amz-Date or Date header"):
        post("hi").without_header("X-Amz-Date").verify(verifier)


def test_missing_signed_header_is_rejected(verifier: SigV4Verifier) -> None:
    captured = management_client(token="FQoGZXIvYXdzEXAMPLETOKEN").call(
        "post_to_connection", ConnectionId=CONNECTION_ID, Data=b"hi"
    )
    with pytest.raises(SignatureError, match="'x-amz-security-token' is missing"):
        captured.without_header("X-Amz-Security-Token").verify(verifier)


def test_missing_host_header_is_rejected(verifier: SigV4Verifier) -> None:
    with pytest.raises(SignatureError, match="'host' is missing"):
        post("hi").without_header("Host").verify(verifier)


def test_changed_date_header_is_rejected(verifier: SigV4Verifier) -> None:
    captured = post("hi").with_header("X-Amz-Date", "20240120T115509Z")
    with pytest.raises(SignatureError, match="does not match"):
        captured.verify(verifier)


def test_other_service_scope_is_rejected(verifier: SigV4Verifier) -> None:
    captured = sign_directly("GET", f"{ENDPOINT}/@connections/abc", service="lambda")
    with pytest.raises(SignatureError, match="correct service: 'execute-api'"):
        captured.verify(verifier)


def test_content_sha256_header_not_matching_body_is_rejected(verifier: SigV4Verifier) -> None:
    captured = sign_directly(
        "POST",
        f"{ENDPOINT}/@connections/abc",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(b"payload").hexdigest()},
        body=b"payload",
    )
    with pytest.raises(SignatureError, match="x-amz-content-sha256 header does not match"):
        replace(captured, body=b"other").verify(verifier)


def test_streaming_content_sha256_is_rejected(verifier: SigV4Verifier) -> None:
    captured = post("hi").with_header("X-Amz-Content-SHA256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    with pytest.raises(SignatureError, match="Unsupported x-amz-content-sha256"):
        captured.verify(verifier)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Bearer abc", "must use the AWS4-HMAC-SHA256 algorithm"),
        ("AWS4-HMAC-SHA256", "Malformed Authorization header"),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240120/us-east-1/execute-api/"
            "aws4_request, SignedHeaders=host;x-amz-date",
            "requires Signature",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240120/execute-api/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
            "Credential should be scoped",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240120/us-east-1/execute-api/"
            f"aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 63}",
            "64 lower-case hexadecimal",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240120/us-east-1/execute-api/"
            f"aws4_request, SignedHeaders=x-amz-date, Signature={'0' * 64}",
            "must include host",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240120/us-east-1/execute-api/"
            f"aws4_request, SignedHeaders=host, Signature={'0' * 64}",
            "must include x-amz-date",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240119/us-east-1/execute-api/"
            f"aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
            "does not match X-Amz-Date",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240120/us-east-1/execute-api/"
            f"aws4_reqest, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
            "must end with 'aws4_request'",
        ),
    ],
)
def test_malformed_authorization_header_is_rejected(
    verifier: SigV4Verifier, authorization: str, message: str
) -> None:
    captured = post("hi").with_header("Authorization", authorization)
    with pytest.raises(SignatureError, match=message):
        captured.verify(verifier)


def test_malformed_x_amz_date_is_rejected(verifier: SigV4Verifier) -> None:
    captured = post("hi").with_header("X-Amz-Date", "2024-01-20T11:55:08Z")
    with pytest.raises(SignatureError, match="yyyyMMddTHHmmssZ"):
        captured.verify(verifier)


def test_expired_presigned_url_is_rejected(verifier: SigV4Verifier) -> None:
    captured = presign(ENDPOINT, expires=60)
    with pytest.raises(SignatureError, match="Signature expired"):
        captured.verify(verifier, now=SIGNED_AT + timedelta(seconds=61))


def test_presigned_url_used_before_its_date_is_rejected(verifier: SigV4Verifier) -> None:
    captured = presign(ENDPOINT)
    with pytest.raises(SignatureError, match="not yet current"):
        captured.verify(verifier, now=SIGNED_AT - timedelta(minutes=10))


def test_presigned_url_with_tampered_query_is_rejected(verifier: SigV4Verifier) -> None:
    captured = presign(f"{ENDPOINT}?room=lobby")
    with pytest.raises(SignatureError, match="does not match"):
        replace(captured, raw_query=captured.raw_query.replace("lobby", "admin")).verify(verifier)


def test_presigned_url_with_extended_expiry_is_rejected(verifier: SigV4Verifier) -> None:
    captured = presign(ENDPOINT, expires=60)
    extended = captured.raw_query.replace("X-Amz-Expires=60", "X-Amz-Expires=3600")
    with pytest.raises(SignatureError, match="does not match"):
        replace(captured, raw_query=extended).verify(verifier, now=SIGNED_AT)


def test_presigned_url_without_expiry_is_rejected(verifier: SigV4Verifier) -> None:
    captured = presign(ENDPOINT)
    query = "&".join(p for p in captured.raw_query.split("&") if "Expires" not in p)
    with pytest.raises(SignatureError, match="requires X-Amz-Expires"):
        replace(captured, raw_query=query).verify(verifier)


def test_naive_now_is_a_programming_error(verifier: SigV4Verifier) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        post("hi").verify(verifier, now=SIGNED_AT.replace(tzinfo=None))


def test_mismatch_carries_the_canonical_request_for_debugging(verifier: SigV4Verifier) -> None:
    captured = post("hi")
    with pytest.raises(SignatureError) as caught:
        replace(captured, raw_path="/dev/@connections/other").verify(verifier)
    assert caught.value.canonical_request is not None
    assert caught.value.canonical_request.startswith("POST\n/dev/%40connections/other\n")


def test_no_error_ever_mentions_the_secret() -> None:
    verifier = SigV4Verifier([Credential(ACCESS_KEY, SECRET), Credential("AKIDTWO", "s3cr3t")])
    captured = post("hi")
    failures = [
        replace(captured, body=b"tampered"),
        captured.without_header("Authorization"),
        captured.with_header("X-Amz-Date", "20240120T115509Z"),
        captured.with_header("X-Amz-Content-SHA256", "0" * 64),
    ]
    for failing in failures:
        with pytest.raises(SignatureError) as caught:
            failing.verify(verifier)
        error = caught.value
        for text in (str(error), repr(error), error.canonical_request, error.string_to_sign):
            assert SECRET not in (text or "")
            assert "s3cr3t" not in (text or "")


def test_credential_repr_hides_the_secret() -> None:
    assert SECRET not in repr(Credential(ACCESS_KEY, SECRET))


# --- properties ------------------------------------------------------------------------------


@given(
    connection_id=st.text(min_size=1, max_size=40).filter(lambda c: c not in (".", "..")),
    data=st.binary(max_size=2048),
)
def test_any_connection_id_and_data_verify(connection_id: str, data: bytes) -> None:
    # ("." and ".." are dot segments on the path: refused, test_..._path_with_dot_segments.)
    verifier = SigV4Verifier([Credential(ACCESS_KEY, SECRET)])
    assert post(data, connection_id).verify(verifier) == ACCESS_KEY


@given(data=st.binary(min_size=1, max_size=512), position=st.integers(min_value=0))
def test_changing_any_body_byte_is_rejected(data: bytes, position: int) -> None:
    verifier = SigV4Verifier([Credential(ACCESS_KEY, SECRET)])
    captured = post(data)
    index = position % len(data)
    tampered = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
    with pytest.raises(SignatureError):
        replace(captured, body=tampered).verify(verifier)


_BOTOCORE_SIGNER = SigV4Auth(Credentials(ACCESS_KEY, SECRET), "execute-api", "us-east-1")


@given(path=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="?#")))
def test_canonical_uri_matches_botocore(path: str) -> None:
    assert canonical_uri(path) == _BOTOCORE_SIGNER._normalize_url_path(path)


@given(pairs=st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_canonical_query_string_matches_botocore(pairs: list[tuple[str, str]]) -> None:
    # Queries on the wire are what botocore's serializer writes: percent_encode_sequence.
    raw_query = percent_encode_sequence(pairs)
    expected = _BOTOCORE_SIGNER._canonical_query_string_url(urlsplit(f"http://h/?{raw_query}"))
    assert canonical_query_string(raw_query) == expected

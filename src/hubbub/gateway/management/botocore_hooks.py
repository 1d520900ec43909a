"""botocore event handlers that answer ``apigatewaymanagementapi`` calls in-process.

Imported only by :func:`hubbub.gateway.management.inprocess.install` (``[management]
in_process``), and only when botocore is installed. A call whose URL names a gateway of this
process (:func:`~hubbub.gateway.management.targets.target_for`) is answered by that gateway's
:meth:`~hubbub.gateway.management.api.ManagementApi.handle`, from the
:class:`~hubbub.wire.http.HttpRequest` a listener would have built from the same request:

- ``before-call`` (fired once botocore has validated and serialized the parameters): with
  ``auth = "none"`` the operation runs here. A success without a body to parse (PostToConnection,
  DeleteConnection: the hot path) is handed back parsed (by botocore's own parser; a post
  accepted in the caller's thread as that parser reads it, built directly), so botocore
  skips building, signing and sending a request and its retry checks — half of its remaining
  time per call. The events of those skipped steps (``request-created``, ``before-sign``,
  ``before-send``, ``needs-retry``, ``response-received``) are not emitted for such a call;
  ``after-call`` is. Any other answer waits for ``before-send``.
- ``choose-signer`` turns SigV4 signing off for those calls (the listener ignores signatures
  under ``auth = "none"``; signing is about a third of botocore's client-side time).
- ``before-send`` (the hook botocore offers for answering a request without the network) hands
  botocore an ``AWSResponse`` with the status, headers and body the listener would have sent:
  ``before-call``'s answer on the first attempt, else a fresh run of the operation. botocore
  parses it, raises ``GoneException`` and friends, and retries it exactly as a response read from
  a socket. With ``auth = "sigv4"`` every call takes this way, signed: ``handle`` verifies the
  signature, so a handler with a wrong key gets ``ForbiddenException`` as over HTTP (and on AWS).

The handlers are installed once per process into botocore's list of built-in handlers, so every
session created afterwards has them (``boto3.client``, ``boto3.session.Session().client``, any
credentials), plus boto3's default session if it already exists. They are registered for
``apigatewaymanagementapi`` events only. A botocore ``Stubber`` still answers first: its
``before-call.*.*`` handler is more specific than ours.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import botocore
from botocore import handlers
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.endpoint import DEFAULT_TIMEOUT, convert_to_response_dict
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.parsers import ResponseParser, create_parser

from hubbub.gateway.management.targets import Target, call, post_without_waiting, target_for
from hubbub.wire.http import HttpRequest, HttpResponse

_SERVICE = "apigatewaymanagementapi"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Request-context keys (one context is shared by the events of every attempt of one call):
# "skip signing" from before-call for choose-signer, and before-call's answer for before-send.
_UNSIGNED = "hubbub_unsigned"
_ANSWER = "hubbub_answer"
_installed = False
# Recent botocore hands the request context on to before-send (AWSPreparedRequest.context);
# without it before-call cannot keep an answer for before-send, which then answers every call.
_CONTEXT_REACHES_SEND = "context" in inspect.signature(AWSPreparedRequest).parameters


def install() -> None:
    """Add the handlers to every botocore session created from now on; idempotent."""
    global _installed
    if _installed:
        return
    hooks = [
        (f"before-call.{_SERVICE}", _before_call),
        (f"choose-signer.{_SERVICE}", _choose_signer),
        (f"before-send.{_SERVICE}", _before_send),
    ]
    handlers.BUILTIN_HANDLERS.extend(hooks)
    boto3 = sys.modules.get("boto3")
    session = getattr(boto3, "DEFAULT_SESSION", None)
    if session is not None:  # created before the handlers became built-in
        for event, handler in hooks:
            session.events.register(event, handler, unique_id=f"hubbub-{event}")
    _installed = True


def _before_call(
    model: Any, params: Mapping[str, Any], context: dict[str, Any], **_: Any
) -> tuple[AWSResponse, dict[str, Any]] | None:
    url = params["url"]
    target = target_for(url)
    if target is None or target.signed:
        return None  # not ours, or to be signed and verified: the whole way through before-send
    context[_UNSIGNED] = True
    if not _CONTEXT_REACHES_SEND:
        return None  # no way to hand a kept answer to before-send: it runs the operation
    method, headers, body = params["method"], params["headers"], params["body"]
    answer: HttpResponse | Exception | None = None
    if model.name == "PostToConnection":
        # Without the headers: a post is accepted in this thread only where nothing reads them
        # (no authentication, see ManagementApi.accept_post), and copying them out of botocore's
        # HeadersDict was a tenth of this hook's time.
        answer = post_without_waiting(target, _http_request(method, url, {}, body))
        if answer is not None and answer.status == 200 and not answer.body:
            return _accepted(url, answer)
    if answer is None:
        answer = _answer(target, _http_request(method, url, headers, body), url, context)
    if isinstance(answer, Exception) or answer.status >= 300 or model.output_shape is not None:
        # botocore parses it with its own configured parser and retries it, in before-send.
        context[_ANSWER] = answer
        return None
    http = _aws_response(url, answer)
    service = model.service_model
    protocol = getattr(service, "resolved_protocol", None) or service.protocol
    # No output shape (checked above), as botocore's endpoint passes it; the stubs want a Shape.
    parsed: dict[str, Any] = _parser(protocol).parse(
        convert_to_response_dict(http, model),
        model.output_shape,  # type: ignore[arg-type]
    )
    parsed["ResponseMetadata"]["RetryAttempts"] = 0  # as botocore's endpoint adds it
    return http, parsed


def _accepted(url: str, answer: HttpResponse) -> tuple[AWSResponse, dict[str, Any]]:
    """A 200 without a body as botocore's parser reads it (the test suite holds the two equal),
    built here: parsing was a third of the hook's own time on the seed pattern's hot path."""
    http = _aws_response(url, answer)
    headers = {name.lower(): value for name, value in http.headers.items()}  # as the parser
    metadata: dict[str, Any] = {}
    if "x-amzn-requestid" in headers:
        metadata["RequestId"] = headers["x-amzn-requestid"]
    metadata["HTTPStatusCode"] = 200
    metadata["HTTPHeaders"] = headers
    metadata["RetryAttempts"] = 0  # as botocore's endpoint adds it
    return http, {"ResponseMetadata": metadata}


def _choose_signer(context: Mapping[str, Any], **_: Any) -> object:
    return botocore.UNSIGNED if context.get(_UNSIGNED) else None


def _before_send(request: Any, **_: Any) -> AWSResponse | None:
    context = getattr(request, "context", None) or {}
    answer = context.pop(_ANSWER, None)  # the first attempt's, from before-call
    if answer is None:
        target = target_for(request.url)
        if target is None:
            return None
        http = _http_request(request.method, request.url, request.headers, request.body)
        answer = _answer(target, http, request.url, context)
    if isinstance(answer, Exception):
        raise answer  # as from the network: botocore retries it like a socket error
    return _aws_response(request.url, answer)


def _answer(
    target: Target, request: HttpRequest, url: str, context: Mapping[str, Any]
) -> HttpResponse | Exception:
    """The gateway's answer, or the exception the network path would raise without one."""
    timeout = getattr(context.get("client_config"), "read_timeout", None) or DEFAULT_TIMEOUT
    try:
        return call(target, request, float(timeout))
    except TimeoutError:
        return ReadTimeoutError(endpoint_url=url)
    except ConnectionAbortedError:
        return ConnectionClosedError(endpoint_url=url)


def _http_request(method: str, url: str, headers: Mapping[str, Any], body: Any) -> HttpRequest:
    """The :class:`HttpRequest` a listener would build from this request on the wire."""
    scheme, _, rest = url.partition("://")
    slash = rest.find("/")
    netloc, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    raw_path, _, query = target.partition("?")
    # urllib3 adds Host when it sends (without the scheme's default port); SigV4 signs it.
    pairs = [("Host", _host_header(scheme, netloc))]
    for name, value in headers.items():
        pairs.append((name, value.decode("latin-1") if isinstance(value, bytes) else value))
    return HttpRequest(
        method=method,
        raw_path=raw_path,
        query_string=query,
        headers=tuple(pairs),
        body=_body(body),
        remote="127.0.0.1",
    )


def _host_header(scheme: str, netloc: str) -> str:
    default = f":{_DEFAULT_PORTS.get(scheme, 0)}"
    return netloc[: -len(default)] if netloc.endswith(default) else netloc


def _body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    # A file-like Data= argument: read it, and leave it where botocore expects it.
    start = body.tell()
    data = body.read()
    body.seek(start)
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


class _Raw:
    """The part of urllib3's response that ``AWSResponse.content`` reads."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _aws_response(url: str, response: HttpResponse) -> AWSResponse:
    headers = dict(response.headers)
    # aiohttp adds these on the wire; everything else is the API's own.
    headers["Content-Length"] = str(len(response.body))
    if response.body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    # Any mapping will do: AWSResponse copies it into a HeadersDict (the stubs say HTTPHeaders).
    return AWSResponse(url, response.status, headers, _Raw(response.body))  # type: ignore[arg-type]


@functools.cache
def _parser(protocol: str) -> ResponseParser:
    # One per protocol, not one per response as botocore's endpoint makes them: parsers keep no
    # state between responses.
    parser: ResponseParser = create_parser(protocol)
    return parser

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

- ``creating-client-class`` gives every apigatewaymanagementapi client three caches of botocore's
  own per-call work, each a function of what it is keyed by (tests/gateway/test_inprocess_caches.py
  compares cached clients with uncached twins): the endpoint, for endpoints that name a gateway of
  this process (:class:`_CachingResolver`; ``before-endpoint-resolution`` still fires on every
  call), the User-Agent header (:class:`_CachingUserAgent`) and the request path
  (:class:`_CachingUriSerializer`), all in :mod:`~hubbub.gateway.management.botocore_caches`.
  Together they were about two fifths of botocore's time per ``post_to_connection`` before any
  hook could answer it.
- The same mixin (:class:`_CachingClient`) overrides ``_make_api_call``: a PostToConnection that
  a gateway of this process accepts in the caller's thread is answered there before any of
  botocore's per-call machinery, when that is invisible to the caller
  (:class:`~hubbub.gateway.management.botocore_fast.FastPost`, whose docstring lists what
  botocore does per call and why each step may be skipped; tests/gateway/test_inprocess_fast.py).
  Any other call, or one with a handler of the user's on its events, takes botocore's way and
  the hooks above.

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
from botocore import handlers, useragent
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.endpoint import DEFAULT_TIMEOUT, convert_to_response_dict
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.parsers import ResponseParser, create_parser
from botocore.regions import EndpointRulesetResolver
from botocore.serialize import RestJSONSerializer

from hubbub.gateway.management.botocore_caches import (
    _RESOLVER_CACHEABLE,
    _URI_CACHEABLE,
    _USER_AGENT_CACHEABLE,
    _CachingResolver,
    _CachingUriSerializer,
    _CachingUserAgent,
)
from hubbub.gateway.management.botocore_fast import (
    FastPost,
    accepted_response,
    http_request,
    wire_headers,
)
from hubbub.gateway.management.targets import Target, call, post_without_waiting, target_for
from hubbub.wire.http import HttpRequest, HttpResponse

_SERVICE = "apigatewaymanagementapi"
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
        (f"creating-client-class.{_SERVICE}", _add_client_mixin),
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


def _add_client_mixin(base_classes: list[type], **_: Any) -> None:
    """``creating-client-class``: every apigatewaymanagementapi client class gets
    :class:`_CachingClient` first among its bases."""
    if _RESOLVER_CACHEABLE or _USER_AGENT_CACHEABLE or _URI_CACHEABLE:
        base_classes.insert(0, _CachingClient)


class _CachingClient:
    """Gives its client the caching variants of botocore's resolver, user agent and serializer
    (each only where the client has botocore's own class), and answers its PostToConnection
    without botocore's per-call machinery where that is invisible
    (:class:`~hubbub.gateway.management.botocore_fast.FastPost`)."""

    _hubbub_fast: FastPost | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # BaseClient's, next in the class's bases
        resolver = getattr(self, "_ruleset_resolver", None)
        # Only botocore's own classes: a subclass may work differently.
        if _RESOLVER_CACHEABLE and type(resolver) is EndpointRulesetResolver:
            _CachingResolver.adopt(resolver)
        agent = getattr(self, "_user_agent_creator", None)
        if _USER_AGENT_CACHEABLE and type(agent) is useragent.UserAgentString:
            _CachingUserAgent.adopt(agent)
        validating = getattr(self, "_serializer", None)  # botocore's ParamValidationDecorator
        serializer = getattr(validating, "_serializer", validating)
        if _URI_CACHEABLE and type(serializer) is RestJSONSerializer:
            _CachingUriSerializer.adopt(serializer)
        self._hubbub_fast = FastPost(self, _before_call)

    def _make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> Any:
        fast = self._hubbub_fast
        if operation_name == "PostToConnection" and fast is not None:
            parsed = fast.post(api_params)
            if parsed is not None:
                return parsed
        base: Any = super()  # BaseClient's
        return base._make_api_call(operation_name, api_params)


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
        answer = post_without_waiting(target, http_request(method, url, {}, body))
        if answer is not None and answer.status == 200 and not answer.body:
            return _accepted(url, answer)
    if answer is None:
        answer = _answer(target, http_request(method, url, headers, body), url, context)
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
    wire = wire_headers(answer)
    return _aws_response(url, answer, wire), accepted_response(answer, wire)


def _choose_signer(context: Mapping[str, Any], **_: Any) -> object:
    return botocore.UNSIGNED if context.get(_UNSIGNED) else None


def _before_send(request: Any, **_: Any) -> AWSResponse | None:
    context = getattr(request, "context", None) or {}
    answer = context.pop(_ANSWER, None)  # the first attempt's, from before-call
    if answer is None:
        target = target_for(request.url)
        if target is None:
            return None
        http = http_request(request.method, request.url, request.headers, request.body)
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


class _Raw:
    """The part of urllib3's response that ``AWSResponse.content`` reads."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _aws_response(
    url: str, response: HttpResponse, headers: dict[str, str] | None = None
) -> AWSResponse:
    if headers is None:
        headers = wire_headers(response)
    # Any mapping will do: AWSResponse copies it into a HeadersDict (the stubs say HTTPHeaders).
    return AWSResponse(url, response.status, headers, _Raw(response.body))  # type: ignore[arg-type]


@functools.cache
def _parser(protocol: str) -> ResponseParser:
    # One per protocol, not one per response as botocore's endpoint makes them: parsers keep no
    # state between responses.
    parser: ResponseParser = create_parser(protocol)
    return parser

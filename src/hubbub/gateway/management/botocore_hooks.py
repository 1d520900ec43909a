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
  (:class:`_CachingUriSerializer`). Together they were about two fifths of botocore's time per
  ``post_to_connection`` before any hook could answer it.

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
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import botocore
from botocore import handlers, useragent
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.context import get_context
from botocore.endpoint import DEFAULT_TIMEOUT, convert_to_response_dict
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.parsers import ResponseParser, create_parser
from botocore.regions import EndpointRulesetResolver
from botocore.serialize import RestJSONSerializer

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
    (each only where the client has botocore's own class)."""

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


# The builtins of one cache miss, from _CachingResolver.construct_endpoint (which emitted the
# event that customized them) to its _get_customized_builtins, in the same thread.
_pinned = threading.local()
# Endpoint parameters whose value botocore also records as a user-agent feature: their rulesets
# are not cached (a hit would skip the recording).
_FEATURE_PARAMS = frozenset({"AccountId", "AccountIdEndpointMode"})
_CACHE_SIZE = 64
_Key = tuple[str, tuple[Any, ...]]  # (operation name, the builtins its endpoint parameters read)
# The resolver's parts that _CachingResolver relies on (botocore 1.34 to the pinned one have them).
_RESOLVER_CACHEABLE = all(
    hasattr(EndpointRulesetResolver, name)
    for name in (
        "construct_endpoint",
        "_get_customized_builtins",
        "_get_static_context_params",
        "_get_dynamic_context_params",
        "_get_client_context_params",
    )
)


class _CachingResolver(EndpointRulesetResolver):
    """botocore's endpoint resolution, remembered for calls to a gateway of this process.

    Resolving the endpoint was about a third of botocore's own time per ``post_to_connection``,
    yet its answer only depends on the builtins (region, ``endpoint_url``, FIPS and dual-stack
    flags) once the operation takes no endpoint parameter from its arguments, its model or the
    client's context (none of apigatewaymanagementapi's operations do). So each call still emits
    ``before-endpoint-resolution`` with a fresh copy of the builtins, as botocore does (a handler
    may change them), and the builtins the endpoint parameters read, after that event, are the
    cache key. A miss runs botocore's own resolution with those same builtins (the event is not
    emitted twice), errors included. Only endpoints that name a gateway of this process are
    remembered; any other call resolves as botocore resolves it.
    """

    _hubbub_keys: dict[str, tuple[str, ...] | None]
    _hubbub_cache: dict[_Key, Any]

    @classmethod
    def adopt(cls, resolver: EndpointRulesetResolver) -> None:
        resolver.__class__ = cls
        assert isinstance(resolver, cls)
        resolver._hubbub_keys = {}
        resolver._hubbub_cache = {}

    def construct_endpoint(self, operation_model: Any, call_args: Any, request_context: Any) -> Any:
        if call_args is None:
            call_args = {}
        if request_context is None:
            request_context = {}
        builtins = self._get_customized_builtins(operation_model, call_args, request_context)
        key = self._key(operation_model, builtins)
        if key is not None:
            try:
                endpoint = self._hubbub_cache.get(key)
            except TypeError:  # a value a handler put in the builtins that cannot be a key
                key = endpoint = None
            if endpoint is not None:
                # botocore builds a new headers dict per call; the rest it shares already.
                return endpoint._replace(headers=dict(endpoint.headers))
        _pinned.builtins = builtins
        try:
            endpoint = super().construct_endpoint(operation_model, call_args, request_context)
        finally:
            _pinned.builtins = None
        if key is not None and self._may_keep(key, builtins):
            if len(self._hubbub_cache) >= _CACHE_SIZE:
                self._hubbub_cache.clear()
            self._hubbub_cache[key] = endpoint._replace(headers=dict(endpoint.headers))
        return endpoint

    def _get_customized_builtins(
        self, operation_model: Any, call_args: Any, request_context: Any
    ) -> Any:
        builtins = getattr(_pinned, "builtins", None)
        if builtins is not None:
            _pinned.builtins = None
            return builtins
        base: Any = EndpointRulesetResolver  # its private parts are not in botocore's stubs
        return base._get_customized_builtins(self, operation_model, call_args, request_context)

    def _key(self, operation_model: Any, builtins: Mapping[str, Any]) -> _Key | None:
        """The cache key of this call, or None when its operation's endpoint is not cacheable."""
        name = operation_model.name
        try:
            names = self._hubbub_keys[name]
        except KeyError:
            names = self._hubbub_keys[name] = self._builtin_names(operation_model)
        if names is None:
            return None
        return (name, tuple(map(builtins.get, names)))

    @staticmethod
    def _may_keep(key: _Key, builtins: Mapping[str, Any]) -> bool:
        """Whether a resolved endpoint is remembered: only for a gateway of this process, and
        only when no builtin is resolved when read (an AccountId provider)."""
        endpoint = builtins.get("SDK::Endpoint")
        _, values = key
        return (
            isinstance(endpoint, str)
            and target_for(endpoint) is not None
            and not any(callable(value) for value in values)
        )

    def _builtin_names(self, operation_model: Any) -> tuple[str, ...] | None:
        """The builtins the endpoint parameters read for this operation, or None when some
        parameter comes from elsewhere (the call's arguments, the model, the client context) or
        records a user-agent feature."""
        resolver: Any = self  # its private parts are not in botocore's stubs
        if (
            resolver._get_static_context_params(operation_model)
            or resolver._get_dynamic_context_params(operation_model)
            or getattr(operation_model, "operation_context_parameters", None)
            or resolver._get_client_context_params()
        ):
            return None
        definitions: Mapping[str, Any] = resolver._param_definitions
        if _FEATURE_PARAMS.intersection(definitions):
            return None
        return tuple(d.builtin for d in definitions.values() if d.builtin is not None)


# What _CachingUserAgent relies on (botocore's own cache of the header's fixed parts).
_USER_AGENT_CACHEABLE = hasattr(useragent.UserAgentString, "_static_inputs") and hasattr(
    useragent, "_default_modify_components"
)


class _CachingUserAgent(useragent.UserAgentString):
    """botocore's User-Agent header, remembered per set of feature ids.

    botocore caches the header's fixed parts (keyed by :meth:`_static_inputs`) and rebuilds only
    the feature ids (``m/...``) on every call, a tenth of its own time per ``post_to_connection``.
    Those ids are the client's plus the ones registered during this call, and the header is a
    function of them and of those same fixed inputs, so both are the key here. A customized
    ``modify_components`` (botocore's hook for rewriting the header) goes botocore's way.
    """

    _hubbub_strings: dict[tuple[Any, ...], str]

    @classmethod
    def adopt(cls, agent: useragent.UserAgentString) -> None:
        agent.__class__ = cls
        assert isinstance(agent, cls)
        agent._hubbub_strings = {}

    def to_string(self) -> str:
        module: Any = useragent  # its private parts are not in botocore's stubs
        if module.modify_components is not module._default_modify_components:
            return super().to_string()
        agent: Any = self
        ctx = get_context()
        # The same union, in the same order, as UserAgentString._build_feature_metadata's.
        features = (agent._client_features or set()).union(set() if ctx is None else ctx.features)
        key = (agent._static_inputs(), tuple(features))
        try:
            return self._hubbub_strings[key]
        except KeyError:
            pass
        header = super().to_string()
        if len(self._hubbub_strings) >= _CACHE_SIZE:
            self._hubbub_strings.clear()
        self._hubbub_strings[key] = header
        return header


_URI_CACHEABLE = hasattr(RestJSONSerializer, "_render_uri_template")
_URI_CACHE_SIZE = 1024  # connection ids, for the seed pattern: one per connection posted to


class _CachingUriSerializer(RestJSONSerializer):
    """botocore's request serializer, with the request path remembered per path parameters.

    Rendering ``/@connections/{connectionId}`` (a regular expression over the template, then
    percent-encoding) was a tenth of botocore's own time per ``post_to_connection``; the path is
    a function of the template and the values (with their types) it is rendered from, the key
    here. Validation still runs first on every call (``ParamValidationDecorator``).
    """

    _hubbub_uris: dict[tuple[Any, ...], str]

    @classmethod
    def adopt(cls, serializer: RestJSONSerializer) -> None:
        serializer.__class__ = cls
        assert isinstance(serializer, cls)
        serializer._hubbub_uris = {}

    def _render_uri_template(self, uri_template: str, params: Mapping[str, Any]) -> str:
        base: Any = RestJSONSerializer  # its private parts are not in botocore's stubs
        try:
            key = (uri_template, *[(name, type(v), v) for name, v in params.items()])
            return self._hubbub_uris[key]
        except KeyError:
            pass
        except TypeError:  # a value that cannot be a key
            uncached: str = base._render_uri_template(self, uri_template, params)
            return uncached
        uri: str = base._render_uri_template(self, uri_template, params)
        if len(self._hubbub_uris) >= _URI_CACHE_SIZE:
            self._hubbub_uris.clear()
        self._hubbub_uris[key] = uri
        return uri


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
    wire = _wire_headers(answer)
    # As the parser lowers the response's HeadersDict; read from the plain dict it was made of
    # (iterating the HeadersDict was half of this function's time).
    headers = {name.lower(): value for name, value in wire.items()}
    metadata: dict[str, Any] = {}
    if "x-amzn-requestid" in headers:
        metadata["RequestId"] = headers["x-amzn-requestid"]
    metadata["HTTPStatusCode"] = 200
    metadata["HTTPHeaders"] = headers
    metadata["RetryAttempts"] = 0  # as botocore's endpoint adds it
    return _aws_response(url, answer, wire), {"ResponseMetadata": metadata}


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


def _wire_headers(response: HttpResponse) -> dict[str, str]:
    """The response's headers as a client reads them off the wire."""
    headers = dict(response.headers)
    # aiohttp adds these on the wire; everything else is the API's own.
    headers["Content-Length"] = str(len(response.body))
    if response.body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    return headers


def _aws_response(
    url: str, response: HttpResponse, headers: dict[str, str] | None = None
) -> AWSResponse:
    if headers is None:
        headers = _wire_headers(response)
    # Any mapping will do: AWSResponse copies it into a HeadersDict (the stubs say HTTPHeaders).
    return AWSResponse(url, response.status, headers, _Raw(response.body))  # type: ignore[arg-type]


@functools.cache
def _parser(protocol: str) -> ResponseParser:
    # One per protocol, not one per response as botocore's endpoint makes them: parsers keep no
    # state between responses.
    parser: ResponseParser = create_parser(protocol)
    return parser

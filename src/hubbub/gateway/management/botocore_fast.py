"""``post_to_connection`` to a gateway of this process, answered before botocore's machinery.

The seed pattern's hot call. Even with ``before-call`` answering it
(:mod:`~hubbub.gateway.management.botocore_hooks`), botocore's own work per call was about
three fifths of the server's CPU per message: :meth:`BaseClient._make_api_call` (botocore 1.44)
does, for a PostToConnection,

1. ``history_recorder.record("API_CALL", ...)`` (a no-op unless a history handler is enabled);
2. a debug log line when the operation is deprecated (PostToConnection is not);
3. the auth type, from the operation and ``auth_scheme_preference`` (only signing reads it);
4. emits ``provide-client-params`` and ``before-parameter-build`` (built-in handlers:
   ``generate_idempotent_uuid``, ``_handle_request_validation_mode_member``);
5. resolves the endpoint: emits ``before-endpoint-resolution`` with a copy of the client's
   builtins, then the ruleset (remembered by ``_CachingResolver``);
6. validates the parameters (unless ``parameter_validation=False``) and serializes them: the
   path from ``ConnectionId`` (percent-encoded), the body from ``Data`` (a str UTF-8 encoded),
   the User-Agent header, the URL joined from the endpoint and the path;
7. checksum and compression steps (PostToConnection has neither trait);
8. emits ``before-call`` (built-in handlers: hubbub's ``_before_call``, which answers it,
   ``add_recursion_detection_header`` and ``inject_api_version_header_if_needed``, which only
   add request headers);
9. emits ``after-call`` (built-in handler under the standard and adaptive retry modes:
   ``RetryQuotaChecker.release_retry_quota``, which gives retry quota back on a success);
10. raises the modelled error for a status of 300 or more, else returns the parsed response.

:class:`FastPost` does what of this can be seen by the caller, and nothing else: for a client
whose event handlers are all ones listed above (:meth:`FastPost._eligible`, recomputed whenever
the client's emitter changes its handlers, which is when it replaces its lookup cache), while
``BaseClient._make_api_call`` is botocore's own (tracing libraries wrap it), with
parameters exactly as botocore accepts them unchanged (a ``str`` ``ConnectionId``, ``bytes``,
``bytearray`` or ``str`` ``Data``, no other key), an endpoint the client already resolved to a
gateway of this process under ``auth = "none"``, and a post that gateway accepts in this thread
(:func:`~hubbub.gateway.management.targets.post_without_waiting`). It records the call (1), takes
the URL botocore would build (5, 6), gives the retry quota back (9) and returns the response
botocore's parser makes of the 200 (the test suite holds the two equal). Anything else returns
None and the call takes botocore's whole way, raising its own errors: a post that is not
accepted here has had no effect (:meth:`Connections.post_soon` only reads until it accepts; the
management API counts nothing), so running it again through botocore is safe.

DeleteConnection is not taken this way: it needs the gateway's loop anyway (the round trip is
most of its cost), and a failed one is counted in the management metrics, so running it again
through botocore would count it twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any

import botocore
from botocore import awsrequest, handlers
from botocore.client import BaseClient
from botocore.history import get_global_history_recorder
from botocore.hooks import EventAliaser, HierarchicalEmitter
from botocore.retries.standard import RetryQuotaChecker
from botocore.validate import ParamValidationDecorator, ParamValidator

from hubbub.gateway.management import botocore_caches
from hubbub.gateway.management.targets import post_without_waiting, target_for
from hubbub.wire.http import HttpRequest, HttpResponse

_SERVICE = "apigatewaymanagementapi"
_OPERATION = "PostToConnection"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_CACHE_SIZE = 1024  # connection ids, as _CachingUriSerializer's
_history = get_global_history_recorder()
# botocore's own URL join (its private parts are not in botocore's stubs).
_urljoin: Callable[[str, str, str | None], str] = getattr(awsrequest, "_urljoin")  # noqa: B009


def _builtin_handlers(*names: str) -> tuple[object, ...]:
    return tuple(getattr(handlers, name) for name in names if hasattr(handlers, name))


# botocore's built-in handlers of the call's events that do nothing the caller can see for a
# PostToConnection answered here, by event: an idempotency token and a checksum validation mode
# are filled only for operations that have them (checked in _model_is_plain), and request
# headers are not read by an accepted post (ManagementApi.accept_post).
_NO_OPS = {
    "before-parameter-build": _builtin_handlers(
        "generate_idempotent_uuid", "_handle_request_validation_mode_member"
    ),
    "before-call": _builtin_handlers(
        "add_recursion_detection_header", "inject_api_version_header_if_needed"
    ),
}


def _is_botocores(method: object) -> bool:
    """Whether ``method`` is botocore's own ``_make_api_call`` (its decorators included), not a
    wrapper of it."""
    package = os.path.dirname(botocore.__file__) + os.sep
    while True:
        # A wrapt wrapper (tracing libraries use wrapt) is not a plain function.
        if type(method) is not FunctionType or not method.__code__.co_filename.startswith(package):
            return False
        inner = getattr(method, "__wrapped__", None)
        if inner is None:
            return method.__name__ == "_make_api_call"
        method = inner


# botocore's _make_api_call, which FastPost stands in for, while nothing has replaced it:
# tracing libraries (AWS X-Ray, OpenTelemetry, ddtrace) wrap BaseClient._make_api_call, and a
# call they would see must take it. None (never fast) when it was wrapped before this import.
_BASE_METHODS = BaseClient.__dict__
_BOTOCORE_CALL = _BASE_METHODS.get("_make_api_call")
if not _is_botocores(_BOTOCORE_CALL):
    _BOTOCORE_CALL = None

_State = tuple[object, object, Any, tuple[Callable[..., Any], ...]]


class _Succeeded:
    """What ``release_retry_quota`` reads of the response of a call that succeeded."""

    status_code = 200


_SUCCEEDED = _Succeeded()


class FastPost:
    """One client's PostToConnection without botocore's per-call machinery, when it is
    invisible to the caller (see the module docstring)."""

    __slots__ = ("_client", "_own", "_state", "_urls")

    def __init__(self, client: Any, own_before_call: Callable[..., Any]) -> None:
        self._client = client
        self._own = own_before_call  # hubbub's before-call handler, which this stands in for
        # One tuple, replaced whole (handler threads share a client): the client's emitter and
        # its lookup cache when _eligible looked, and what it found (the operation model, or
        # None; the after-call retry-quota handlers).
        self._state: _State = (None, None, None, ())
        self._urls: dict[tuple[str, str], str] = {}

    def post(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The parsed response botocore would return, or None: take botocore's way."""
        events = self._client.meta.events
        emitter = getattr(events, "_emitter", None)
        seen = getattr(emitter, "_lookup_cache", None)
        # The emitter replaces its lookup cache on every register and unregister, and the one
        # compared here is kept alive by self._state, so no other dict can be at its address.
        state = self._state
        if events is not state[0] or seen is not state[1]:
            model, release = self._eligible(events) if seen is not None else (None, ())
            state = self._state = (events, seen, model, release)
        _, _, model, release = state
        if model is None or len(params) != 2:
            return None
        method = _BASE_METHODS.get("_make_api_call")
        if method is not _BOTOCORE_CALL or method is None:
            return None
        cid = params.get("ConnectionId")
        data = params.get("Data")
        if type(cid) is not str:
            return None
        if type(data) is str:
            try:
                body = data.encode("utf-8")  # as botocore's serializer encodes it
            except UnicodeEncodeError:
                return None  # botocore raises it
        elif type(data) is bytes:
            body = data
        elif type(data) is bytearray:
            body = bytes(data)
        else:
            return None  # file-like, or a type botocore rejects
        url = self._url(model, cid)
        if url is None:
            return None
        target = target_for(url)
        if target is None or target.signed:
            return None
        answer = post_without_waiting(target, http_request("POST", url, {}, body))
        if answer is None:
            return None  # not accepted here: nothing was done, botocore's way answers it
        # ManagementApi.accept_post only ever accepts with a 200 without a body.
        _history.record(
            "API_CALL", {"service": _SERVICE, "operation": _OPERATION, "params": params}
        )
        parsed = accepted_response(answer, wire_headers(answer))
        for give_back in release:
            give_back(http_response=_SUCCEEDED, parsed=parsed, model=model, context={})
        return parsed

    def _url(self, model: Any, cid: str) -> str | None:
        """The URL botocore would send this post to, from the endpoint the client resolved
        last time for the same builtins (None when it has not)."""
        if type(self._client._ruleset_resolver) is not botocore_caches._CachingResolver:
            return None  # replaced since _eligible looked
        resolver: Any = self._client._ruleset_resolver
        # No before-endpoint-resolution handler (checked in _eligible): the builtins are the
        # client's own, as botocore's copy of them would be.
        try:
            key = resolver._key(model, resolver._builtins)
            endpoint = None if key is None else resolver._hubbub_cache.get(key)
        except TypeError:  # a builtin that cannot be a key
            return None
        if endpoint is None:
            return None
        url_key = (endpoint.url, cid)
        url = self._urls.get(url_key)
        if url is None:
            serializer: Any = _uri_serializer(self._client)
            if serializer is None:
                return None  # replaced since _eligible looked
            path = serializer._render_uri_template(model.http["requestUri"], {"connectionId": cid})
            url = _urljoin(endpoint.url, path, None)
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[url_key] = url
        return url

    def _eligible(self, events: Any) -> tuple[Any, tuple[Callable[..., Any], ...]]:
        """The operation model when every handler of the call's events is one listed in the
        module docstring (hubbub's before-call among them), and the client's parts are
        botocore's own with the caches, else None; and the after-call retry-quota handlers."""
        no: tuple[Any, tuple[Callable[..., Any], ...]] = (None, ())
        client = self._client
        # Their private parts are not in botocore's stubs.
        aliaser: Any = events
        emitter: Any = getattr(events, "_emitter", None)
        if type(aliaser) is not EventAliaser or type(emitter) is not HierarchicalEmitter:
            return no
        if type(client._ruleset_resolver) is not botocore_caches._CachingResolver:
            return no
        if _uri_serializer(client) is None:
            return no
        model = client.meta.service_model.operation_model(_OPERATION)
        if not _model_is_plain(model):
            return no
        service = client.meta.service_model.service_id.hyphenize()
        trie, alias = _private(emitter)._handlers, _private(aliaser)._alias_event_name
        release: list[Callable[..., Any]] = []
        own = False
        for event in (
            f"provide-client-params.{service}.{_OPERATION}",
            f"before-parameter-build.{service}.{_OPERATION}",
            f"before-endpoint-resolution.{service}",
            f"before-call.{service}.{_OPERATION}",
            f"after-call.{service}.{_OPERATION}",
        ):
            kind = event.partition(".")[0]
            no_ops = _NO_OPS.get(kind, ())
            for handler in trie.prefix_search(alias(event)):
                if handler is self._own and kind == "before-call":
                    own = True
                elif kind == "after-call" and _is_quota_release(handler):
                    release.append(handler)
                # By identity: a handler need not be hashable.
                elif not any(handler is no_op for no_op in no_ops):
                    return no
        return (model, tuple(release)) if own else no


def _private(value: object) -> Any:
    """``value``, for reading parts of it that are not in botocore's stubs."""
    return value


def _is_quota_release(handler: object) -> bool:
    func = getattr(handler, "__func__", None)
    owner = getattr(handler, "__self__", None)
    return func is RetryQuotaChecker.release_retry_quota and type(owner) is RetryQuotaChecker


def _uri_serializer(client: Any) -> object | None:
    """The client's serializer when it is botocore's (with the path cache), validating with
    botocore's validator or not validating (``parameter_validation=False``); else None."""
    validating: Any = client._serializer
    serializer = getattr(validating, "_serializer", validating)
    if type(serializer) is not botocore_caches._CachingUriSerializer:
        return None
    if validating is not serializer and (
        type(validating) is not ParamValidationDecorator
        or type(getattr(validating, "_param_validator", None)) is not ParamValidator
    ):
        return None
    return serializer


def _model_is_plain(model: Any) -> bool:
    """PostToConnection as FastPost knows it: the path label and the blob payload, no
    constraint botocore's validator checks on them, none of the traits of steps 2, 4 and 7."""
    shape = model.input_shape
    members = shape.members
    if set(members) != {"ConnectionId", "Data"} or set(shape.required_members) != set(members):
        return False
    cid, data = members["ConnectionId"], members["Data"]
    return (
        model.http.get("method") == "POST"
        and cid.type_name == "string"
        and cid.serialization == {"location": "uri", "name": "connectionId"}
        and not cid.metadata  # no min length, enum or pattern
        and data.type_name == "blob"
        and shape.serialization.get("payload") == "Data"
        and not model.deprecated
        and not model.idempotent_members
        and not model.http_checksum
        and not getattr(model, "request_compression", None)
        and not model.endpoint
        and model.output_shape is None
        and "authPath" not in model.http
    )


def accepted_response(answer: HttpResponse, wire: Mapping[str, str]) -> dict[str, Any]:
    """A 200 without a body as botocore's parser reads it (the test suite holds the two equal),
    built here: parsing was a third of the in-process hook's own time on the hot path."""
    # As the parser lowers the response's HeadersDict; read from the plain dict it was made of.
    headers = {name.lower(): value for name, value in wire.items()}
    metadata: dict[str, Any] = {}
    if "x-amzn-requestid" in headers:
        metadata["RequestId"] = headers["x-amzn-requestid"]
    metadata["HTTPStatusCode"] = answer.status
    metadata["HTTPHeaders"] = headers
    metadata["RetryAttempts"] = 0  # as botocore's endpoint adds it
    return {"ResponseMetadata": metadata}


def wire_headers(response: HttpResponse) -> dict[str, str]:
    """The response's headers as a client reads them off the wire."""
    headers = dict(response.headers)
    # aiohttp adds these on the wire; everything else is the API's own.
    headers["Content-Length"] = str(len(response.body))
    if response.body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    return headers


def http_request(method: str, url: str, headers: Mapping[str, Any], body: Any) -> HttpRequest:
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

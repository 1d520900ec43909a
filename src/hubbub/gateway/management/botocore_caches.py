"""botocore's per-call work for apigatewaymanagementapi clients, remembered per client.

:class:`~hubbub.gateway.management.botocore_hooks._CachingClient` gives every such client these
variants of botocore's own classes (see that module's docstring):
:class:`_CachingResolver` (the endpoint), :class:`_CachingUserAgent` (the User-Agent header) and
:class:`_CachingUriSerializer` (the request path). tests/gateway/test_inprocess_caches.py compares
cached clients with uncached twins.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from botocore import useragent
from botocore.context import get_context
from botocore.regions import EndpointRulesetResolver
from botocore.serialize import RestJSONSerializer

from hubbub.gateway.management.targets import target_for

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

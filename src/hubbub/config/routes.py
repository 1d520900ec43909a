"""The ``[routes]`` and ``[authorizer]`` tables: handlers, URLs and the functions behind them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hubbub.aws.authorizer import parse_identity_source
from hubbub.config.coerce import coerce, string_table
from hubbub.config.model import (
    AuthorizerConfig,
    FunctionSpec,
    JwtConfig,
    RouteConfig,
)
from hubbub.errors import ConfigError
from hubbub.runtimes import launch

# A route's function (FunctionSpec): its code root, runtime, layers and memory; its name is
# the route's own ``name``.
_FUNCTION_KEYS = {"code", "runtime", "layers", "memory", "isolation", "reserved_concurrency"}
_ROUTE_KEYS = {
    "handler",
    "url",
    "timeout",
    "route_response",
    "environment",
    "name",
    *_FUNCTION_KEYS,
}
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _function_name(value: Any, key: str) -> str | None:
    """A Lambda function name: 1-64 letters, digits, hyphens or underscores (as Lambda's)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _FUNCTION_NAME.fullmatch(value):
        raise ConfigError(key, f"must be 1-64 letters, digits, - or _ (got {value!r})")
    return value


def load_routes(raw: Any, base_dir: Path) -> dict[str, RouteConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError("routes", "must be a table")
    routes: dict[str, RouteConfig] = {}
    for route_key, spec in raw.items():
        prefix = f'routes."{route_key}"'
        if not route_key:
            raise ConfigError(prefix, "route keys must not be empty")
        if not isinstance(spec, Mapping):
            raise ConfigError(prefix, "must be a table with handler = ... or url = ...")
        for key in spec:
            if key not in _ROUTE_KEYS:
                allowed = ", ".join(sorted(_ROUTE_KEYS))
                raise ConfigError(f"{prefix}.{key}", f"unknown key (known: {allowed})")
        handler = spec.get("handler")
        url = spec.get("url")
        if (handler is None) == (url is None):
            raise ConfigError(prefix, "needs exactly one of handler = ... or url = ...")
        if handler is not None:
            _check_handler_string(handler, f"{prefix}.handler")
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("http://", "https://"))
        ):
            raise ConfigError(f"{prefix}.url", f"must be an http:// or https:// URL, got {url!r}")
        timeout = spec.get("timeout")
        if timeout is not None:
            timeout = coerce(timeout, "float", f"{prefix}.timeout")
            if timeout == 0:
                raise ConfigError(f"{prefix}.timeout", "must be greater than 0")
        route_response = coerce(
            spec.get("route_response", False), "bool", f"{prefix}.route_response"
        )
        if route_response and route_key in ("$connect", "$disconnect"):
            raise ConfigError(f"{prefix}.route_response", "only message routes can be two-way")
        routes[route_key] = RouteConfig(
            key=route_key,
            handler=handler,
            url=url,
            timeout=timeout,
            route_response=route_response,
            environment=string_table(spec.get("environment", {}), f"{prefix}.environment"),
            name=_function_name(spec.get("name"), f"{prefix}.name"),
            function=_function_spec(spec, prefix, base_dir, handler),
        )
    return routes


def _function_spec(
    spec: Mapping[str, Any], prefix: str, base_dir: Path, handler: Any
) -> FunctionSpec | None:
    """A route's (or the authorizer's) ``code``/``runtime``/``layers``/``memory``/``isolation``/
    ``reserved_concurrency``."""
    present = [key for key in sorted(_FUNCTION_KEYS) if key in spec]
    if not present:
        return None
    if handler is None:
        raise ConfigError(f"{prefix}.{present[0]}", "only a handler = ... route has a function")
    runtime = coerce(spec.get("runtime", ""), "str", f"{prefix}.runtime")
    isolation = coerce(spec.get("isolation", ""), "str", f"{prefix}.isolation")
    reserved = spec.get("reserved_concurrency")
    if reserved is not None:
        reserved = coerce(reserved, "int", f"{prefix}.reserved_concurrency")
        if reserved < 1:
            raise ConfigError(f"{prefix}.reserved_concurrency", "must be at least 1")

    def folder(value: Any, key: str) -> Path:
        path = coerce(value, "Path | None", key) or Path(".")
        path = path if path.is_absolute() else base_dir / path
        if not path.is_dir():
            raise ConfigError(key, f"{path} is not a folder")
        return path

    code = folder(spec.get("code", "."), f"{prefix}.code")
    launch.check(runtime, isolation, code, prefix)
    if reserved is not None and launch.runtime_kind(runtime, isolation) is None:
        raise ConfigError(
            f"{prefix}.reserved_concurrency",
            'applies to functions in their own processes (isolation = "process", or a '
            "nodejs/provided runtime)",
        )
    layers_raw = coerce(spec.get("layers", []), "tuple[str, ...]", f"{prefix}.layers")
    layers = tuple(folder(v, f"{prefix}.layers[{i}]") for i, v in enumerate(layers_raw))
    memory = spec.get("memory")
    if memory is not None:
        memory = coerce(memory, "int", f"{prefix}.memory")
    return FunctionSpec(
        code=code,
        runtime=runtime,
        layers=layers,
        name=spec.get("name") or "",  # checked by _function_name
        memory=memory,
        isolation=isolation,
        reserved_concurrency=reserved,
    )


def load_authorizer(raw: Any, base_dir: Path) -> AuthorizerConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("authorizer", "must be a table")
    known = {"identity_source", "handler", "url", "timeout", "jwt", "environment", "name"}
    known |= _FUNCTION_KEYS
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"authorizer.{key}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    sources = raw.get("identity_source", [])
    if isinstance(sources, str):
        sources = [sources]
    sources = coerce(sources, "tuple[str, ...]", "authorizer.identity_source")
    for i, source in enumerate(sources):
        try:
            parse_identity_source(source)
        except ValueError as exc:
            raise ConfigError(f"authorizer.identity_source[{i}]", str(exc)) from exc
    kinds = [k for k in ("handler", "url", "jwt") if k in raw]
    if len(kinds) != 1:
        raise ConfigError(
            "authorizer", "needs exactly one of handler = ..., url = ... or [authorizer.jwt]"
        )
    handler = raw.get("handler")
    if handler is not None:
        _check_handler_string(handler, "authorizer.handler")
    url = raw.get("url")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise ConfigError("authorizer.url", f"must be an http:// or https:// URL, got {url!r}")
    timeout = raw.get("timeout")
    if timeout is not None:
        timeout = coerce(timeout, "float", "authorizer.timeout") or None
    jwt = _jwt(raw["jwt"], base_dir) if "jwt" in raw else None
    if jwt is not None and not sources:
        raise ConfigError(
            "authorizer.identity_source", "the JWT authorizer needs the token's source"
        )
    return AuthorizerConfig(
        identity_source=sources,
        handler=handler,
        url=url,
        timeout=timeout,
        jwt=jwt,
        environment=string_table(raw.get("environment", {}), "authorizer.environment"),
        name=_function_name(raw.get("name"), "authorizer.name"),
        function=_function_spec(raw, "authorizer", base_dir, handler),
    )


def _jwt(raw: Any, base_dir: Path) -> JwtConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("authorizer.jwt", "must be a table")
    known = {"issuer", "audience", "secret", "jwks_file", "algorithms", "leeway"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"authorizer.jwt.{key}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    audience = raw.get("audience", [])
    if isinstance(audience, str):
        audience = [audience]
    jwks = raw.get("jwks_file")
    jwks_path = None
    if jwks is not None:
        jwks_path = coerce(jwks, "Path | None", "authorizer.jwt.jwks_file")
        if not jwks_path.is_absolute():
            jwks_path = base_dir / jwks_path
    config = JwtConfig(
        issuer=coerce(raw["issuer"], "str", "authorizer.jwt.issuer") if "issuer" in raw else None,
        audience=coerce(audience, "tuple[str, ...]", "authorizer.jwt.audience"),
        secret=coerce(raw["secret"], "str", "authorizer.jwt.secret") if "secret" in raw else None,
        jwks_file=jwks_path,
        algorithms=coerce(
            raw.get("algorithms", []), "tuple[str, ...]", "authorizer.jwt.algorithms"
        ),
        leeway=coerce(raw.get("leeway", 0), "float", "authorizer.jwt.leeway"),
    )
    if (config.secret is None) == (config.jwks_file is None):
        raise ConfigError("authorizer.jwt", "needs exactly one of secret = ... or jwks_file = ...")
    return config


def _check_handler_string(value: Any, key: str) -> None:
    if not isinstance(value, str) or "." not in value.strip("."):
        raise ConfigError(key, f'must look like "module.function" (got {value!r})')
    module, _, func = value.rpartition(".")
    parts = [*module.replace("/", ".").split("."), func]
    if not all(p.isidentifier() for p in parts):
        raise ConfigError(key, f'must look like "module.function" (got {value!r})')

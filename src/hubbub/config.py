"""One typed configuration tree for the whole gateway.

Precedence, lowest first: built-in defaults (AWS's values) < ``hubbub.toml`` < ``HUBBUB_*``
environment variables < command-line flags. Loading (``load_config``) is kept apart from the model
(``Config``) so that other front ends (a Terraform or serverless.yml reader) can build the same
``Config``.

Every problem is reported as a :class:`~hubbub.errors.ConfigError` naming the dotted key, including
unknown keys, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from hubbub.errors import ConfigError

T = TypeVar("T")

SYSTEM_ROUTES = ("$connect", "$disconnect", "$default")


@dataclass(frozen=True)
class ApiConfig:
    name: str = "hubbub"
    stage: str = "dev"
    route_selection_expression: str = "$request.body.action"
    # The domainName put in events; handlers build https://{domainName}/{stage} from it.
    # Empty means "the management listener's host:port".
    domain_name: str = ""
    region: str = "us-east-1"
    account_id: str = "000000000000"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    compression: bool = False
    ping_interval: float = 0.0
    ping_timeout: float = 20.0
    allowed_origins: tuple[str, ...] = ()
    shutdown_grace: float = 10.0
    # Gateway processes sharing the listeners (hubbub.workers); 0 = one per CPU core.
    workers: int = 1


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class ManagementConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    auth: str = "none"
    credentials: tuple[Credential, ...] = ()
    # The HTTPS management listener that makes https://{domainName}/{stage} work for handlers.
    tls: bool = True
    tls_port: int = 8443  # 0 = any free port
    state_dir: Path | None = None  # None: hubbub.gateway.tls.default_state_dir() (per user)
    # boto3 calls from this process to these listeners skip the network (gateway/inprocess.py).
    in_process: bool = True


@dataclass(frozen=True)
class RouteConfig:
    key: str
    handler: str | None = None
    url: str | None = None
    timeout: float | None = None
    route_response: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.handler or self.url or ""


@dataclass(frozen=True)
class LimitsConfig:
    idle_timeout: float = 600.0
    max_duration: float = 7200.0
    max_frame_bytes: int = 32 * 1024
    max_message_bytes: int = 128 * 1024
    max_post_bytes: int = 128 * 1024
    handler_timeout: float = 29.0
    send_queue_bytes: int = 1024 * 1024
    allow_binary: bool = False
    max_connections: int = 0
    connect_rate: float = 0.0
    connect_rate_per_ip: float = 0.0
    message_rate: float = 0.0
    handshake_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_concurrent_invocations: int = 1000
    max_invocations_per_connection: int = 100
    handler_threads: int = 64


@dataclass(frozen=True)
class StaticConfig:
    dir: Path | None = None


@dataclass(frozen=True)
class StoreConfig:
    url: str = "memory://"
    key_prefix: str = "hubbub:"


@dataclass(frozen=True)
class ClusterConfig:
    node_id: str = "auto"
    heartbeat_interval: float = 2.0


@dataclass(frozen=True)
class HistoryConfig:
    """Room history for the opt-in recovery protocol (hubbub.gateway.recovery)."""

    enabled: bool = True
    size: int = 1000
    ttl: float = 300.0
    # Totals for the in-memory history (memory://): every room's kept messages together, and
    # how many rooms keep one.
    max_bytes: int = 64 * 1024 * 1024
    max_rooms: int = 100_000
    # "" follows [store]: memory:// keeps history in memory, redis:// in Redis streams.
    # "sqlite:///path.db" keeps it in a file so a single node that restarts loses nothing.
    url: str = ""


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True)
class JwtConfig:
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    secret: str | None = None
    jwks_file: Path | None = None
    algorithms: tuple[str, ...] = ()
    leeway: float = 0.0


@dataclass(frozen=True)
class AuthorizerConfig:
    """A REQUEST authorizer on $connect: a Lambda-style handler, an HTTP URL, or built-in JWT."""

    identity_source: tuple[str, ...] = ()
    handler: str | None = None
    url: str | None = None
    timeout: float | None = None
    jwt: JwtConfig | None = None


@dataclass(frozen=True)
class Config:
    api: ApiConfig = ApiConfig()
    server: ServerConfig = ServerConfig()
    management: ManagementConfig = ManagementConfig()
    environment: Mapping[str, str] = field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)
    limits: LimitsConfig = LimitsConfig()
    static: StaticConfig = StaticConfig()
    store: StoreConfig = StoreConfig()
    cluster: ClusterConfig = ClusterConfig()
    log: LogConfig = LogConfig()
    history: HistoryConfig = HistoryConfig()
    authorizer: AuthorizerConfig | None = None
    # Folder that handler module paths and relative file paths are resolved against.
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "<defaults>"


_SECTIONS: dict[str, type[Any]] = {
    "api": ApiConfig,
    "server": ServerConfig,
    "limits": LimitsConfig,
    "static": StaticConfig,
    "store": StoreConfig,
    "cluster": ClusterConfig,
    "log": LogConfig,
    "history": HistoryConfig,
}


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build a :class:`Config` from a TOML file, ``HUBBUB_*`` variables and flag overrides.

    ``overrides`` maps dotted keys (``"server.port"``) to values, as the CLI produces them.
    A missing ``path`` means defaults only; a path that does not exist is an error.
    """
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    source = "<defaults>"
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {file}: {exc.strerror}") from exc
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{file} is not valid TOML: {exc}") from exc
        base_dir = file.resolve().parent
        source = str(file)
    merged = _merge_env(raw, os.environ if env is None else env)
    for key, value in (overrides or {}).items():
        _set_dotted(merged, key, value)
    return build_config(merged, base_dir=base_dir, source=source)


def build_config(raw: Mapping[str, Any], *, base_dir: Path, source: str = "<dict>") -> Config:
    """Validate a plain mapping (as parsed from TOML) into a :class:`Config`."""
    known = {*_SECTIONS, "management", "environment", "routes", "authorizer"}
    for key in raw:
        if key not in known:
            raise ConfigError(key, f"unknown section (known: {', '.join(sorted(known))})")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        sections[name] = _section(cls, raw.get(name, {}), name)
    static = sections["static"]
    if static.dir is not None and not static.dir.is_absolute():
        sections["static"] = StaticConfig(dir=(base_dir / static.dir))
    management = _management(raw.get("management", {}))
    if management.state_dir is not None and not management.state_dir.is_absolute():
        management = replace(management, state_dir=base_dir / management.state_dir)
    environment = _string_table(raw.get("environment", {}), "environment")
    routes = _routes(raw.get("routes", {}))
    authorizer = _authorizer(raw["authorizer"], base_dir) if "authorizer" in raw else None
    config = Config(
        authorizer=authorizer,
        management=management,
        environment=environment,
        routes=routes,
        base_dir=base_dir,
        source=source,
        **sections,
    )
    _validate(config)
    return config


def _merge_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``HUBBUB_SECTION_KEY=value`` variables (e.g. ``HUBBUB_SERVER_PORT=9000``)."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for name, value in env.items():
        if not name.startswith("HUBBUB_") or name.startswith("HUBBUB_TEST"):
            continue
        rest = name[len("HUBBUB_") :].lower()
        section, _, key = rest.partition("_")
        if section in _SECTIONS or section == "management":
            if not key:
                continue
            _set_dotted(merged, f"{section}.{key}", _parse_env_value(value))
    return merged


def _parse_env_value(value: str) -> Any:
    # Environment values are strings; reuse TOML's literal syntax so numbers and booleans work.
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, "cannot set a key inside a non-table value")
        node = child
    node[parts[-1]] = value


def _section(cls: type[T], raw: Any, prefix: str) -> T:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, "must be a table")
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    for key, value in raw.items():
        if key not in types:
            allowed = ", ".join(sorted(types))
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known: {allowed})")
        values[key] = _coerce(value, str(types[key]), f"{prefix}.{key}")
    return cls(**values)


def _coerce(value: Any, type_name: str, key: str) -> Any:
    """Check one value against the annotation (given as text: annotations are postponed)."""
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        if value < 0:
            raise ConfigError(key, f"must not be negative, got {value}")
        return value
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(key, f"must not be negative, got {value}")
        return float(value)
    if type_name == "str":
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if type_name == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    if type_name == "Path | None":
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a path string, got {value!r}")
        return Path(value) if value else None  # "" = the default
    raise AssertionError(f"no coercion for {type_name}")  # pragma: no cover - programming error


def _management(raw: Any) -> ManagementConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("management", "must be a table")
    plain = {k: v for k, v in raw.items() if k != "credentials"}
    base = _section(_ManagementScalars, plain, "management")
    creds_raw = raw.get("credentials", [])
    if not isinstance(creds_raw, list):
        raise ConfigError("management.credentials", "must be an array of tables")
    creds = []
    for i, item in enumerate(creds_raw):
        key = f"management.credentials[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(key, "must be a table")
        extra = set(item) - {"access_key_id", "secret_access_key"}
        if extra:
            raise ConfigError(f"{key}.{sorted(extra)[0]}", "unknown key")
        try:
            creds.append(Credential(str(item["access_key_id"]), str(item["secret_access_key"])))
        except KeyError as exc:
            raise ConfigError(f"{key}.{exc.args[0]}", "is required") from exc
    if base.auth not in ("none", "sigv4"):
        raise ConfigError("management.auth", f'must be "none" or "sigv4", got {base.auth!r}')
    if base.auth == "sigv4" and not creds:
        raise ConfigError("management.credentials", 'auth = "sigv4" needs at least one credential')
    return ManagementConfig(
        host=base.host,
        port=base.port,
        auth=base.auth,
        credentials=tuple(creds),
        tls=base.tls,
        tls_port=base.tls_port,
        state_dir=base.state_dir,
        in_process=base.in_process,
    )


@dataclass(frozen=True)
class _ManagementScalars:
    host: str = "127.0.0.1"
    port: int = 8081
    auth: str = "none"
    tls: bool = True
    tls_port: int = 8443
    state_dir: Path | None = None
    in_process: bool = True


def _string_table(raw: Any, key: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{key}.{name}", f"must be a string or number, got {value!r}")
        out[str(name)] = str(value)
    return out


_ROUTE_KEYS = {"handler", "url", "timeout", "route_response", "environment"}


def _routes(raw: Any) -> dict[str, RouteConfig]:
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
            timeout = _coerce(timeout, "float", f"{prefix}.timeout")
            if timeout == 0:
                raise ConfigError(f"{prefix}.timeout", "must be greater than 0")
        route_response = _coerce(
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
            environment=_string_table(spec.get("environment", {}), f"{prefix}.environment"),
        )
    return routes


def _authorizer(raw: Any, base_dir: Path) -> AuthorizerConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("authorizer", "must be a table")
    known = {"identity_source", "handler", "url", "timeout", "jwt"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"authorizer.{key}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    sources = raw.get("identity_source", [])
    if isinstance(sources, str):
        sources = [sources]
    sources = _coerce(sources, "tuple[str, ...]", "authorizer.identity_source")
    from hubbub.aws.authorizer import parse_identity_source

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
        timeout = _coerce(timeout, "float", "authorizer.timeout") or None
    jwt = _jwt(raw["jwt"], base_dir) if "jwt" in raw else None
    if jwt is not None and not sources:
        raise ConfigError(
            "authorizer.identity_source", "the JWT authorizer needs the token's source"
        )
    return AuthorizerConfig(
        identity_source=sources, handler=handler, url=url, timeout=timeout, jwt=jwt
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
        jwks_path = _coerce(jwks, "Path | None", "authorizer.jwt.jwks_file")
        if not jwks_path.is_absolute():
            jwks_path = base_dir / jwks_path
    config = JwtConfig(
        issuer=_coerce(raw["issuer"], "str", "authorizer.jwt.issuer") if "issuer" in raw else None,
        audience=_coerce(audience, "tuple[str, ...]", "authorizer.jwt.audience"),
        secret=_coerce(raw["secret"], "str", "authorizer.jwt.secret") if "secret" in raw else None,
        jwks_file=jwks_path,
        algorithms=_coerce(
            raw.get("algorithms", []), "tuple[str, ...]", "authorizer.jwt.algorithms"
        ),
        leeway=_coerce(raw.get("leeway", 0), "float", "authorizer.jwt.leeway"),
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


def _validate(config: Config) -> None:
    for key, value in (
        ("server.port", config.server.port),
        ("management.port", config.management.port),
        ("management.tls_port", config.management.tls_port),
    ):
        if value > 65535:
            raise ConfigError(key, f"must be a TCP port (0-65535), got {value}")
    limits = config.limits
    if limits.max_frame_bytes < 125:
        raise ConfigError("limits.max_frame_bytes", "must be at least 125")
    if limits.max_message_bytes < limits.max_frame_bytes:
        raise ConfigError("limits.max_message_bytes", "must be at least limits.max_frame_bytes")
    if limits.handler_timeout == 0:
        raise ConfigError("limits.handler_timeout", "must be greater than 0")
    if limits.max_concurrent_invocations < 1:
        raise ConfigError("limits.max_concurrent_invocations", "must be at least 1")
    if limits.max_invocations_per_connection < 1:
        raise ConfigError("limits.max_invocations_per_connection", "must be at least 1")
    if limits.handler_threads < 1:
        raise ConfigError("limits.handler_threads", "must be at least 1")
    if not config.api.stage or "/" in config.api.stage or "@" in config.api.stage:
        raise ConfigError(
            "api.stage", f"must be a non-empty name without / or @, got {config.api.stage!r}"
        )
    _validate_workers(config)
    if config.history.size < 1:
        raise ConfigError("history.size", "must be at least 1")
    if config.history.max_bytes < 1:
        raise ConfigError("history.max_bytes", "must be at least 1")
    if config.history.max_rooms < 1:
        raise ConfigError("history.max_rooms", "must be at least 1")
    if config.history.url and not config.history.url.startswith(
        ("sqlite://", "memory://", "redis")
    ):
        raise ConfigError(
            "history.url", "must be sqlite:///path, memory:// or empty (follow [store])"
        )
    if config.log.format not in ("text", "json"):
        raise ConfigError("log.format", f'must be "text" or "json", got {config.log.format!r}')
    if config.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log.level", "must be one of debug, info, warning, error")
    if config.static.dir is not None and not config.static.dir.is_dir():
        raise ConfigError("static.dir", f"{config.static.dir} is not a directory")
    if config.management.auth == "none" and not is_loopback(config.management.host):
        raise ConfigError(
            "management.auth",
            f'"none" is only allowed while management.host is a loopback address '
            f'(got {config.management.host!r}); set auth = "sigv4" with credentials to expose it',
        )
    # Compile the selection expression now so a bad one is reported at load time.
    from hubbub.aws.selection import compile_route_selection

    try:
        compile_route_selection(config.api.route_selection_expression)
    except ValueError as exc:
        raise ConfigError("api.route_selection_expression", str(exc)) from exc


# Stores that several processes can share: workers meet only through one of these.
SHARED_STORE_SCHEMES = ("redis://", "rediss://", "unix://")


def _validate_workers(config: Config) -> None:
    if config.server.workers == 1:
        return
    if not config.store.url.startswith(SHARED_STORE_SCHEMES):
        raise ConfigError(
            "server.workers",
            f"workers = {config.server.workers} needs a shared store: workers share connections, "
            f'rooms and users only through Redis (set [store] url = "redis://..."; '
            f"got {config.store.url!r})",
        )
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(
            "server.workers",
            "workers other than 1 need Linux (the kernel spreads connections over the workers "
            "with SO_REUSEPORT)",
        )


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_overrides(config: Config, **sections: Any) -> Config:
    """Return a copy of ``config`` with whole sections replaced (used by tests and the CLI)."""
    return replace(config, **sections)

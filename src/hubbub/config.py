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
import re
import socket
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from hubbub.errors import ConfigError, ListenError
from hubbub.runtimes import launch

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
    # More host names whose https:// URLs reach the management API from in-process handlers,
    # e.g. "{apiId}.execute-api.{region}.amazonaws.com" of an imported template.
    aliases: tuple[str, ...] = ()
    # The stage's variables: events carry them as stageVariables (an imported stage's too).
    stage_variables: Mapping[str, str] = field(default_factory=dict)


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
    # wss:// (and the pages over https) on this listener: PEM files, relative to the config file.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # client certificates signed by this CA are required
    # Peers whose X-Forwarded-For/-Proto/-Port are believed (gateway/proxies.py).
    trusted_proxies: tuple[str, ...] = ()
    # Trusted proxies start each connection with a PROXY protocol header (v1 or v2).
    proxy_protocol: bool = False


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
    # 0 = any free port (the default: two gateways on one machine never collide); the port
    # chosen is printed at start and is the events' domainName.
    tls_port: int = 0
    state_dir: Path | None = None  # None: hubbub.gateway.tls.default_state_dir() (per user)
    # boto3 calls from this process to these listeners skip the network (gateway/inprocess.py).
    in_process: bool = True
    # Management requests per second (token bucket) before 429 LimitExceededException; 0 = off.
    rate_limit: float = 0.0
    burst: int = 0  # bucket size; 0 = max(1, rate_limit)
    # Web pages may not call the API (gateway/browser_guard.py): extra Host names accepted
    # under auth = "none", and browser origins allowed at all (none by default).
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # Seconds a connection has to send a request, and may stay idle between requests.
    header_timeout: float = 10.0
    idle_timeout: float = 60.0


# Lambda runtimes whose handlers hubbub runs (prefixes); others are a config error naming them.
# Python runs in-process unless isolation = "process"; the others in their own processes through
# the Lambda Runtime API (hubbub.runtimes).
SUPPORTED_RUNTIMES = ("python3", "nodejs", "provided")


# Not a key itself: built from the route's (or authorizer's) function keys.
_FUNCTION_DOC = "code, runtime, layers, memory, isolation, reserved_concurrency"


@dataclass(frozen=True)
class FunctionSpec:
    """Where a Lambda function's code lives (route or authorizer keys ``code``, ``runtime``,
    ``layers``, ``memory``; ``name`` names it): each function imports from its own code root and
    layers, apart from every other function (hubbub.integrations.python.load_function)."""

    code: Path  # absolute: the folder the handler path is relative to
    runtime: str = ""  # "python3.12"; "" = python
    layers: tuple[Path, ...] = ()  # absolute layer folders (their python/ subfolder if any)
    name: str = ""  # the function's name (AWS_LAMBDA_FUNCTION_NAME); "" = from the handler
    memory: int | None = None  # MB, for AWS_LAMBDA_FUNCTION_MEMORY_SIZE
    # "" = the runtime's default: Python in hubbub's process, other runtimes in their own
    # processes ("process", hubbub.runtimes).
    isolation: str = ""
    reserved_concurrency: int | None = None  # process runtimes: environments at most at once

    @property
    def process_kind(self) -> str | None:
        """ "node", "python" or "provided" when the function runs in its own processes."""
        return launch.runtime_kind(self.runtime, self.isolation)


@dataclass(frozen=True)
class RouteConfig:
    key: str
    handler: str | None = None
    url: str | None = None
    timeout: float | None = None
    route_response: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None  # the Lambda function's name (context.function_name)
    # The function behind the route (see FunctionSpec); None: handler under the config's folder.
    function: FunctionSpec | None = field(default=None, metadata={"from_keys": _FUNCTION_DOC})

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
    max_pending_handshakes: int = 4096
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
class PresenceConfig:
    # Rooms whose members are always tracked (fnmatch patterns, e.g. "chat:*"); any room can
    # also be joined with presence on per join.
    rooms: tuple[str, ...] = ()
    max_data_bytes: int = 1024  # the JSON of one member's presence data
    # How long a dropped recovery-enabled client stays present, waiting to resume (seconds).
    grace: float = 15.0
    route: str = ""  # a configured route (e.g. "$presence") invoked on every join/leave/update


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
    environment: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    function: FunctionSpec | None = field(default=None, metadata={"from_keys": _FUNCTION_DOC})


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
    presence: PresenceConfig = PresenceConfig()
    authorizer: AuthorizerConfig | None = None
    # What an infrastructure file brought in (hubbub.infra.load): a template given as --config,
    # or a hubbub.toml's [import] section.
    imported: ImportedConfig | None = None
    # Folder that handler module paths and relative file paths are resolved against.
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "<defaults>"


@dataclass(frozen=True)
class ImportedConfig:
    source: Path
    format: str
    summary: str  # "ignored: 2 AWS::IAM::Role, 1 AWS::S3::Bucket"
    create_tables: bool = False
    tables: tuple[Any, ...] = ()  # hubbub.infra.model.Table


_SECTIONS: dict[str, type[Any]] = {
    "api": ApiConfig,
    "server": ServerConfig,
    "limits": LimitsConfig,
    "static": StaticConfig,
    "store": StoreConfig,
    "cluster": ClusterConfig,
    "log": LogConfig,
    "history": HistoryConfig,
    "presence": PresenceConfig,
}


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    import_options: Mapping[str, Any] | None = None,
) -> Config:
    """Build a :class:`Config` from a TOML file, ``HUBBUB_*`` variables and flag overrides.

    ``overrides`` maps dotted keys (``"server.port"``) to values, as the CLI produces them.
    A missing ``path`` means defaults only; a path that does not exist is an error.
    ``path`` may also be an infrastructure file (a SAM/CloudFormation template, serverless.yml,
    Terraform): its API is imported (hubbub.infra.load), as is a hubbub.toml's ``[import]``;
    ``import_options`` are the CLI's ``--format``/``--stage``/``--parameter``/``--var``/
    ``--var-file`` (keys format, stage, parameters, vars, var_files).
    """
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    source = "<defaults>"
    imported: ImportedConfig | None = None
    if path is not None and _is_infra(Path(path), import_options or {}):
        from hubbub.infra.load import import_file

        file = Path(path)
        raw, imported = import_file(file, import_options or {})
        base_dir = file.resolve() if file.is_dir() else file.resolve().parent
        source = str(file)
    elif path is not None:
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
        if "import" in raw:
            from hubbub.infra.load import expand_import

            raw, imported = expand_import(raw, file, import_options or {})
    if imported is None and import_options:
        flag = "--" + sorted(import_options)[0].removesuffix("s").replace("_", "-")
        raise ConfigError(
            flag, "applies to an imported file: --config template.yaml, or [import] in hubbub.toml"
        )
    merged = _merge_env(raw, os.environ if env is None else env)
    for key, value in (overrides or {}).items():
        _set_dotted(merged, key, value)
    config = build_config(merged, base_dir=base_dir, source=source)
    return config if imported is None else replace(config, imported=imported)


def _is_infra(path: Path, import_options: Mapping[str, Any]) -> bool:
    """Whether ``path`` is an infrastructure file to import rather than a hubbub.toml: a
    ``.toml`` is TOML, else a ``--format`` says so; anything else is what its name and content
    say (hubbub.infra.detect), and a file of no format hubbub imports is read as TOML."""
    if path.suffix == ".toml":
        return False  # a --format applies to its [import] from = ...
    if import_options.get("format"):
        return True
    from hubbub.infra.detect import detect
    from hubbub.infra.model import InfraError

    try:
        detect(path)
    except InfraError:
        if not path.is_file():
            return True  # the import reports it (a folder without .tf files, a missing path)
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            return True  # neither: the import's error names the formats and --format
        return False
    return True


def build_config(raw: Mapping[str, Any], *, base_dir: Path, source: str = "<dict>") -> Config:
    """Validate a plain mapping (as parsed from TOML) into a :class:`Config`."""
    known = {*_SECTIONS, "management", "environment", "routes", "authorizer"}
    for key in raw:
        if key not in known:
            raise ConfigError(key, f"unknown section (known: {', '.join(sorted(known))})")
    sections: dict[str, Any] = {}
    api_raw = raw.get("api", {})
    stage_variables: dict[str, str] = {}
    if isinstance(api_raw, Mapping) and "stage_variables" in api_raw:
        stage_variables = _string_table(api_raw["stage_variables"], "api.stage_variables")
        api_raw = {k: v for k, v in api_raw.items() if k != "stage_variables"}
    for name, cls in _SECTIONS.items():
        sections[name] = _section(cls, api_raw if name == "api" else raw.get(name, {}), name)
    if stage_variables:
        sections["api"] = replace(sections["api"], stage_variables=stage_variables)
    static = sections["static"]
    if static.dir is not None and not static.dir.is_absolute():
        sections["static"] = StaticConfig(dir=(base_dir / static.dir))
    server = sections["server"]
    sections["server"] = replace(
        server,
        **{
            key: base_dir / path
            for key in ("tls_cert", "tls_key", "tls_ca")
            if (path := getattr(server, key)) is not None and not path.is_absolute()
        },
    )
    management = _management(raw.get("management", {}))
    if management.state_dir is not None and not management.state_dir.is_absolute():
        management = replace(management, state_dir=base_dir / management.state_dir)
    environment = _string_table(raw.get("environment", {}), "environment")
    routes = _routes(raw.get("routes", {}), base_dir)
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
        rate_limit=base.rate_limit,
        burst=base.burst,
        allowed_hosts=base.allowed_hosts,
        allowed_origins=base.allowed_origins,
        header_timeout=base.header_timeout,
        idle_timeout=base.idle_timeout,
    )


@dataclass(frozen=True)
class _ManagementScalars:
    host: str = "127.0.0.1"
    port: int = 8081
    auth: str = "none"
    tls: bool = True
    tls_port: int = 0
    state_dir: Path | None = None
    in_process: bool = True
    rate_limit: float = 0.0
    burst: int = 0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    header_timeout: float = 10.0
    idle_timeout: float = 60.0


def _string_table(raw: Any, key: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{key}.{name}", f"must be a string or number, got {value!r}")
        out[str(name)] = str(value)
    return out


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


def _routes(raw: Any, base_dir: Path) -> dict[str, RouteConfig]:
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
            name=_function_name(spec.get("name"), f"{prefix}.name"),
            function=_function_spec(spec, prefix, base_dir, handler),
        )
    return routes


def _function_spec(
    spec: Mapping[str, Any], prefix: str, base_dir: Path, handler: Any
) -> FunctionSpec | None:
    """A route's (or the authorizer's) ``code``/``runtime``/``layers``/``memory``."""
    present = [key for key in sorted(_FUNCTION_KEYS) if key in spec]
    if not present:
        return None
    if handler is None:
        raise ConfigError(f"{prefix}.{present[0]}", "only a handler = ... route has a function")
    runtime = _coerce(spec.get("runtime", ""), "str", f"{prefix}.runtime")
    isolation = _coerce(spec.get("isolation", ""), "str", f"{prefix}.isolation")
    reserved = spec.get("reserved_concurrency")
    if reserved is not None:
        reserved = _coerce(reserved, "int", f"{prefix}.reserved_concurrency")
        if reserved < 1:
            raise ConfigError(f"{prefix}.reserved_concurrency", "must be at least 1")

    def folder(value: Any, key: str) -> Path:
        path = _coerce(value, "Path | None", key) or Path(".")
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
    layers_raw = _coerce(spec.get("layers", []), "tuple[str, ...]", f"{prefix}.layers")
    layers = tuple(folder(v, f"{prefix}.layers[{i}]") for i, v in enumerate(layers_raw))
    memory = spec.get("memory")
    if memory is not None:
        memory = _coerce(memory, "int", f"{prefix}.memory")
    return FunctionSpec(
        code=code,
        runtime=runtime,
        layers=layers,
        name=spec.get("name") or "",  # checked by _function_name
        memory=memory,
        isolation=isolation,
        reserved_concurrency=reserved,
    )


def _authorizer(raw: Any, base_dir: Path) -> AuthorizerConfig:
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
        identity_source=sources,
        handler=handler,
        url=url,
        timeout=timeout,
        jwt=jwt,
        environment=_string_table(raw.get("environment", {}), "authorizer.environment"),
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
    for key, seconds in (
        ("management.header_timeout", config.management.header_timeout),
        ("management.idle_timeout", config.management.idle_timeout),
    ):
        if seconds == 0:
            raise ConfigError(key, "must be greater than 0")
    if not config.api.stage or "/" in config.api.stage or "@" in config.api.stage:
        raise ConfigError(
            "api.stage", f"must be a non-empty name without / or @, got {config.api.stage!r}"
        )
    if config.api.stage in ("healthz", "readyz", "hubbub.js"):
        raise ConfigError("api.stage", f"{config.api.stage!r} is a path the listener serves itself")
    _validate_store(config)
    _validate_server_tls(config)
    _validate_workers(config)
    if config.presence.route and config.presence.route not in config.routes:
        raise ConfigError(
            "presence.route",
            f"names no route: add [routes] {config.presence.route!r} = {{ handler = ... }}",
        )
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


def _validate_server_tls(config: Config) -> None:
    server = config.server
    if (server.tls_cert is None) != (server.tls_key is None):
        raise ConfigError(
            "server.tls_cert" if server.tls_cert is None else "server.tls_key",
            "tls_cert and tls_key go together (the certificate chain and its private key, PEM)",
        )
    if server.tls_ca is not None and server.tls_cert is None:
        raise ConfigError("server.tls_ca", "client certificates need tls_cert and tls_key too")
    for key in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(server, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"server.{key}", f"{path} is not a file")
    for i, network in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"server.trusted_proxies[{i}]",
                f"{network!r} is not an address or CIDR block ({exc})",
            ) from exc
    if server.proxy_protocol and not server.trusted_proxies:
        raise ConfigError(
            "server.proxy_protocol", "needs server.trusted_proxies: the peers that send it"
        )
    if server.proxy_protocol and server.tls_cert is not None:
        raise ConfigError(
            "server.proxy_protocol",
            "the PROXY header comes before TLS: terminate TLS in the proxy, or drop one of them",
        )


def _validate_store(config: Config) -> None:
    from urllib.parse import urlsplit

    from hubbub.store import STORE_SCHEMES

    scheme = urlsplit(config.store.url).scheme
    if scheme not in STORE_SCHEMES:
        known = ", ".join(f"{s}://" for s in STORE_SCHEMES)
        raise ConfigError("store.url", f"unknown scheme in {config.store.url!r} (known: {known})")


# Stores that several processes can share: workers meet only through one of these.
SHARED_STORE_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


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


@dataclass(frozen=True)
class Listener:
    """A listening socket as users name it: in messages, by its config key and flag."""

    name: str
    port_key: str
    flag: str

    def error(self, host: str, port: int, exc: OSError) -> ListenError:
        reason = (exc.strerror or str(exc)).lower()
        return ListenError(self.name, host, port, key=self.port_key, flag=self.flag, reason=reason)


PUBLIC_LISTENER = Listener("WebSocket listener", "server.port", "--port")
MANAGEMENT_LISTENER = Listener("management API", "management.port", "--management-port")
MANAGEMENT_TLS_LISTENER = Listener(
    "HTTPS management API", "management.tls_port", "--management-tls-port"
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

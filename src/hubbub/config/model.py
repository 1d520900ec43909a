"""The configuration model: one typed, frozen tree for the whole gateway.

Defaults are AWS's values. :mod:`hubbub.config.load` builds a :class:`Config` from a file,
``HUBBUB_*`` variables and flags, and :mod:`hubbub.config.validate` checks it; other front ends (an
infrastructure-file reader) build the same ``Config``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from hubbub.errors import ListenError
from hubbub.infra.model import ImportedConfig
from hubbub.runtimes import launch

SYSTEM_ROUTES = ("$connect", "$disconnect", "$default")

# Keys that take one of a few words. A key annotated with one of these aliases is checked against
# its words when loaded (hubbub.config.coerce), so the model's type and what loading accepts
# cannot drift.
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]  # any case: "INFO" is read as "info"
ManagementAuth = Literal["none", "sigv4"]
CHOICES: dict[str, tuple[tuple[str, ...], bool]] = {  # alias -> (its words, case-insensitive)
    "LogFormat": (get_args(LogFormat), False),
    "LogLevel": (get_args(LogLevel), True),
    "ManagementAuth": (get_args(ManagementAuth), False),
}


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
    # Reload a function when its files change (hubbub.gateway.reload); for development.
    reload: bool = False


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class ManagementConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    auth: ManagementAuth = "none"
    credentials: tuple[Credential, ...] = ()
    # The HTTPS management listener that makes https://{domainName}/{stage} work for handlers.
    tls: bool = True
    # 0 = any free port (the default: two gateways on one machine never collide); the port
    # chosen is printed at start and is the events' domainName.
    tls_port: int = 0
    state_dir: Path | None = None  # None: hubbub.gateway.tls.default_state_dir() (per user)
    # boto3 calls from this process to these listeners skip the network
    # (gateway/management/inprocess.py).
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
    format: LogFormat = "text"
    level: LogLevel = "info"


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

"""One typed configuration tree for the whole gateway.

Precedence, lowest first: built-in defaults (AWS's values) < ``hubbub.toml`` < ``HUBBUB_*``
environment variables < command-line flags. Loading (``load_config``) is kept apart from the model
(``Config``) so that other front ends (a Terraform or serverless.yml reader) can build the same
``Config``.

Every problem is reported as a :class:`~hubbub.errors.ConfigError` naming the dotted key, including
unknown keys, so a typo never silently falls back to a default.

- :mod:`hubbub.config.model`: the dataclasses, with Literal types for keys that take a few words;
- :mod:`hubbub.config.load`: reading the file, the environment and the flags, and building;
- :mod:`hubbub.config.coerce`: checking one value against its key's type;
- :mod:`hubbub.config.routes`: the ``[routes]`` and ``[authorizer]`` tables;
- :mod:`hubbub.config.validate`: the rules across keys, once the whole tree is built.

Everything is importable from ``hubbub.config`` itself.
"""

from __future__ import annotations

from hubbub.config.load import build_config, load_config
from hubbub.config.model import (
    MANAGEMENT_LISTENER,
    MANAGEMENT_TLS_LISTENER,
    PUBLIC_LISTENER,
    SUPPORTED_RUNTIMES,
    SYSTEM_ROUTES,
    ApiConfig,
    AuthorizerConfig,
    ClusterConfig,
    Config,
    Credential,
    FunctionSpec,
    HistoryConfig,
    JwtConfig,
    LimitsConfig,
    Listener,
    LogConfig,
    LogFormat,
    LogLevel,
    ManagementAuth,
    ManagementConfig,
    PresenceConfig,
    RouteConfig,
    ServerConfig,
    StaticConfig,
    StoreConfig,
    is_loopback,
    with_overrides,
)
from hubbub.infra.model import ImportedConfig

__all__ = [
    "MANAGEMENT_LISTENER",
    "MANAGEMENT_TLS_LISTENER",
    "PUBLIC_LISTENER",
    "SUPPORTED_RUNTIMES",
    "SYSTEM_ROUTES",
    "ApiConfig",
    "AuthorizerConfig",
    "ClusterConfig",
    "Config",
    "Credential",
    "FunctionSpec",
    "HistoryConfig",
    "ImportedConfig",
    "JwtConfig",
    "LimitsConfig",
    "Listener",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "ManagementAuth",
    "ManagementConfig",
    "PresenceConfig",
    "RouteConfig",
    "ServerConfig",
    "StaticConfig",
    "StoreConfig",
    "build_config",
    "is_loopback",
    "load_config",
    "with_overrides",
]

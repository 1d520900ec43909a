"""Loading: a TOML file (or an infrastructure file), ``HUBBUB_*`` variables and flags, merged in
that order of precedence and built into a :class:`~hubbub.config.model.Config`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hubbub.config.coerce import read_section, string_table
from hubbub.config.model import (
    ApiConfig,
    ClusterConfig,
    Config,
    Credential,
    HistoryConfig,
    LimitsConfig,
    LogConfig,
    ManagementAuth,
    ManagementConfig,
    PresenceConfig,
    ServerConfig,
    StaticConfig,
    StoreConfig,
)
from hubbub.config.routes import load_authorizer, load_routes
from hubbub.config.validate import validate
from hubbub.errors import ConfigError
from hubbub.infra.detect import detect
from hubbub.infra.load import expand_import, import_file
from hubbub.infra.model import ImportedConfig, InfraError

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
        stage_variables = string_table(api_raw["stage_variables"], "api.stage_variables")
        api_raw = {k: v for k, v in api_raw.items() if k != "stage_variables"}
    for name, cls in _SECTIONS.items():
        sections[name] = read_section(cls, api_raw if name == "api" else raw.get(name, {}), name)
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
    environment = string_table(raw.get("environment", {}), "environment")
    routes = load_routes(raw.get("routes", {}), base_dir)
    authorizer = load_authorizer(raw["authorizer"], base_dir) if "authorizer" in raw else None
    config = Config(
        authorizer=authorizer,
        management=management,
        environment=environment,
        routes=routes,
        base_dir=base_dir,
        source=source,
        **sections,
    )
    validate(config)
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


def _management(raw: Any) -> ManagementConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("management", "must be a table")
    plain = {k: v for k, v in raw.items() if k != "credentials"}
    base = read_section(_ManagementScalars, plain, "management")
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
    auth: ManagementAuth = "none"
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

"""From an :class:`ImportedApi` to hubbub's configuration.

:func:`to_raw` gives the plain mapping a hubbub.toml would hold (what ``load_config`` validates);
:func:`to_toml` prints it as a hubbub.toml with comments saying where each part came from
(``hubbub import``). :func:`import_file` serves a template given as ``--config``;
:func:`expand_import` a hubbub.toml's ``[import]`` section, whose own keys win over the imported
ones (``HUBBUB_*`` variables and flags are applied later, by ``load_config``, and win over both).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hubbub.config import ImportedConfig
from hubbub.errors import ConfigError
from hubbub.infra.detect import detect, reader
from hubbub.infra.model import Function, ImportedApi, InfraError, Origin, ReadOptions

# The [import] section, exactly.
IMPORT_KEYS = ("from", "stage", "parameters", "vars", "var_files", "create_tables")
# Route keys that say which function runs; a hubbub.toml route that names its own handler or url
# replaces all of these from the template.
_FUNCTION_KEYS = (
    "handler",
    "url",
    "code",
    "runtime",
    "layers",
    "name",
    "memory",
    "isolation",
    "reserved_concurrency",
)
# API Gateway gives an integration at most 29 s; a longer Lambda timeout is cut there.
_INTEGRATION_TIMEOUT = 29.0


def ignored_summary(ignored: Counter[str]) -> str:
    """``ignored: 2 AWS::IAM::Role, 1 AWS::S3::Bucket`` (most first), or ``ignored: nothing``."""
    if not ignored:
        return "ignored: nothing"
    parts = sorted(ignored.items(), key=lambda item: (-item[1], item[0]))
    return "ignored: " + ", ".join(f"{count} {what}" for what, count in parts)


def read_options(values: Mapping[str, Any], base_dir: Path, key: str = "import") -> ReadOptions:
    """ReadOptions from ``[import]`` keys or the CLI's flags (same names); files relative to
    ``base_dir``."""

    def table(name: str) -> dict[str, str]:
        raw = values.get(name) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}.{name}", "must be a table of names to values")
        out = {}
        for k, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConfigError(f"{key}.{name}.{k}", f"must be a string or number, got {v!r}")
            out[str(k)] = str(v)
        return out

    stage = values.get("stage")
    if stage is not None and (not isinstance(stage, str) or not stage):
        raise ConfigError(f"{key}.stage", f"must be a non-empty string, got {stage!r}")
    files = values.get("var_files") or []
    if not isinstance(files, list | tuple) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{key}.var_files", f"must be a list of file names, got {files!r}")
    return ReadOptions(
        stage=stage,
        parameters=table("parameters"),
        vars=table("vars"),
        var_files=tuple((base_dir / f).resolve() for f in files),
        env=dict(os.environ),
    )


def import_file(path: Path, cli: Mapping[str, Any]) -> tuple[dict[str, Any], ImportedConfig]:
    """A template (or serverless.yml, Terraform) given as ``--config``: its API as a raw config."""
    options = read_options(cli, Path.cwd(), key="--config")
    api = reader(detect(path, cli.get("format")))(path, options)
    raw, mocks = to_raw(api)
    _check_mocks(api, mocks, {})
    return merge(raw, {}), _imported(api, create_tables=False)


def expand_import(
    raw: Mapping[str, Any], file: Path, cli: Mapping[str, Any]
) -> tuple[dict[str, Any], ImportedConfig]:
    """A hubbub.toml with ``[import]``: the imported API under the file's own keys."""
    section = raw["import"]
    if not isinstance(section, Mapping):
        raise ConfigError("import", "must be a table")
    for key in section:
        if key not in IMPORT_KEYS:
            raise ConfigError(f"import.{key}", f"unknown key (known: {', '.join(IMPORT_KEYS)})")
    source = section.get("from")
    if not isinstance(source, str) or not source:
        raise ConfigError("import.from", "names the template, serverless.yml or .tf to import")
    create = section.get("create_tables", False)
    if not isinstance(create, bool):
        raise ConfigError("import.create_tables", f"must be true or false, got {create!r}")
    base_dir = file.resolve().parent
    values = dict(section)
    for key in ("stage", "parameters", "vars", "var_files"):
        if cli.get(key):  # flags win over the file
            if isinstance(values.get(key), Mapping):
                values[key] = {**values[key], **cli[key]}
            else:
                values[key] = cli[key]
    options = read_options(values, base_dir)
    if cli.get("var_files"):  # given on the command line: relative to the working directory
        options = ReadOptions(
            stage=options.stage,
            parameters=options.parameters,
            vars=options.vars,
            var_files=tuple(Path(f).resolve() for f in cli["var_files"]),
            env=options.env,
        )
    path = (base_dir / source).resolve()
    if not path.exists():
        raise ConfigError("import.from", f"{path} does not exist")
    api = reader(detect(path, cli.get("format")))(path, options)
    imported, mocks = to_raw(api)
    own = {k: v for k, v in raw.items() if k != "import"}
    _check_mocks(api, mocks, own.get("routes") or {})
    return merge(imported, own), _imported(api, create_tables=create)


def _imported(api: ImportedApi, *, create_tables: bool) -> ImportedConfig:
    return ImportedConfig(
        source=api.source,
        format=api.format,
        summary=ignored_summary(api.ignored),
        create_tables=create_tables,
        tables=tuple(api.tables),
    )


def _check_mocks(api: ImportedApi, mocks: list[str], own_routes: Mapping[str, Any]) -> None:
    for route in api.routes:
        if route.key not in mocks:
            continue
        spec = own_routes.get(route.key)
        if isinstance(spec, Mapping) and ("handler" in spec or "url" in spec):
            continue
        raise InfraError(
            route.integration.origin,
            f"route {route.key}: MOCK integration",
            "hubbub has no mock integrations (API Gateway answers them from a mapping template)",
            f'give the route a handler in hubbub.toml: [routes."{route.key}"] handler = '
            '"module.function" (or url = ...), next to [import]',
        )


def merge(imported: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """``own`` (the hubbub.toml's keys) over ``imported``, table by table."""
    out: dict[str, Any] = {k: v for k, v in imported.items()}
    own_env = own.get("environment")
    user_env: Mapping[str, Any] = own_env if isinstance(own_env, Mapping) else {}
    for key, value in own.items():
        if key == "routes" and isinstance(value, Mapping) and isinstance(out.get("routes"), dict):
            routes = dict(out["routes"])
            for route_key, spec in value.items():
                routes[route_key] = _merge_function(routes.get(route_key), spec)
            out["routes"] = routes
        elif key == "authorizer" and isinstance(value, Mapping):
            out["authorizer"] = _merge_function(out.get("authorizer"), value, ("jwt",))
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep(out[key], value)
        else:
            out[key] = value
    # [environment] of the hubbub.toml wins over a function's variables from the template too.
    for spec in [*(out.get("routes") or {}).values(), out.get("authorizer")]:
        if isinstance(spec, dict) and isinstance(spec.get("_imported_env"), dict):
            env = {k: v for k, v in spec.pop("_imported_env").items() if k not in user_env}
            spec["environment"] = {**env, **(spec.get("environment") or {})}
    return out


def _merge_function(imported: Any, own: Any, kinds: tuple[str, ...] = ()) -> Any:
    if not isinstance(imported, Mapping) or not isinstance(own, Mapping):
        return own
    base = dict(imported)
    if any(k in own for k in ("handler", "url", *kinds)):
        for key in (*_FUNCTION_KEYS, *kinds):
            base.pop(key, None)
    return _deep(base, own)


def _deep(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep(out[key], value)
        else:
            out[key] = value
    return out


def to_raw(api: ImportedApi) -> tuple[dict[str, Any], list[str]]:
    """The raw config of ``api`` and the keys of its MOCK routes (left out: see _check_mocks).

    Function variables go under each route's ``_imported_env`` until :func:`merge` decides which
    of them the hubbub.toml's ``[environment]`` overrides (``merge(raw, {})``: none).
    """
    api_id = api.api_id or _api_id(api.name)
    raw: dict[str, Any] = {
        "api": {
            "name": api.name,
            "stage": api.stage,
            "route_selection_expression": api.route_selection_expression,
            "region": api.region,
            "account_id": api.account_id,
            "aliases": [f"{api_id}.execute-api.{api.region}.amazonaws.com"],
        },
        "routes": {},
    }
    if api.stage_variables:
        raw["api"]["stage_variables"] = dict(api.stage_variables)
    mocks = []
    connect_authorizer = None
    for route in api.routes:
        integration = route.integration
        spec: dict[str, Any]
        if integration.kind == "mock":
            mocks.append(route.key)
            continue
        if integration.kind == "http":
            spec = {"url": integration.url}
        else:
            assert integration.function is not None
            spec = _function(api.functions[integration.function])
        if route.route_response and route.key not in ("$connect", "$disconnect"):
            spec["route_response"] = True
        raw["routes"][route.key] = spec
        if route.key == "$connect" and route.authorizer is not None:
            connect_authorizer = api.authorizers[route.authorizer]
    if connect_authorizer is not None:
        auth: dict[str, Any] = {"identity_source": list(connect_authorizer.identity_sources)}
        if connect_authorizer.kind == "jwt":
            jwt: dict[str, Any] = {}
            if connect_authorizer.issuer:
                jwt["issuer"] = connect_authorizer.issuer
            if connect_authorizer.audience:
                jwt["audience"] = list(connect_authorizer.audience)
            auth["jwt"] = jwt
        else:
            assert connect_authorizer.function is not None
            auth.update(_function(api.functions[connect_authorizer.function]))
        raw["authorizer"] = auth
    return raw, mocks


def _function(fn: Function) -> dict[str, Any]:
    spec: dict[str, Any] = {"handler": fn.handler, "name": fn.name, "code": str(fn.code_root)}
    if fn.runtime:
        spec["runtime"] = fn.runtime
    if fn.layers:
        spec["layers"] = [str(layer) for layer in fn.layers]
    if fn.memory_mb is not None:
        spec["memory"] = fn.memory_mb
    if fn.timeout is not None and fn.timeout < _INTEGRATION_TIMEOUT:
        spec["timeout"] = fn.timeout
    spec["_imported_env"] = dict(fn.environment)
    return spec


def _api_id(name: str) -> str:
    from hubbub.aws.ids import api_id_for

    return api_id_for(name)


# -- hubbub import: the equivalent hubbub.toml ------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(api: ImportedApi, base_dir: Path) -> str:
    """The hubbub.toml equivalent to ``api``, paths relative to ``base_dir``, with comments
    saying where each part came from."""
    raw, mocks = to_raw(api)
    raw = merge(raw, {})
    lines = [
        f"# Imported by `hubbub import` from {_rel(api.source, base_dir)} ({api.format}).",
        f"# {ignored_summary(api.ignored)}",
        f"# Paths are relative to the folder this file is saved in: "
        f"{_rel(base_dir, Path.cwd()) or 'the current folder'}",
        "",
        "[api]",
        f"# {_origin(api.origin, base_dir)}",
    ]
    lines.append(
        "# aliases: https://{apiId}.execute-api.{region}.amazonaws.com/{stage} URLs reach "
        "hubbub's management API"
    )
    lines += _table(raw["api"], base_dir, "api")
    for route in api.routes:
        lines.append("")
        if route.key in mocks:
            where = _origin(route.integration.origin, base_dir)
            lines.append(f"# {route.key}: a MOCK integration ({where}):")
            lines.append(f"# hubbub has none; give it a handler or url: [routes.{_key(route.key)}]")
            continue
        lines.append(f"[routes.{_key(route.key)}]")
        lines.append(f"# route: {_origin(route.origin, base_dir)}")
        lines.append(f"# integration: {_origin(route.integration.origin, base_dir)}")
        if route.integration.function is not None:
            lines.append(
                f"# function: {_origin(api.functions[route.integration.function].origin, base_dir)}"
            )
        lines += _table(raw["routes"][route.key], base_dir, f"routes.{_key(route.key)}")
    if "authorizer" in raw:
        connect = next(r for r in api.routes if r.key == "$connect" and r.authorizer)
        assert connect.authorizer is not None
        authorizer = api.authorizers[connect.authorizer]
        lines += ["", "[authorizer]", f"# {_origin(authorizer.origin, base_dir)}"]
        if authorizer.kind == "jwt":
            lines.append("# the template has no key: add secret = ... or jwks_file = ... to jwt")
        lines += _table(raw["authorizer"], base_dir, "authorizer")
    if api.tables:
        lines += ["", "# DynamoDB tables (created at start with [import] create_tables = true):"]
        for table in api.tables:
            keys = ", ".join(f"{name} {kind}" for name, kind in table.key_schema)
            indexes = [i.name for i in (*table.global_indexes, *table.local_indexes)]
            more = f"; indexes {', '.join(indexes)}" if indexes else ""
            lines.append(f"#   {table.name} ({keys}{more})  from {_origin(table.origin, base_dir)}")
    return "\n".join(lines) + "\n"


def _table(spec: Mapping[str, Any], base_dir: Path, prefix: str) -> list[str]:
    lines: list[str] = []
    subtables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in spec.items():
        if isinstance(value, Mapping):
            if value:
                subtables.append((key, value))
            continue
        shown = value
        if key == "code":
            shown = _rel(Path(value), base_dir) or "."
        elif key == "layers":
            shown = [_rel(Path(v), base_dir) for v in value]
        lines.append(f"{_key(key)} = {_value(shown)}")
    for key, value in subtables:
        lines.append(f"[{prefix}.{_key(key)}]")
        for name, item in value.items():
            lines.append(f"{_key(name)} = {_value(item)}")
    return lines


def _origin(origin: Origin, base_dir: Path) -> str:
    return str(replace(origin, file=Path(_rel(origin.file, base_dir) or origin.file.name)))


def _rel(path: Path, base_dir: Path) -> str:
    try:
        rel = os.path.relpath(path, base_dir)
    except ValueError:  # another drive (Windows)
        return str(path)
    return "" if rel == "." else rel


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    text = json.dumps(str(value), ensure_ascii=False)
    tomllib.loads(f"v = {text}")  # JSON's escapes are TOML's; this proves it for this value
    return text

"""Read a Serverless Framework (v3/v4) ``serverless.yml`` into an :class:`ImportedApi`.

The WebSocket API is the set of ``websocket`` events of the functions; the service folder is the
code root of every function (Serverless zips the service folder, ``package`` patterns only pick
files). DynamoDB tables come from ``resources.Resources``; every other resource, each plugin and
each non-WebSocket event is counted in ``ignored``. Variables are resolved by
:mod:`hubbub.infra.serverless_variables`; the CloudFormation intrinsics that serverless.yml files
use for table names and endpoints (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``…) are
evaluated here, with the API's own id (logical id ``WebsocketsApi``) resolving to hubbub.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from hubbub.infra.model import (
    Authorizer,
    Function,
    ImportedApi,
    Index,
    InfraError,
    Integration,
    ReadOptions,
    Route,
    Table,
)
from hubbub.infra.model import Origin as _Origin
from hubbub.infra.serverless_variables import Context, load_yaml

API_LOGICAL_ID = "WebsocketsApi"  # what Serverless names the AWS::ApiGatewayV2::Api resource
_DEFAULT_TIMEOUT = 6.0  # Serverless's defaults when neither provider nor function sets them
_DEFAULT_MEMORY = 1024
_DEFAULT_IDENTITY = ("route.request.header.Auth",)


def read(path: Path, options: ReadOptions) -> ImportedApi:
    """The WebSocket API that ``path`` (a serverless.yml, or the folder holding one) defines."""
    file = _find(path)
    text = file.read_text()
    raw = load_yaml(text, file)
    if not isinstance(raw, Mapping):
        raise InfraError(_Origin(file, 1), "", "a serverless.yml must be a mapping")
    return _Reader(file, text, raw, options).read()


def _find(path: Path) -> Path:
    path = path.resolve()
    if path.is_dir():
        for name in ("serverless.yml", "serverless.yaml"):
            if (path / name).is_file():
                return path / name
        raise InfraError(_Origin(path), "", "no serverless.yml or serverless.yaml in this folder")
    return path


class _Reader:
    def __init__(self, file: Path, text: str, raw: Mapping[str, Any], options: ReadOptions):
        self.file, self.text, self.raw, self.options = file, text, raw, options
        self.root = file.parent
        self._stage: str | None = None
        self._region: str | None = None
        self.vars = Context(
            config=raw,
            file=file,
            text=text,
            vars=options.vars,
            env=options.env,
            stage=self.stage,
            region=self.region,
            account_id=options.vars.get("account_id", "123456789012"),
            stage_option=options.stage,
        )
        self.ignored: Counter[str] = Counter()
        self.resources: dict[str, Any] = {}

    # -- small lookups ------------------------------------------------------------------------

    def line(self, key: str, after: int = 0, nth: int = 0) -> int | None:
        """The line of the ``nth`` ``key:`` at or after line ``after``, for origins."""
        pattern = re.compile(rf"^\s*-?\s*['\"]?{re.escape(key)}['\"]?\s*:", re.MULTILINE)
        offset = 0
        if after > 1:
            offset = len("\n".join(self.text.split("\n")[: after - 1]))
        match = pattern.search(self.text, offset)
        for _ in range(nth):
            match = match and pattern.search(self.text, match.end())
        return self.text.count("\n", 0, match.start()) + 1 if match else None

    def origin(self, key: str, what: str, after: int = 0) -> _Origin:
        return _Origin(self.file, self.line(key, after), what)

    def get(self, *path: str, default: Any = None) -> Any:
        """A resolved value at ``path`` in serverless.yml (variables resolved on the way)."""
        value: Any = self.raw
        for key in path:
            value = self.vars.resolve(value) if isinstance(value, str) else value
            if not isinstance(value, Mapping) or key not in value:
                return default
            value = value[key]
        return self.vars.resolve(value)

    def stage(self) -> str:
        if self._stage is None:
            self._stage = "dev"  # while provider.stage resolves (it may read ${sls:stage})
            given = self.options.stage or self.options.vars.get("stage")
            self._stage = str(given or self.get("provider", "stage") or "dev")
        return self._stage

    def region(self) -> str:
        if self._region is None:
            self._region = "us-east-1"
            given = self.options.vars.get("region")
            self._region = str(given or self.get("provider", "region") or "us-east-1")
        return self._region

    # -- the model ----------------------------------------------------------------------------

    def read(self) -> ImportedApi:
        provider = self.raw.get("provider")
        if not isinstance(provider, Mapping):
            raise InfraError(self.origin("provider", "provider"), "provider", "missing")
        name = self.get("provider", "name")
        if name != "aws":
            raise InfraError(
                self.origin("name", "provider.name", self.line("provider") or 0),
                f"provider.name: {name}",
                "hubbub reads only AWS services",
            )
        service = self.get("service")
        if isinstance(service, Mapping):  # v1: service: {name: x}
            service = service.get("name")
        if not service:
            raise InfraError(self.origin("service", "service"), "service", "missing")
        self.service = str(service)
        stage = self.stage()
        api_name = str(self.get("provider", "websocketsApiName") or f"{stage}-{service}-websockets")
        api = ImportedApi(
            format="serverless",
            source=self.file,
            name=api_name,
            origin=self.origin("provider", "serverless.yml provider"),
            route_selection_expression=str(
                self.get("provider", "websocketsApiRouteSelectionExpression")
                or "$request.body.action"
            ),
            stage=stage,
            api_id=re.sub(r"[^a-z0-9]+", "-", api_name.lower()).strip("-") or "websockets",
            region=self.region(),
            account_id=self.vars.account_id,
        )
        self.api = api
        self.resources_line = self.line("Resources") or 0
        self.resources = self._resources()
        self._plugins()
        functions = self.functions = self._functions()
        routes: dict[str, Route] = {}
        used: set[str] = set()
        for key, spec in functions.items():
            for nth, event in enumerate(self._events(key, spec)):
                route = self._route(key, spec, event, nth, used)
                if route.key in routes:
                    raise InfraError(
                        route.origin,
                        route.key,
                        f"route defined twice (also by {routes[route.key].origin})",
                    )
                routes[route.key] = route
                used.add(key)
        for key, spec in functions.items():
            if key in used:
                api.functions[self.function_name(key, spec)] = self._function(key, spec)
            else:
                self.ignored["function without websocket events"] += 1
        api.routes = list(routes.values())
        api.tables = self._tables()
        api.ignored = self.ignored
        return api

    def function_name(self, key: str, spec: Mapping[str, Any]) -> str:
        return str(spec.get("name") or key)

    def _plugins(self) -> None:
        plugins = self.raw.get("plugins") or []
        if isinstance(plugins, Mapping):  # {localPath:, modules: [...]}
            plugins = plugins.get("modules") or []
        for plugin in plugins if isinstance(plugins, list) else []:
            self.ignored[f"plugin {plugin}"] += 1

    def _functions(self) -> dict[str, Mapping[str, Any]]:
        # Only the shape is resolved here (functions: ${file(...)}); each field is resolved when
        # read, so a function that is not part of the WebSocket API can't fail the import.
        found = self.raw.get("functions") or {}
        found = self.vars.resolve(found) if isinstance(found, str) else found
        parts = found if isinstance(found, list) else [found]
        functions: dict[str, Mapping[str, Any]] = {}
        for given in parts:
            part = self.vars.resolve(given) if isinstance(given, str) else given
            if not isinstance(part, Mapping):
                raise InfraError(self.origin("functions", "functions"), "functions", "not a map")
            for key, spec in part.items():
                if not isinstance(spec, Mapping):
                    raise InfraError(
                        self.origin(str(key), f"function {key}"), str(key), "not a map"
                    )
                functions[str(key)] = _Resolved(spec, self.vars)
        return functions

    def _events(self, key: str, spec: Mapping[str, Any]) -> list[Any]:
        websocket: list[Any] = []
        for event in spec.get("events") or []:
            if isinstance(event, Mapping) and "websocket" in event:
                websocket.append(event["websocket"])
            elif isinstance(event, Mapping) and event:
                self.ignored[f"{next(iter(event))} event"] += 1
        return websocket

    def _route(
        self, key: str, spec: Mapping[str, Any], event: Any, nth: int, used: set[str]
    ) -> Route:
        function_line = self.line(key, self.line("functions") or 0) or 0
        if isinstance(event, str):
            event = {"route": event}
        if not isinstance(event, Mapping) or not event.get("route"):
            raise InfraError(
                self.origin("websocket", f"function {key}", function_line),
                "websocket",
                "a websocket event needs a route",
            )
        route_key = str(event["route"])
        origin = _Origin(
            self.file,
            self.line("websocket", function_line, nth),
            f"function {key} websocket {route_key}",
        )
        name = self.function_name(key, spec)
        authorizer = None
        if event.get("authorizer") is not None:
            authorizer = self._authorizer(event["authorizer"], origin, used)
        return Route(
            key=route_key,
            integration=Integration(kind="lambda", origin=origin, function=name),
            origin=origin,
            route_response="routeResponseSelectionExpression" in event,
            authorizer=authorizer,
        )

    def _authorizer(self, given: Any, origin: _Origin, used: set[str]) -> str:
        spec: Mapping[str, Any] = {"name": given} if isinstance(given, str) else given
        if not isinstance(spec, Mapping):
            raise InfraError(origin, "authorizer", "must be a function name or a map")
        if spec.get("arn"):
            raise InfraError(
                origin,
                f"authorizer.arn: {spec['arn']}",
                "hubbub runs only authorizers defined in this serverless.yml",
                "define the authorizer as a function here and name it (authorizer: name)",
            )
        key = str(spec.get("name") or "")
        functions = self.functions
        if key not in functions:
            raise InfraError(origin, f"authorizer: {key}", "no function of that name")
        sources = spec.get("identitySource") or list(_DEFAULT_IDENTITY)
        if isinstance(sources, str):
            sources = [sources]
        name = self.function_name(key, functions[key])
        self.api.authorizers[name] = Authorizer(
            name=name,
            kind="request",
            origin=origin,
            function=name,
            identity_sources=tuple(str(s) for s in sources),
        )
        used.add(key)
        return name

    def _function(self, key: str, spec: Mapping[str, Any]) -> Function:
        origin = self.origin(key, f"function {key}", self.line("functions") or 0)
        handler = spec.get("handler")
        if not handler:
            if spec.get("image"):
                raise InfraError(
                    origin,
                    f"functions.{key}.image",
                    "hubbub runs handlers from source folders, not container images",
                    "give the function a handler",
                )
            raise InfraError(origin, f"functions.{key}.handler", "missing")
        package = spec.get("package") or {}
        if isinstance(package, Mapping) and package.get("artifact"):
            raise InfraError(
                origin,
                f"functions.{key}.package.artifact",
                "hubbub runs handlers from source folders, not a built artifact",
                "remove the artifact or point handler at the source in this folder",
            )
        environment: dict[str, str] = {}
        for where in (self.get("provider", "environment", default={}), spec.get("environment")):
            for name, value in (where or {}).items():
                environment[str(name)] = _text(self.intrinsic(value, origin, f"{name}"))
        timeout = spec.get("timeout", self.get("provider", "timeout"))
        memory = spec.get("memorySize", self.get("provider", "memorySize"))
        return Function(
            name=self.function_name(key, spec),
            handler=str(handler),
            runtime=str(spec.get("runtime") or self.get("provider", "runtime") or ""),
            code_root=self.root,
            origin=origin,
            layers=self._layers(spec, origin),
            environment=environment,
            timeout=float(timeout) if timeout is not None else _DEFAULT_TIMEOUT,
            memory_mb=int(memory) if memory is not None else _DEFAULT_MEMORY,
        )

    def _layers(self, spec: Mapping[str, Any], origin: _Origin) -> tuple[Path, ...]:
        declared = self.get("layers", default={}) or {}
        by_logical_id = {f"{_normalize(str(n))}LambdaLayer": n for n in declared}
        given = spec.get("layers")
        if given is None:
            given = self.get("provider", "layers", default=[])
        paths: list[Path] = []
        for layer in given or []:
            name = None
            if isinstance(layer, Mapping) and "Ref" in layer:
                name = by_logical_id.get(str(layer["Ref"]))
                if name is None:
                    raise InfraError(origin, f"Ref: {layer['Ref']}", "no layer of that name")
            elif isinstance(layer, str) and layer.startswith("arn:"):
                # A published layer (e.g. a vendor's): its code is not here. The handler runs if
                # the packages it provides are installed where hubbub runs.
                self.ignored["layer ARN"] += 1
                continue
            else:
                raise InfraError(origin, f"layers: {layer}", "not a layer hubbub can find")
            layer_spec = declared[name]
            if not isinstance(layer_spec, Mapping) or not layer_spec.get("path"):
                raise InfraError(origin, f"layers.{name}.path", "missing")
            paths.append((self.root / str(layer_spec["path"])).resolve())
        return tuple(paths)

    # -- resources ----------------------------------------------------------------------------

    def _resources(self) -> dict[str, Any]:
        found = self.get("resources", default={}) or {}
        parts = found if isinstance(found, list) else [found]
        resources: dict[str, Any] = {}
        for part in parts:
            if isinstance(part, Mapping):
                resources.update(part.get("Resources") or {})
        for resource in resources.values():
            kind = resource.get("Type") if isinstance(resource, Mapping) else None
            if kind not in ("AWS::DynamoDB::Table",):
                self.ignored[str(kind or "resource without Type")] += 1
        return resources

    def _tables(self) -> list[Table]:
        tables = []
        for logical_id, resource in self.resources.items():
            if isinstance(resource, Mapping) and resource.get("Type") == "AWS::DynamoDB::Table":
                tables.append(self._table(logical_id, resource.get("Properties") or {}))
        return tables

    def table_name(self, logical_id: str) -> str:
        properties = self.resources[logical_id].get("Properties") or {}
        origin = self.origin(logical_id, f"AWS::DynamoDB::Table {logical_id}", self.resources_line)
        if properties.get("TableName") is None:
            # CloudFormation names it {stack}-{logical id}-{random}; the random part is dropped.
            return f"{self.service}-{self.stage()}-{logical_id}"
        return _text(self.intrinsic(properties["TableName"], origin, "TableName"))

    def _table(self, logical_id: str, properties: Mapping[str, Any]) -> Table:
        origin = self.origin(logical_id, f"AWS::DynamoDB::Table {logical_id}", self.resources_line)

        def schema(items: Any) -> tuple[tuple[str, Literal["HASH", "RANGE"]], ...]:
            pairs = []
            for item in items or []:
                kind = str(item.get("KeyType", "")).upper()
                if kind not in ("HASH", "RANGE"):
                    raise InfraError(origin, f"KeyType: {kind}", "must be HASH or RANGE")
                pairs.append((str(item["AttributeName"]), cast(Literal["HASH", "RANGE"], kind)))
            return tuple(pairs)

        def indexes(items: Any) -> tuple[Index, ...]:
            found = []
            for item in items or []:
                projection = item.get("Projection") or {}
                found.append(
                    Index(
                        name=str(item["IndexName"]),
                        key_schema=schema(item.get("KeySchema")),
                        projection=projection.get("ProjectionType", "ALL"),
                        non_key_attributes=tuple(projection.get("NonKeyAttributes") or ()),
                    )
                )
            return tuple(found)

        key_schema = schema(properties.get("KeySchema"))
        if not key_schema:
            raise InfraError(origin, f"{logical_id}.Properties.KeySchema", "missing")
        attributes: dict[str, Literal["S", "N", "B"]] = {}
        for item in properties.get("AttributeDefinitions") or []:
            kind = str(item.get("AttributeType"))
            if kind not in ("S", "N", "B"):
                raise InfraError(origin, f"AttributeType: {kind}", "must be S, N or B")
            attributes[str(item["AttributeName"])] = cast(Literal["S", "N", "B"], kind)
        return Table(
            name=self.table_name(logical_id),
            key_schema=key_schema,
            attributes=attributes,
            origin=origin,
            global_indexes=indexes(properties.get("GlobalSecondaryIndexes")),
            local_indexes=indexes(properties.get("LocalSecondaryIndexes")),
        )

    # -- CloudFormation intrinsics ------------------------------------------------------------

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region(),
            "AWS::AccountId": self.vars.account_id,
            "AWS::StackName": f"{self.service}-{self.stage()}",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            API_LOGICAL_ID: self.api.api_id,
        }.get(name)

    def ref(self, name: str, origin: _Origin) -> str:
        if (value := self.pseudo(name)) is not None:
            return value
        resource = self.resources.get(name)
        if isinstance(resource, Mapping):
            if resource.get("Type") == "AWS::DynamoDB::Table":
                return self.table_name(name)
            properties = resource.get("Properties") or {}
            for key, value in properties.items():  # BucketName, QueueName, TopicName...
                if key.endswith("Name") and isinstance(value, str):
                    return value
            return name
        raise InfraError(origin, f"Ref: {name}", "no resource or pseudo parameter of that name")

    def get_att(self, name: str, attribute: str, origin: _Origin) -> str:
        expression = f"Fn::GetAtt: {name}.{attribute}"
        resource = self.resources.get(name)
        if name == API_LOGICAL_ID and attribute == "ApiEndpoint":
            return f"wss://{self.api.api_id}.execute-api.{self.region()}.amazonaws.com"
        if not isinstance(resource, Mapping):
            raise InfraError(origin, expression, "no resource of that name")
        kind = str(resource.get("Type", ""))
        if kind == "AWS::DynamoDB::Table" and attribute in ("Arn", "StreamArn"):
            arn = (
                f"arn:aws:dynamodb:{self.region()}:{self.vars.account_id}:table/"
                f"{self.table_name(name)}"
            )
            return arn if attribute == "Arn" else f"{arn}/stream/1970-01-01T00:00:00.000"
        if attribute == "Arn":
            service = kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown"
            return (
                f"arn:aws:{service}:{self.region()}:{self.vars.account_id}:{self.ref(name, origin)}"
            )
        raise InfraError(
            origin,
            expression,
            f"hubbub can't know the attribute {attribute} of a {kind or 'resource'}",
            "replace it in serverless.yml with a ${opt:…} variable and pass --var",
        )

    def intrinsic(self, value: Any, origin: _Origin, where: str) -> Any:
        """``value`` with CloudFormation intrinsic functions evaluated."""
        if isinstance(value, list):
            return [self.intrinsic(v, origin, where) for v in value]
        if not isinstance(value, Mapping):
            return value
        if len(value) != 1:
            return {k: self.intrinsic(v, origin, where) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.ref(str(argument), origin)
        if function == "Fn::GetAtt":
            parts = argument.split(".", 1) if isinstance(argument, str) else list(argument)
            return self.get_att(str(parts[0]), str(parts[1]), origin)
        if function == "Fn::Join":
            separator, items = argument
            resolved = self.intrinsic(items, origin, where)
            return str(separator).join(_text(item) for item in resolved)
        if function == "Fn::Sub":
            return self._sub(argument, origin)
        if function == "Fn::Select":
            index, items = argument
            return self.intrinsic(items, origin, where)[int(self.intrinsic(index, origin, where))]
        if function == "Fn::Split":
            separator, text = argument
            return _text(self.intrinsic(text, origin, where)).split(str(separator))
        if function.startswith("Fn::") or function == "Ref":
            raise InfraError(
                origin,
                f"{function} in {where}",
                "hubbub does not evaluate this intrinsic function in serverless.yml",
            )
        return {function: self.intrinsic(argument, origin, where)}

    def _sub(self, argument: Any, origin: _Origin) -> str:
        if isinstance(argument, list):
            template, given = str(argument[0]), dict(argument[1] or {})
        else:
            template, given = str(argument), {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in given:
                return _text(self.intrinsic(given[name], origin, f"Fn::Sub {name}"))
            if "." in name and self.pseudo(name) is None:
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute, origin)
            return self.ref(name, origin)

        return re.sub(r"\$\{([^}]+)\}", replace, template)


class _Resolved(Mapping[str, Any]):
    """A function's map whose values are resolved as they are read."""

    def __init__(self, raw: Mapping[str, Any], context: Context) -> None:
        self._raw, self._context = raw, context
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._cache:
            self._cache[key] = self._context.resolve(self._raw[key])
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _normalize(name: str) -> str:
    """Serverless's logical-id spelling of a name: ``my-layer`` → ``MyDashlayer``."""
    name = name.replace("-", "Dash").replace("_", "Underscore")
    return name[:1].upper() + name[1:]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)

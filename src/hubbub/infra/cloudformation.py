"""SAM and CloudFormation templates (YAML with the short-form tags, or JSON: CDK's cdk.out).

Parsing is PyYAML's (the ``infra`` extra) or the json module's; the evaluation of the intrinsic
functions is ours and lazy: only what the WebSocket API needs is evaluated (the API, its routes,
integrations, authorizers and stage, the functions they name, their layers and the tables), so an
IAM policy or an S3 bucket in the same template never has to make sense locally. Every other
resource is counted in :attr:`ImportedApi.ignored`.

What a reference resolves to (``Ref`` / ``Fn::GetAtt``), as CloudFormation would give it:

- a function: its FunctionName (else the logical id); ``.Arn`` its ARN;
- a table: its TableName (else ``{stack}-{logical id}``); ``.Arn``, ``.StreamArn``;
- the WebSocket API: its id, the one hubbub uses for the API's name (so
  ``https://{id}.execute-api.{region}.amazonaws.com/{stage}`` is hubbub's own management API);
  ``.ApiEndpoint`` ``wss://{id}.execute-api.{region}.amazonaws.com``;
- a stage: its name; an integration or an authorizer: its logical id;
- anything else: its logical id, and ``arn:{partition}:{type}:{region}:{account}:{logical id}``
  for an attribute.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from hubbub.aws.ids import api_id_for
from hubbub.infra.model import (
    Authorizer,
    Function,
    ImportedApi,
    Index,
    InfraError,
    Integration,
    Origin,
    ReadOptions,
    Route,
    Table,
)


class _NoValue:
    """``AWS::NoValue``: the property (or list item) is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

PSEUDO = ("AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix")
_SHORT_TAGS = [
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "If",
    "Equals",
    "And",
    "Or",
    "Not",
    "ToJsonString",
    "Length",
    "GetAtt",
]
_INVOKE_ARN = re.compile(
    r"^arn:[^:]+:apigateway:[^:]*:lambda:path/[^/]+/functions/(.+)/invocations$"
)
_FUNCTION_ARN = re.compile(r"^arn:[^:]+:lambda:[^:]*:[^:]*:function:([^:/]+)(?::[^:/]+)?$")
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
_RESOLVE = re.compile(r"\{\{resolve:([a-z-]+):[^}]*\}\}")
# Resources that belong to a WebSocket API but mean nothing locally: not "ignored", just done.
_WIRING = {
    "AWS::ApiGatewayV2::Deployment",
    "AWS::ApiGatewayV2::IntegrationResponse",
    "AWS::Lambda::Permission",
}


# -- loading ------------------------------------------------------------------------------------


class Lined(dict[str, Any]):
    """A YAML mapping that remembers the line of each of its keys (1-based)."""

    line: int | None = None
    key_lines: dict[str, int]


def load_template(path: Path) -> Any:
    """The template as plain data, the short-form tags turned into their long form."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InfraError(Origin(path), "", f"cannot read the template: {exc.strerror}") from exc
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InfraError(Origin(path, exc.lineno), "", f"not valid JSON: {exc.msg}") from exc
        return _json_lines(data, text)
    return _load_yaml(path, text)


def _json_lines(data: Any, text: str) -> Any:
    """JSON has no node marks: the lines of the resources and parameters are found in the text
    (a logical id is a key once per section), so errors in CDK's output name a line too."""
    if not isinstance(data, dict):
        return data
    top = Lined(data)
    top.line = 1
    top.key_lines = {}
    for section in ("Resources", "Parameters"):
        items = data.get(section)
        if not isinstance(items, dict):
            continue
        start = text.find(f'"{section}"')
        top.key_lines[section] = text.count("\n", 0, start) + 1 if start >= 0 else 1
        lined = Lined(items)
        lined.line = top.key_lines[section]
        lined.key_lines = {}
        for key in items:
            found = re.compile(rf'"{re.escape(key)}"\s*:\s*\{{').search(text, max(start, 0))
            if found is not None:
                lined.key_lines[key] = text.count("\n", 0, found.start()) + 1
        top[section] = lined
    return top


def _load_yaml(path: Path, text: str) -> Any:
    try:
        import yaml  # noqa: PLC0415 - optional dependency
    except ImportError as exc:  # pragma: no cover - the dev extra has it
        raise InfraError(
            Origin(path),
            "",
            "reading YAML templates needs PyYAML",
            "install hubbub[infra] (pip install 'hubbub[infra]')",
        ) from exc

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Lined:
        loader.flatten_mapping(node)
        out = Lined()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[str(key)] = key_node.start_mark.line + 1
        return out

    def tag(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
        long = name if name in ("Ref", "Condition") else f"Fn::{name}"

        def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
            value: Any
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
                if name == "GetAtt":
                    value = str(value).split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = mapping(loader, node)  # type: ignore[arg-type]
            out = Lined({long: value})
            out.line = node.start_mark.line + 1
            out.key_lines = {long: out.line}
            return out

        return construct

    def load(base: type[Any]) -> Any:
        class Loader(base):  # type: ignore[misc]
            pass

        Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
        for name in (*_SHORT_TAGS, "Ref", "Condition"):
            Loader.add_constructor(f"!{name}", tag(name))
        return yaml.load(text, Loader=Loader)

    try:
        try:
            # libyaml's parser when PyYAML has it: a tenth of a ten-route template's start-up
            # time in the pure-Python one (about 10 ms against 0.6 ms here).
            return load(getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            # The pure-Python parser words some errors differently: its message is the one
            # users see, and a document only it accepts is still read.
            return load(yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InfraError(Origin(path, line), "", f"not valid YAML: {problem}") from exc


def looks_like_template(data: Any) -> bool:
    return isinstance(data, Mapping) and (
        "Resources" in data or "AWSTemplateFormatVersion" in data or "Transform" in data
    )


def is_sam(data: Mapping[str, Any]) -> bool:
    transform = data.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    return any(isinstance(t, str) and t.startswith("AWS::Serverless") for t in transforms)


# -- reading ------------------------------------------------------------------------------------


def read(path: Path, options: ReadOptions) -> ImportedApi:
    """Read the WebSocket API a SAM/CloudFormation template defines, for one stage."""
    path = path.resolve()
    data = load_template(path)
    if not looks_like_template(data):
        raise InfraError(Origin(path), "", "not a CloudFormation template (no Resources section)")
    return _Reader(path, data, options).read()


def _line(node: Any, key: str | None = None) -> int | None:
    if isinstance(node, Lined):
        if key is not None and key in node.key_lines:
            return node.key_lines[key]
        return node.line
    return None


class _Reader:
    def __init__(self, path: Path, data: Mapping[str, Any], options: ReadOptions) -> None:
        self.path = path
        self.dir = path.parent
        self.data = data
        self.options = options
        self.sam = is_sam(data)
        resources = data.get("Resources")
        if not isinstance(resources, Mapping) or not resources:
            raise InfraError(Origin(path, _line(data, "Resources")), "Resources", "is empty")
        self.resources: Mapping[str, Any] = resources
        for logical, resource in resources.items():
            if not isinstance(resource, Mapping) or not isinstance(resource.get("Type"), str):
                raise InfraError(self.origin(logical), logical, "a resource needs a Type")
        self.globals = self._globals()
        self.parameters = self._parameters()
        # The stack's name: CDK's cdk.out/<Stack>.template.json names it, else the project folder.
        default_stack = (
            path.name.removesuffix(".template.json")
            if path.name.endswith(".template.json")
            else path.parent.name or "stack"
        )
        self.stack = self.parameters.get("AWS::StackName", default_stack)
        self.region = str(self.parameters.get("AWS::Region", "us-east-1"))
        self.account = str(self.parameters.get("AWS::AccountId", "123456789012"))
        self.partition = str(self.parameters.get("AWS::Partition", "aws"))
        self._conditions: dict[str, bool] = {}
        self.api_logical = self._websocket_api()
        api_props = self.props(self.api_logical)
        self.api_name = str(self.resolve(api_props.get("Name", self.api_logical), self.api_logical))
        self.api_id = api_id_for(self.api_name)
        self.used: set[str] = {self.api_logical}
        self.function_names: dict[str, str] = {}  # function name -> logical id
        self.published_layers: Counter[str] = Counter()  # layer ARNs hubbub can't fetch
        self.renamed_stages: dict[str, str] = {}  # stage logical id -> its --stage name

    # -- where things are --
    def origin(self, logical: str, what: str | None = None) -> Origin:
        resource = self.resources.get(logical)
        line = _line(self.resources, logical)
        if what is None and isinstance(resource, Mapping):
            what = f"{resource.get('Type')} {logical}"
        return Origin(self.path, line, what or logical)

    def type_of(self, logical: str) -> str:
        return str(self.resources[logical]["Type"])

    def props(self, logical: str) -> Mapping[str, Any]:
        props = self.resources[logical].get("Properties", {})
        if not isinstance(props, Mapping):
            raise InfraError(self.origin(logical), "Properties", "must be a mapping")
        return props

    # -- Parameters, Globals, Conditions --
    def _globals(self) -> Mapping[str, Any]:
        globals_ = self.data.get("Globals", {})
        function = globals_.get("Function", {}) if isinstance(globals_, Mapping) else {}
        return function if isinstance(function, Mapping) else {}

    def _parameters(self) -> dict[str, Any]:
        declared = self.data.get("Parameters") or {}
        if not isinstance(declared, Mapping):
            raise InfraError(
                Origin(self.path, _line(self.data, "Parameters")), "Parameters", "must be a mapping"
            )
        values: dict[str, Any] = {}
        for name, value in self.options.parameters.items():
            if name not in declared and name not in PSEUDO:
                known = ", ".join(sorted(declared)) or "none"
                raise InfraError(
                    Origin(self.path, _line(self.data, "Parameters")),
                    f"--parameter {name}={value}",
                    f"the template has no parameter {name!r} (its parameters: {known})",
                )
        for name, spec in declared.items():
            origin = Origin(self.path, _line(declared, name), f"Parameter {name}")
            decl: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
            ptype = str(decl.get("Type", "String"))
            if name in self.options.parameters:
                raw: Any = self.options.parameters[name]
            elif ptype.startswith("AWS::SSM::Parameter::Value"):
                # An error only once something the API needs uses it (CDK's BootstrapVersion
                # is only read by a Rule).
                expression = f"{ptype} {decl.get('Default', '')}".strip()
                problem = "hubbub can't read SSM parameters"
                values[name] = _Missing(origin, expression, problem, name)
                continue
            elif "Default" in decl:
                raw = decl["Default"]
            else:
                problem = f"parameter {name} has no Default"
                values[name] = _Missing(origin, f"Ref {name}", problem, name)
                continue
            if isinstance(raw, str) and _RESOLVE.search(raw):
                problem = "hubbub can't resolve dynamic references"
                values[name] = _Missing(origin, raw, problem, name)
                continue
            if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
                raw = [p.strip() for p in str(raw).split(",")] if isinstance(raw, str) else raw
            elif isinstance(raw, bool):
                raw = "true" if raw else "false"
            elif isinstance(raw, int | float):
                raw = str(raw)
            values[name] = raw
        for name in PSEUDO:
            if name in self.options.parameters:
                values[name] = self.options.parameters[name]
        return values

    def condition(self, name: str, where: Origin) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.data.get("Conditions") or {}
        if not isinstance(conditions, Mapping) or name not in conditions:
            raise InfraError(where, f"Condition {name}", "no such condition in Conditions")
        self._conditions[name] = False  # a cycle reads False rather than recursing forever
        origin = Origin(self.path, _line(conditions, name), f"Condition {name}")
        value = self._truth(conditions[name], origin)
        self._conditions[name] = value
        return value

    def _truth(self, node: Any, origin: Origin) -> bool:
        if isinstance(node, Mapping) and len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Fn::Equals":
                a, b = (self.resolve(x, origin) for x in self._args(arg, 2, fn, origin))
                return _text(a) == _text(b)
            if fn == "Fn::Not":
                (inner,) = self._args(arg, 1, fn, origin)
                return not self._truth(inner, origin)
            if fn == "Fn::And":
                return all(self._truth(x, origin) for x in self._list(arg, fn, origin))
            if fn == "Fn::Or":
                return any(self._truth(x, origin) for x in self._list(arg, fn, origin))
            if fn == "Condition":
                return self.condition(str(arg), origin)
        value = self.resolve(node, origin)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise InfraError(origin, _show(node), "is not a condition")

    # -- the intrinsic functions --
    def resolve(self, node: Any, where: Origin | str) -> Any:
        """Evaluate ``node``; ``where`` is an Origin or the logical id it belongs to."""
        origin = where if isinstance(where, Origin) else self.origin(where)
        if isinstance(node, Lined) and node.line:
            origin = Origin(origin.file, node.line, origin.what)
        if isinstance(node, str):
            match = _RESOLVE.search(node)
            if match:
                raise InfraError(
                    origin,
                    node,
                    f"hubbub can't resolve dynamic references ({match.group(1)})",
                    "use a Parameter and pass --parameter NAME=VALUE",
                )
            return node
        if isinstance(node, list):
            items = [self.resolve(x, origin) for x in node]
            return [x for x in items if x is not NO_VALUE]
        if not isinstance(node, Mapping):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(str(arg), origin)
            if key == "Condition":
                return self.condition(str(arg), origin)
            if isinstance(key, str) and key.startswith("Fn::"):
                return self._function(key, arg, origin)
        out: dict[str, Any] = {}
        for key, value in node.items():
            resolved = self.resolve(value, origin)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _function(self, fn: str, arg: Any, origin: Origin) -> Any:
        if fn == "Fn::GetAtt":
            if isinstance(arg, str):
                arg = arg.split(".", 1)
            logical, attribute = (self.resolve(x, origin) for x in self._args(arg, 2, fn, origin))
            return self.get_att(str(logical), str(attribute), origin)
        if fn == "Fn::Sub":
            return self._sub(arg, origin)
        if fn == "Fn::Join":
            delimiter, items = self._args(arg, 2, fn, origin)
            values = self.resolve(items, origin)
            if not isinstance(values, list):
                raise InfraError(origin, _show({fn: arg}), "the second argument must be a list")
            return str(self.resolve(delimiter, origin)).join(_text(v) for v in values)
        if fn == "Fn::Select":
            index, items = self._args(arg, 2, fn, origin)
            values = self.resolve(items, origin)
            try:
                return values[int(self.resolve(index, origin))]
            except (IndexError, ValueError, TypeError) as exc:
                raise InfraError(origin, _show({fn: arg}), f"cannot select: {exc}") from exc
        if fn == "Fn::Split":
            delimiter, text = (self.resolve(x, origin) for x in self._args(arg, 2, fn, origin))
            return _text(text).split(_text(delimiter))
        if fn == "Fn::If":
            name, yes, no = self._args(arg, 3, fn, origin)
            return self.resolve(yes if self.condition(str(name), origin) else no, origin)
        if fn in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not"):
            return self._truth({fn: arg}, origin)
        if fn == "Fn::FindInMap":
            return self._find_in_map(arg, origin)
        if fn == "Fn::Base64":
            return base64.b64encode(_text(self.resolve(arg, origin)).encode()).decode()
        if fn == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg, origin), separators=(",", ":"))
        if fn == "Fn::Length":
            value = self.resolve(arg, origin)
            return len(value) if isinstance(value, list) else 0
        if fn == "Fn::ImportValue":
            raise InfraError(
                origin,
                _show({fn: arg}),
                "hubbub can't read another stack's exports",
                "replace the import with a Parameter and pass --parameter NAME=VALUE",
            )
        raise InfraError(origin, _show({fn: arg}), f"hubbub does not evaluate {fn}")

    def _args(self, arg: Any, count: int, fn: str, origin: Origin) -> list[Any]:
        if not isinstance(arg, list) or len(arg) not in (count, count + (fn == "Fn::FindInMap")):
            raise InfraError(origin, _show({fn: arg}), f"takes a list of {count} arguments")
        return list(arg)

    def _list(self, arg: Any, fn: str, origin: Origin) -> list[Any]:
        if not isinstance(arg, list):
            raise InfraError(origin, _show({fn: arg}), "takes a list")
        return arg

    def _find_in_map(self, arg: Any, origin: Origin) -> Any:
        items = self._args(arg, 3, "Fn::FindInMap", origin)
        name, top, second = (_text(self.resolve(x, origin)) for x in items[:3])
        mappings = self.data.get("Mappings") or {}
        try:
            return self.resolve(mappings[name][top][second], origin)
        except (KeyError, TypeError) as exc:
            if len(items) == 4 and isinstance(items[3], Mapping) and "DefaultValue" in items[3]:
                return self.resolve(items[3]["DefaultValue"], origin)
            raise InfraError(
                origin, _show({"Fn::FindInMap": arg}), f"Mappings has no {name}.{top}.{second}"
            ) from exc

    def _sub(self, arg: Any, origin: Origin) -> str:
        variables: Mapping[str, Any] = {}
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[1], Mapping):
                raise InfraError(
                    origin, _show({"Fn::Sub": arg}), "takes a string or [string, {vars}]"
                )
            arg, variables = arg
        if not isinstance(arg, str):
            raise InfraError(origin, _show({"Fn::Sub": arg}), "the template must be a string")

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            name = name.strip()
            if name in variables:
                return _text(self.resolve(variables[name], origin))
            if "." in name and not name.startswith("AWS::"):
                logical, _, attribute = name.partition(".")
                return _text(self.get_att(logical, attribute, origin))
            return _text(self.ref(name, origin))

        return _SUB_VAR.sub(one, arg)

    def ref(self, name: str, origin: Origin) -> Any:
        if name == "AWS::Region":
            return self.region
        if name == "AWS::AccountId":
            return self.account
        if name == "AWS::StackName":
            return str(self.stack)
        if name == "AWS::Partition":
            return self.partition
        if name == "AWS::URLSuffix":
            return "amazonaws.com"
        if name == "AWS::StackId":
            return f"{self._arn('cloudformation')}:stack/{self.stack}/hubbub"
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::NotificationARNs":
            return []
        if name in self.parameters:
            value = self.parameters[name]
            if isinstance(value, _Missing):
                raise InfraError(value.origin, value.expression, value.problem, value.hint)
            return value
        if name not in self.resources:
            raise InfraError(origin, f"Ref {name}", "no such parameter or resource in the template")
        rtype = self.type_of(name)
        props = self.props(name)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return self.function_name(name)
        if rtype in (
            "AWS::DynamoDB::Table",
            "AWS::Serverless::SimpleTable",
            "AWS::DynamoDB::GlobalTable",
        ):
            return self.table_name(name)
        if rtype == "AWS::ApiGatewayV2::Api":
            return self.api_id if name == self.api_logical else api_id_for(name)
        if rtype == "AWS::ApiGatewayV2::Stage":
            return self.stage_name(name)
        if rtype in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
            target = self.resolve(props.get("FunctionName", ""), name)
            qualifier = props.get("Name", "1") if rtype == "AWS::Lambda::Alias" else "1"
            arn = self.function_arn(_function_of(_text(target)))
            return f"{arn}:{_text(self.resolve(qualifier, name))}"
        return name

    def get_att(self, logical: str, attribute: str, origin: Origin) -> Any:
        if logical not in self.resources:
            raise InfraError(
                origin, f"Fn::GetAtt {logical}.{attribute}", "no such resource in the template"
            )
        rtype = self.type_of(logical)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function") and attribute == "Arn":
            return self.function_arn(self.function_name(logical))
        if rtype in (
            "AWS::DynamoDB::Table",
            "AWS::Serverless::SimpleTable",
            "AWS::DynamoDB::GlobalTable",
        ):
            table = f"{self._arn('dynamodb')}:table/{self.table_name(logical)}"
            if attribute == "StreamArn":
                return f"{table}/stream/1970-01-01T00:00:00.000"
            return table
        if rtype == "AWS::ApiGatewayV2::Api":
            api_id = self.ref(logical, origin)
            if attribute == "ApiEndpoint":
                return f"wss://{api_id}.execute-api.{self.region}.amazonaws.com"
            return api_id
        if rtype in (
            "AWS::ApiGatewayV2::Integration",
            "AWS::ApiGatewayV2::Authorizer",
            "AWS::ApiGatewayV2::Route",
        ):
            return logical
        service = rtype.split("::")[1].lower() if rtype.count("::") >= 2 else "unknown"
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{logical}"

    # -- names --
    def function_name(self, logical: str) -> str:
        name = self.props(logical).get("FunctionName")
        value = _text(self.resolve(name, logical)) if name is not None else logical
        self.function_names[value] = logical
        return value

    def function_arn(self, name: str) -> str:
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{name}"

    def table_name(self, logical: str) -> str:
        name = self.props(logical).get("TableName")
        if name is None:
            return f"{self.stack}-{logical}"
        return _text(self.resolve(name, logical))

    def stage_name(self, logical: str) -> str:
        if logical in self.renamed_stages:  # --stage: a Ref to the stage names the served one
            return self.renamed_stages[logical]
        return _text(self.resolve(self.props(logical).get("StageName", "$default"), logical))

    # -- the API --
    def _websocket_api(self) -> str:
        apis = []
        for logical, resource in self.resources.items():
            if resource["Type"] != "AWS::ApiGatewayV2::Api" or not self._exists(logical):
                continue
            protocol = resource.get("Properties", {}).get("ProtocolType")
            if protocol == "WEBSOCKET":
                apis.append(logical)
        if not apis:
            raise InfraError(
                Origin(self.path),
                "",
                "the template defines no WebSocket API (AWS::ApiGatewayV2::Api with "
                "ProtocolType: WEBSOCKET)",
            )
        if len(apis) > 1:
            raise InfraError(
                self.origin(apis[1]),
                apis[1],
                f"the template defines {len(apis)} WebSocket APIs ({', '.join(apis)}); "
                "hubbub serves one per gateway",
                "split the template or run one hubbub per API",
            )
        return apis[0]

    def _exists(self, logical: str) -> bool:
        condition = self.resources[logical].get("Condition")
        if condition is None:
            return True
        return self.condition(str(condition), self.origin(logical))

    def _of_api(self, logical: str) -> bool:
        api = self.props(logical).get("ApiId")
        return api is not None and self.resolve(api, logical) == self.api_id

    def read(self) -> ImportedApi:
        api_props = self.props(self.api_logical)
        selection = _text(
            self.resolve(
                api_props.get("RouteSelectionExpression", "$request.body.action"), self.api_logical
            )
        )
        api = ImportedApi(
            format="sam" if self.sam else "cloudformation",
            source=self.path,
            name=self.api_name,
            origin=self.origin(self.api_logical),
            route_selection_expression=selection,
            api_id=self.api_id,
            region=self.region,
            account_id=self.account,
        )
        by_type: dict[str, list[str]] = {}
        for logical, resource in self.resources.items():
            if self._exists(logical):
                by_type.setdefault(str(resource["Type"]), []).append(logical)
        self._stage(api, by_type.get("AWS::ApiGatewayV2::Stage", []))
        responses = {
            _text(self.resolve(self.props(r).get("RouteId"), r))
            for r in by_type.get("AWS::ApiGatewayV2::RouteResponse", [])
            if self._of_api(r)
        }
        self.used.update(
            r for r in by_type.get("AWS::ApiGatewayV2::RouteResponse", []) if self._of_api(r)
        )
        for logical in by_type.get("AWS::ApiGatewayV2::Authorizer", []):
            if self._of_api(logical):
                self._authorizer(api, logical)
        for logical in by_type.get("AWS::ApiGatewayV2::Route", []):
            if self._of_api(logical):
                self._route(api, logical, logical in responses)
        if not api.routes:
            raise InfraError(api.origin, self.api_logical, "the WebSocket API has no routes")
        tables = {
            "AWS::DynamoDB::Table",
            "AWS::DynamoDB::GlobalTable",
            "AWS::Serverless::SimpleTable",
        }
        for logical in self.resources:  # in the template's order
            if self.type_of(logical) not in tables or not self._exists(logical):
                continue
            api.tables.append(self._table(logical))
            self.used.add(logical)
        for logical, resource in self.resources.items():
            rtype = str(resource["Type"])
            if logical in self.used or rtype in _WIRING or not self._exists(logical):
                continue
            # Parts of this API no route uses (an integration without a route): nothing to run.
            if rtype.startswith("AWS::ApiGatewayV2::") and self._of_api(logical):
                continue
            api.ignored[rtype] += 1
        for arn, count in self.published_layers.items():
            api.ignored[f"Lambda layer {arn} (install its packages locally)"] += count
        return api

    def _stage(self, api: ImportedApi, stages: list[str]) -> None:
        mine = [s for s in stages if self._of_api(s)]
        self.used.update(mine)
        chosen = None
        if self.options.stage is not None:
            chosen = next((s for s in mine if self.stage_name(s) == self.options.stage), None)
            if chosen is None and len(mine) == 1:  # the one stage, renamed
                chosen = mine[0]
                self.renamed_stages[chosen] = self.options.stage
            api.stage = self.options.stage
        elif mine:
            chosen = mine[0]
            api.stage = self.stage_name(chosen)
        if chosen is not None:
            variables = self.resolve(self.props(chosen).get("StageVariables", {}), chosen)
            api.stage_variables = {str(k): _text(v) for k, v in (variables or {}).items()}

    def _route(self, api: ImportedApi, logical: str, two_way: bool) -> None:
        props = self.props(logical)
        origin = self.origin(logical)
        key = _text(self.resolve(props.get("RouteKey"), logical))
        if not key:
            raise InfraError(origin, logical, "the route has no RouteKey")
        if props.get("RouteResponseSelectionExpression") is not None:
            two_way = two_way or bool(
                self.resolve(props["RouteResponseSelectionExpression"], logical)
            )
        target = props.get("Target")
        if target is None:
            raise InfraError(origin, logical, f"route {key} has no Target (integrations/...)")
        target_text = _text(self.resolve(target, logical))
        integration_id = target_text.removeprefix("integrations/")
        if integration_id not in self.resources:
            raise InfraError(
                Origin(self.path, _line(props, "Target") or origin.line, origin.what),
                target_text,
                "names no AWS::ApiGatewayV2::Integration of this template",
            )
        self.used.update((logical, integration_id))
        integration = self._integration(integration_id, api)
        authorizer = None
        auth_type = _text(self.resolve(props.get("AuthorizationType", "NONE"), logical))
        if auth_type in ("CUSTOM", "JWT") or props.get("AuthorizerId") is not None:
            auth_id = props.get("AuthorizerId")
            if auth_id is None:
                raise InfraError(origin, f"AuthorizationType: {auth_type}", "needs an AuthorizerId")
            authorizer = _text(self.resolve(auth_id, logical))
            if authorizer not in api.authorizers:
                raise InfraError(
                    origin, f"AuthorizerId {authorizer}", "names no authorizer of this API"
                )
        elif auth_type == "AWS_IAM":
            api.ignored["AuthorizationType AWS_IAM (not checked locally)"] += 1
        api.routes.append(
            Route(
                key=key,
                integration=integration,
                origin=origin,
                route_response=two_way,
                authorizer=authorizer,
            )
        )

    def _integration(self, logical: str, api: ImportedApi) -> Integration:
        props = self.props(logical)
        origin = self.origin(logical)
        kind = _text(self.resolve(props.get("IntegrationType", ""), logical)).upper()
        if kind == "MOCK":
            return Integration(kind="mock", origin=origin)
        uri = _text(self.resolve(props.get("IntegrationUri", ""), logical))
        if kind in ("HTTP", "HTTP_PROXY"):
            if not uri.startswith(("http://", "https://")):
                raise InfraError(
                    origin, uri, "an HTTP integration needs an http(s):// IntegrationUri"
                )
            return Integration(kind="http", origin=origin, url=uri)
        if kind in ("AWS_PROXY", "AWS"):
            function = self.lambda_function(uri, origin, api)
            return Integration(kind="lambda", origin=origin, function=function)
        raise InfraError(origin, f"IntegrationType: {kind}", "unsupported integration type")

    def lambda_function(self, uri: str, origin: Origin, api: ImportedApi) -> str:
        """The Function.name an invoke ARN, a function ARN or a function name refers to."""
        match = _INVOKE_ARN.match(uri)
        target = match.group(1) if match else uri
        name = _function_of(target)
        if name not in self.function_names:
            for logical, resource in self.resources.items():
                if resource["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                    self.function_name(logical)
        found = self.function_names.get(name)
        if found is None:
            raise InfraError(
                origin,
                uri,
                f"names a Lambda function {name!r} this template does not define",
                "define it in the template or give the route a handler in hubbub.toml",
            )
        if name not in api.functions:
            api.functions[name] = self._function_model(found, name)
            self.used.add(found)
        return name

    def _function_model(self, logical: str, name: str) -> Function:
        rtype = self.type_of(logical)
        props = dict(self.props(logical))
        origin = self.origin(logical)
        if rtype == "AWS::Serverless::Function":
            for key, value in self.globals.items():
                if key == "Environment" and "Environment" in props:
                    merged = dict(value.get("Variables", {}) if isinstance(value, Mapping) else {})
                    merged.update(props["Environment"].get("Variables", {}))
                    props["Environment"] = {"Variables": merged}
                elif key == "Layers" and "Layers" in props:
                    props["Layers"] = [*value, *props["Layers"]]
                else:
                    props.setdefault(key, value)
        package = _text(self.resolve(props.get("PackageType", "Zip"), logical))
        if package == "Image":
            raise InfraError(
                origin, "PackageType: Image", "hubbub can't run container image functions"
            )
        handler = _text(self.resolve(props.get("Handler", ""), logical))
        if not handler:
            raise InfraError(origin, logical, "the function has no Handler")
        runtime = _text(self.resolve(props.get("Runtime", ""), logical))
        code_root = self._code_root(logical, props, rtype)
        layers = tuple(
            self._layer(layer, logical) for layer in self.resolve(props.get("Layers", []), logical)
        )
        env = self.resolve(props.get("Environment", {}), logical)
        variables = env.get("Variables", {}) if isinstance(env, Mapping) else {}
        timeout = props.get("Timeout")
        memory = props.get("MemorySize")
        return Function(
            name=name,
            handler=handler,
            runtime=runtime,
            code_root=code_root,
            origin=origin,
            layers=tuple(layer for layer in layers if layer is not None),
            environment={str(k): _text(v) for k, v in (variables or {}).items()},
            timeout=float(self.resolve(timeout, logical)) if timeout is not None else None,
            memory_mb=int(self.resolve(memory, logical)) if memory is not None else None,
        )

    def _code_root(self, logical: str, props: Mapping[str, Any], rtype: str) -> Path:
        origin = self.origin(logical)
        asset = self._asset_path(logical)
        if asset is not None:
            return asset
        key = "CodeUri" if rtype == "AWS::Serverless::Function" else "Code"
        origin = Origin(self.path, _line(self.props(logical), key) or origin.line, origin.what)
        if rtype == "AWS::Serverless::Function" and "InlineCode" in props:
            raise InfraError(
                origin,
                "InlineCode",
                "hubbub runs functions from a folder",
                "move the code to a file and set CodeUri",
            )
        code = self.resolve(props.get(key, "." if key == "CodeUri" else None), logical)
        if isinstance(code, str) and not code.startswith("s3://"):
            folder = (self.dir / code).resolve()
            if folder.suffix == ".zip":
                raise InfraError(
                    origin,
                    f"{key}: {code}",
                    "hubbub runs functions from a folder, not a zip",
                    f"unzip it and point {key} at the folder",
                )
            if not folder.is_dir():
                raise InfraError(origin, f"{key}: {code}", f"{folder} is not a folder")
            return folder
        if isinstance(code, Mapping) and "ZipFile" in code:
            raise InfraError(
                origin,
                "Code.ZipFile",
                "hubbub runs functions from a folder",
                "move the inline code to a file and set Code to its folder",
            )
        raise InfraError(
            origin,
            f"{key}: {_show(code)}",
            "the code is only in S3: hubbub can't fetch it",
            f"point {key} at the local folder of the function's code",
        )

    def _asset_path(self, logical: str) -> Path | None:
        """A CDK asset folder (cdk.out/asset.<hash>) from the resource's asset metadata."""
        metadata = self.resources[logical].get("Metadata") or {}
        asset = metadata.get("aws:asset:path") if isinstance(metadata, Mapping) else None
        if not isinstance(asset, str):
            return None
        folder = (self.dir / asset).resolve()
        if not folder.is_dir():
            raise InfraError(
                self.origin(logical),
                f"aws:asset:path {asset}",
                f"the CDK asset folder {folder} is missing",
                "run `cdk synth` so cdk.out holds the assets",
            )
        return folder

    def _layer(self, layer: Any, logical: str) -> Path | None:
        text = _text(layer)
        for candidate, resource in self.resources.items():
            if resource["Type"] not in (
                "AWS::Serverless::LayerVersion",
                "AWS::Lambda::LayerVersion",
            ):
                continue
            if text not in (candidate, self._layer_arn(candidate)):
                continue
            self.used.add(candidate)
            asset = self._asset_path(candidate)
            if asset is not None:
                return asset
            props = self.props(candidate)
            key = "ContentUri" if resource["Type"] == "AWS::Serverless::LayerVersion" else "Content"
            content = self.resolve(props.get(key), candidate)
            if isinstance(content, str) and not content.startswith("s3://"):
                folder = (self.dir / content).resolve()
                if folder.is_dir():
                    return folder
                raise InfraError(
                    self.origin(candidate), f"{key}: {content}", f"{folder} is not a folder"
                )
            raise InfraError(
                self.origin(candidate),
                f"{key}: {_show(content)}",
                "the layer is only in S3: hubbub can't fetch it",
                f"point {key} at the layer's local folder",
            )
        # A published layer (an ARN): its packages must be installed where hubbub runs.
        self.published_layers[text] += 1
        return None

    def _layer_arn(self, logical: str) -> str:
        name = self.props(logical).get("LayerName", logical)
        return f"{self._arn('lambda')}:layer:{_text(self.resolve(name, logical))}:1"

    def _arn(self, service: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}"

    def _authorizer(self, api: ImportedApi, logical: str) -> None:
        props = self.props(logical)
        origin = self.origin(logical)
        self.used.add(logical)
        kind = _text(self.resolve(props.get("AuthorizerType", "REQUEST"), logical)).upper()
        sources = self.resolve(props.get("IdentitySource", []), logical)
        sources = [sources] if isinstance(sources, str) else sources
        if kind == "JWT":
            jwt = self.resolve(props.get("JwtConfiguration", {}), logical)
            audience = jwt.get("Audience", [])
            api.authorizers[logical] = Authorizer(
                name=logical,
                kind="jwt",
                origin=origin,
                identity_sources=tuple(_text(s) for s in sources),
                issuer=_text(jwt["Issuer"]) if "Issuer" in jwt else None,
                audience=tuple(
                    _text(a) for a in (audience if isinstance(audience, list) else [audience])
                ),
            )
            return
        if kind != "REQUEST":
            raise InfraError(
                origin,
                f"AuthorizerType: {kind}",
                "WebSocket APIs have REQUEST (and JWT) authorizers only",
            )
        uri = _text(self.resolve(props.get("AuthorizerUri", ""), logical))
        function = self.lambda_function(uri, origin, api)
        api.authorizers[logical] = Authorizer(
            name=logical,
            kind="request",
            origin=origin,
            function=function,
            identity_sources=tuple(_text(s) for s in sources),
        )

    def _table(self, logical: str) -> Table:
        props = self.props(logical)
        origin = self.origin(logical)
        name = self.table_name(logical)
        if self.type_of(logical) == "AWS::Serverless::SimpleTable":
            key = self.resolve(props.get("PrimaryKey", {"Name": "id", "Type": "String"}), logical)
            kind = {"String": "S", "Number": "N", "Binary": "B"}.get(
                _text(key.get("Type", "String")), "S"
            )
            attr = _text(key.get("Name", "id"))
            attributes: dict[str, Literal["S", "N", "B"]] = {attr: kind}  # type: ignore[dict-item]
            return Table(
                name=name, key_schema=((attr, "HASH"),), attributes=attributes, origin=origin
            )
        attributes = {
            _text(a["AttributeName"]): _attribute_type(a.get("AttributeType"), origin)
            for a in self.resolve(props.get("AttributeDefinitions", []), logical)
        }
        return Table(
            name=name,
            key_schema=_key_schema(self.resolve(props.get("KeySchema", []), logical), origin),
            attributes=attributes,
            origin=origin,
            global_indexes=tuple(
                _index(i, origin)
                for i in self.resolve(props.get("GlobalSecondaryIndexes", []), logical)
            ),
            local_indexes=tuple(
                _index(i, origin)
                for i in self.resolve(props.get("LocalSecondaryIndexes", []), logical)
            ),
        )


class _Missing:
    """A parameter hubbub can't give a value (no Default, an SSM or ``{{resolve:…}}`` value)
    and the user did not: an error only once something the API needs uses it."""

    def __init__(self, origin: Origin, expression: str, problem: str, name: str) -> None:
        self.origin = origin
        self.expression = expression
        self.problem = problem
        self.hint = (
            f"pass --parameter {name}=VALUE (or parameters = {{ {name} = ... }} under [import])"
        )


def _key_schema(items: Any, origin: Origin) -> tuple[tuple[str, Literal["HASH", "RANGE"]], ...]:
    out: list[tuple[str, Literal["HASH", "RANGE"]]] = []
    for item in items or []:
        kind = _text(item.get("KeyType"))
        if kind not in ("HASH", "RANGE"):
            raise InfraError(origin, f"KeyType: {kind}", "must be HASH or RANGE")
        out.append((_text(item["AttributeName"]), "HASH" if kind == "HASH" else "RANGE"))
    if not out:
        raise InfraError(origin, "KeySchema", "the table needs a key schema")
    return tuple(out)


def _attribute_type(value: Any, origin: Origin) -> Literal["S", "N", "B"]:
    if value == "S":
        return "S"
    if value == "N":
        return "N"
    if value == "B":
        return "B"
    raise InfraError(origin, f"AttributeType: {value}", "must be S, N or B")


def _index(spec: Any, origin: Origin) -> Index:
    projection = spec.get("Projection", {}) or {}
    kind = _text(projection.get("ProjectionType", "ALL"))
    return Index(
        name=_text(spec["IndexName"]),
        key_schema=_key_schema(spec.get("KeySchema"), origin),
        projection=kind if kind in ("ALL", "KEYS_ONLY", "INCLUDE") else "ALL",  # type: ignore[arg-type]
        non_key_attributes=tuple(_text(a) for a in projection.get("NonKeyAttributes", [])),
    )


def _function_of(target: str) -> str:
    """A function's name from its ARN (with or without a qualifier) or its bare name."""
    match = _FUNCTION_ARN.match(target)
    return match.group(1) if match else target


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _show(node: Any) -> str:
    """A node as the error message shows it: JSON, short."""
    try:
        text = json.dumps(node, default=str)
    except (TypeError, ValueError):
        text = repr(node)
    return text if len(text) <= 200 else text[:197] + "..."

"""Serverless Framework variables: ``${source:address, default}`` in a serverless.yml.

Theory of operation: a value is resolved only when the reader asks for it (a ``custom`` section
full of ``${ssm:…}`` for a plugin hubbub ignores must not stop the import). A string that is
exactly one variable takes the referenced value's type (a map, a number); a variable inside a
longer string is interpolated. Addresses may hold variables themselves
(``${self:custom.${sls:stage}.table}``); defaults after commas are tried in order, each only when
the ones before it found nothing, so a default that hubbub could not read never matters when the
first source answers.

``${AWS::Region}`` and ``${ApiLogicalId}`` (CloudFormation's ``Fn::Sub`` placeholders) are not
Serverless variables and are left for the intrinsic functions to resolve.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubbub.infra.model import InfraError, Origin

try:
    import yaml
except ImportError:  # pragma: no cover - the dev extra installs it
    raise InfraError(
        Origin(Path(__file__)),
        "",
        "reading serverless.yml needs PyYAML",
        "install hubbub's infra extra: pip install 'hubbub[infra]'",
    ) from None

# A source is a word followed by ":" (not CloudFormation's "::") or "(" for file(...).
_SOURCE = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\((.*?)\))?:(?!:)(.*)\Z", re.DOTALL)
_FILE = re.compile(r"file\((.*?)\)(?::(.*))?\Z", re.DOTALL)
# Sources whose values live in an AWS account: hubbub takes them from --var "source:address=...".
_REMOTE = {
    "ssm": "SSM parameters",
    "cf": "CloudFormation stack outputs",
    "s3": "S3 objects",
    "secretsmanager": "Secrets Manager secrets",
}
_MISSING = object()


def load_yaml(text: str, file: Path) -> Any:
    """YAML with CloudFormation's short-form tags (``!Ref X`` → ``{"Ref": "X"}``)."""
    try:
        try:
            # libyaml's parser when PyYAML has it: about 15 times faster (start-up time).
            return yaml.load(text, Loader=_CloudFormationCLoader)
        except yaml.YAMLError:
            # The pure-Python parser words some errors differently: its message is the one
            # users see, and a document only it accepts is still read.
            return yaml.load(text, Loader=CloudFormationLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InfraError(Origin(file, line), "", f"not valid YAML: {e}") from None


class CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that turns ``!Ref``/``!GetAtt``/``!Sub``… into their long forms."""


def _tag_constructor(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


class _CloudFormationCLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same, on libyaml's parser."""


for _tag in (
    "Ref", "GetAtt", "Sub", "Join", "Select", "Split", "If", "Equals", "And", "Or", "Not",
    "FindInMap", "ImportValue", "Base64", "Cidr", "GetAZs", "Condition", "Transform",
):  # fmt: skip
    CloudFormationLoader.add_constructor(f"!{_tag}", _tag_constructor(_tag))
    _CloudFormationCLoader.add_constructor(f"!{_tag}", _tag_constructor(_tag))


@dataclass
class Context:
    """What the variables of one serverless.yml resolve against."""

    config: Mapping[str, Any]  # the raw serverless.yml
    file: Path  # the serverless.yml
    text: str  # its text, to find the line of an expression
    vars: Mapping[str, str]  # --var / [import] vars: opt values and "ssm:/x" overrides
    env: Mapping[str, str]
    stage: Callable[[], str]
    region: Callable[[], str]
    account_id: str
    stage_option: str | None = None  # --stage, what ${opt:stage} reads first
    _files: dict[Path, tuple[Any, str]] = field(default_factory=dict)
    _resolving: set[str] = field(default_factory=set)

    def origin(self, expression: str, file: Path | None = None, text: str | None = None) -> Origin:
        file, text = file or self.file, text if text is not None else self.text
        position = text.find(expression)
        line = text.count("\n", 0, position) + 1 if position >= 0 else None
        return Origin(file, line, "serverless variable")

    def resolve(self, value: Any, file: Path | None = None, text: str | None = None) -> Any:
        """``value`` with every Serverless variable in it resolved (deeply)."""
        if isinstance(value, str):
            return self._string(value, file or self.file, text if text is not None else self.text)
        if isinstance(value, Mapping):
            return {k: self.resolve(v, file, text) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, file, text) for v in value]
        return value

    def _string(self, value: str, file: Path, text: str) -> Any:
        spans = _variables_in(value)
        if not spans:
            return value
        if len(spans) == 1 and spans[0] == (0, len(value)):
            return self._variable(value, file, text)
        parts: list[str] = []
        end = 0
        for start, stop in spans:
            parts.append(value[end:start])
            resolved = self._variable(value[start:stop], file, text)
            parts.append(resolved if isinstance(resolved, str) else _text(resolved))
            end = stop
        parts.append(value[end:])
        return "".join(parts)

    def _variable(self, expression: str, file: Path, text: str) -> Any:
        """One ``${…}``: its first alternative that has a value, else an error."""
        alternatives = _split_commas(expression[2:-1])
        if _SOURCE.match(alternatives[0]) is None and not alternatives[0].startswith("file("):
            return expression  # ${AWS::Region}, ${Api}: for Fn::Sub
        for alternative in alternatives:
            value = self._alternative(alternative.strip(), expression, file, text)
            if value is not _MISSING:
                return value
        source = alternatives[0].strip()
        raise self._not_found(source, expression, file, text)

    def _alternative(self, alternative: str, expression: str, file: Path, text: str) -> Any:
        if (
            alternative[:1] in "'\""
            and alternative[-1:] == alternative[:1]
            and len(alternative) > 1
        ):
            return alternative[1:-1]
        if _variables_in(alternative) == [(0, len(alternative))]:
            return self._string(alternative, file, text)
        address = self._string(alternative, file, text)  # nested variables in the address
        if not isinstance(address, str):
            return address
        if address.startswith("file("):
            return self._file(address, expression, file, text)
        match = _SOURCE.match(address)
        if match is None:  # a bare default: ${opt:stage, dev}
            return _literal(address)
        source, _, path = match.group(1), match.group(2), match.group(3).strip()
        if source == "self":
            return self._self(path, expression, file, text)
        if source == "opt":
            if path == "stage" and self.stage_option is not None:
                return self.stage_option
            return self.vars.get(path, _MISSING)
        if source == "sls":
            if path == "stage":
                return self.stage()
            if path == "instanceId":
                return "hubbub"
            raise InfraError(self.origin(expression, file, text), expression, "unknown sls value")
        if source == "env":
            return self.env.get(path, _MISSING)
        if source == "aws":
            if path == "region":
                return self.region()
            if path == "accountId":
                return self.account_id
            raise InfraError(self.origin(expression, file, text), expression, "unknown aws value")
        if source == "param":
            return self._param(path)
        override = self.vars.get(f"{source}:{path}", _MISSING)
        if override is not _MISSING:
            return override
        if source in _REMOTE:
            return _MISSING  # a default may follow; else _not_found explains
        raise InfraError(
            self.origin(expression, file, text),
            expression,
            f"hubbub does not know the variable source {source!r}",
            f'pass --var "{source}:{path}=VALUE" or [import] vars = {{ "{source}:{path}" = "…" }}',
        )

    def _self(self, path: str, expression: str, file: Path, text: str) -> Any:
        if path in self._resolving:
            raise InfraError(
                self.origin(expression, file, text), expression, "refers to itself (a cycle)"
            )
        value = _lookup(self.config, path)
        if value is _MISSING:
            return _MISSING
        self._resolving.add(path)
        try:
            return self.resolve(value)
        finally:
            self._resolving.discard(path)

    def _param(self, name: str) -> Any:
        if name in self.vars:
            return self.vars[name]
        params = self.config.get("params") or self.config.get("stages") or {}
        for stage in (self.stage(), "default"):
            found = _lookup(params, f"{stage}.{name}")
            if found is _MISSING:
                found = _lookup(params, f"{stage}.params.{name}")  # v4 stages: {dev: {params:}}
            if found is not _MISSING:
                return self.resolve(found)
        return _MISSING

    def _file(self, address: str, expression: str, file: Path, text: str) -> Any:
        match = _FILE.match(address)
        if match is None:
            raise InfraError(self.origin(expression, file, text), expression, "bad file() form")
        name, path = match.group(1).strip().strip("'\""), (match.group(2) or "").strip()
        target = (file.parent / name).resolve()
        if target.suffix in (".js", ".cjs", ".mjs", ".ts"):
            raise InfraError(
                self.origin(expression, file, text),
                expression,
                "hubbub does not run JavaScript variable files",
                f'pass --var "file({name}):{path}=VALUE"',
            )
        override = self.vars.get(f"file({name}):{path}" if path else f"file({name})", _MISSING)
        if override is not _MISSING:
            return override
        if not target.is_file():
            return _MISSING
        if target not in self._files:
            content = target.read_text()
            if target.suffix == ".json":
                try:
                    data: Any = json.loads(content)
                except json.JSONDecodeError as e:
                    raise InfraError(Origin(target, e.lineno), "", f"not valid JSON: {e}") from None
            else:
                data = load_yaml(content, target)
            self._files[target] = (data, content)
        data, content = self._files[target]
        value = _lookup(data, path) if path else data
        if value is _MISSING:
            return _MISSING
        return self.resolve(value, target, content)

    def _not_found(self, source: str, expression: str, file: Path, text: str) -> InfraError:
        origin = self.origin(expression, file, text)
        match = _SOURCE.match(source)
        kind, path = (match.group(1), match.group(3).strip()) if match else ("", source)
        if kind in _REMOTE:
            return InfraError(
                origin,
                expression,
                f"hubbub can't read {_REMOTE[kind]}",
                f'pass --var "{kind}:{path}=VALUE" or [import] vars = {{ "{kind}:{path}" = "…" }}',
            )
        if kind == "opt":
            return InfraError(
                origin, expression, f"no value for option {path!r}", f"pass --var {path}=VALUE"
            )
        if kind == "env":
            return InfraError(
                origin, expression, f"the environment variable {path} is not set", f"set {path}"
            )
        if kind == "param":
            return InfraError(
                origin, expression, f"no parameter {path!r}", f"pass --var {path}=VALUE"
            )
        if source.startswith("file("):
            return InfraError(origin, expression, "the file or the key in it does not exist")
        return InfraError(origin, expression, f"{source} has no value")


def _variables_in(value: str) -> list[tuple[int, int]]:
    """The spans of the outermost ``${…}`` in ``value`` (nesting counted)."""
    spans: list[tuple[int, int]] = []
    i = 0
    while (start := value.find("${", i)) >= 0:
        depth, j = 0, start
        while j < len(value):
            if value.startswith("${", j):
                depth += 1
                j += 2
                continue
            if value[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth != 0:
            break  # unclosed: left as text
        spans.append((start, j + 1))
        i = j + 1
    return spans


def _split_commas(inner: str) -> list[str]:
    """Split ``source:address, default, …`` at commas outside quotes, parentheses and ``${}``."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(inner):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return parts


def _lookup(data: Any, path: str) -> Any:
    """``a.b.0.c`` in nested maps and lists, or _MISSING."""
    for key in path.split(".") if path else []:
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return _MISSING
    return data


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Mapping, list)):
        return json.dumps(value)
    return str(value)

"""The module tree of a Terraform configuration, and what its names refer to.

A :class:`Module` holds one folder's blocks (the root module, or a local ``module`` block's
``source``); its :meth:`Module.lookup` answers the root names of references (``var``, ``local``,
``path``, ``data``, ``module``, resource types) for :class:`hubbub.infra.hcl.Evaluator`. An
:class:`Instance` is one resource or data source present once; its attributes are its own
arguments or what the :class:`Configuration` (the reader) computes for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hubbub.infra import hcl
from hubbub.infra.hcl import Attribute, Block, Evaluator, Namespace, to_string
from hubbub.infra.model import InfraError, Origin, ReadOptions


class Configuration(Protocol):
    """What the modules need from the reader."""

    options: ReadOptions
    folder: Path  # the root module's folder: path.root, and where relative paths start

    def computed(self, instance: Instance, name: str) -> Any: ...

    def variable_value(self, module: Module, block: Block) -> Any: ...

    def instances(self, module: Module, block: Block, kind: str) -> list[Instance]: ...


@dataclass(eq=False)
class Instance(Namespace):
    """One resource or data source, present once (count/for_each picked one or none)."""

    module: Module
    block: Block
    kind: str  # "resource" / "data"
    bindings: dict[str, Any]

    @property
    def type(self) -> str:
        return self.block.labels[0]

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        return f"{self.module.prefix}{prefix}{self.type}.{self.block.labels[1]}"

    @property
    def origin(self) -> Origin:
        return Origin(self.block.source.file, self.block.line, self.address)

    def has(self, name: str) -> bool:
        return name in self.block.attributes

    def get(self, name: str, default: Any = None) -> Any:
        attribute = self.block.attributes.get(name)
        if attribute is None:
            return default
        return Evaluator(self.module.lookup, self.bindings).attribute(attribute)

    def text(self, name: str, default: str = "") -> str:
        return to_string(self.get(name, default))

    def nested(self, name: str) -> list[Nested]:
        return [Nested(self, block) for block in self.block.children(name)]

    def attr(self, name: str, at: Origin) -> Any:
        reader = self.module.reader
        override = reader.options.vars.get(f"{self.address}.{name}")
        if override is not None:
            return override
        computed = reader.computed(self, name)
        if computed is not None:
            return computed
        if self.has(name):
            return self.get(name)
        raise InfraError(
            at,
            at.what,
            f"hubbub can't know {name!r} of {self.address} before it exists in AWS",
            f'pass --var "{self.address}.{name}=VALUE"',
        )

    def index(self, key: Any, at: Origin) -> Any:
        raise InfraError(at, at.what, f"{self.address} is a single resource, not a list")


@dataclass
class Nested:
    """A nested block (``environment {}``, ``attribute {}``) read with its resource's scope."""

    instance: Instance
    block: Block

    def get(self, name: str, default: Any = None) -> Any:
        attribute = self.block.attributes.get(name)
        if attribute is None:
            return default
        return Evaluator(self.instance.module.lookup, self.instance.bindings).attribute(attribute)

    def nested(self, name: str) -> list[Nested]:
        return [Nested(self.instance, block) for block in self.block.children(name)]


class Names(Namespace):
    """A namespace answered by a function (``var``, ``local``, ``module``, a resource type)."""

    def __init__(self, answer: Callable[[str, Origin], Any]) -> None:
        self.answer = answer

    def attr(self, name: str, at: Origin) -> Any:
        return self.answer(name, at)

    def index(self, key: Any, at: Origin) -> Any:
        return self.answer(str(key), at)


class ByName(Mapping[str, Instance]):
    """The resources of one type by a name argument, evaluated only when looked up: a function
    whose name can't be known locally only matters if a route names it."""

    def __init__(self, instances: list[Instance], kind: str, argument: str) -> None:
        self._pending = [i for i in instances if i.type == kind]
        self._argument = argument
        self._found: dict[str, Instance] = {}

    def _more(self) -> bool:
        while self._pending:
            instance = self._pending.pop(0)
            try:
                name = instance.text(self._argument)
            except InfraError:
                continue
            self._found.setdefault(name, instance)
            return True
        return False

    def __getitem__(self, name: str) -> Instance:
        while name not in self._found:
            if not self._more():
                raise KeyError(name)
        return self._found[name]

    def __iter__(self) -> Iterator[str]:
        while self._more():
            pass
        return iter(self._found)

    def __len__(self) -> int:
        return len(list(iter(self)))


class Module:
    def __init__(
        self,
        reader: Configuration,
        folder: Path,
        files: list[Path],
        prefix: str,
        inputs: Mapping[str, Callable[[], Any]],
    ) -> None:
        self.reader, self.folder, self.prefix, self.inputs = reader, folder, prefix, inputs
        self.variables: dict[str, Block] = {}
        self.locals: dict[str, Attribute] = {}
        self.blocks: dict[tuple[str, str, str], Block] = {}  # (kind, type, name)
        self.modules: dict[str, Block] = {}
        self.outputs: dict[str, Block] = {}
        self.providers: list[Block] = []
        for file in files:
            for block in hcl.parse(file):
                self._add(block)
        self._values: dict[str, Any] = {}
        self._evaluating: set[str] = set()
        self._children: dict[str, Module | None] = {}

    def _add(self, block: Block) -> None:
        if block.type == "variable" and block.labels:
            self.variables[block.labels[0]] = block
        elif block.type == "locals":
            self.locals.update(block.attributes)
        elif block.type in ("resource", "data") and len(block.labels) == 2:
            self.blocks[(block.type, block.labels[0], block.labels[1])] = block
        elif block.type == "module" and block.labels:
            self.modules[block.labels[0]] = block
        elif block.type == "output" and block.labels:
            self.outputs[block.labels[0]] = block
        elif block.type == "provider":
            self.providers.append(block)

    # -- names --------------------------------------------------------------------------------

    def lookup(self, name: str, at: Origin) -> Any:
        if name == "var":
            return Names(self.variable)
        if name == "local":
            return Names(self.local)
        if name == "path":
            root = str(self.reader.folder)
            return {"module": str(self.folder), "root": root, "cwd": root}
        if name == "terraform":
            return {"workspace": "default"}
        if name == "data":
            return Names(
                lambda kind, _: Names(lambda label, at: self.reference("data", kind, label, at))
            )
        if name == "module":
            return Names(self.module_output)
        if any(kind == name for _, kind, _ in self.blocks):
            return Names(lambda label, at: self.reference("resource", name, label, at))
        if name in ("count", "each", "self"):
            raise InfraError(at, at.what, f"{name} is not available here")
        raise InfraError(at, at.what, f"no resource type or name {name!r} in these files")

    def variable(self, name: str, at: Origin) -> Any:
        key = f"var.{name}"
        if key not in self._values:
            block = self.variables.get(name)
            if block is None:
                raise InfraError(at, at.what, f"no variable {name!r} is declared")
            self._values[key] = self.reader.variable_value(self, block)
        return self._values[key]

    def local(self, name: str, at: Origin) -> Any:
        key = f"local.{name}"
        if key not in self._values:
            attribute = self.locals.get(name)
            if attribute is None:
                raise InfraError(at, at.what, f"no local value {name!r}")
            if key in self._evaluating:
                raise InfraError(at, at.what, "refers to itself (a cycle)")
            self._evaluating.add(key)
            try:
                self._values[key] = Evaluator(self.lookup).attribute(attribute)
            finally:
                self._evaluating.discard(key)
        return self._values[key]

    def reference(self, kind: str, type_: str, label: str, at: Origin) -> Any:
        block = self.blocks.get((kind, type_, label))
        address = f"{self.prefix}{'data.' if kind == 'data' else ''}{type_}.{label}"
        if block is None:
            raise InfraError(at, at.what, f"no {address} in these files")
        picked = self.reader.instances(self, block, kind)
        if "count" in block.attributes:
            return picked
        if "for_each" in block.attributes:
            return {instance.bindings["each"]["key"]: instance for instance in picked}
        if not picked:  # pragma: no cover - only count/for_each drop an instance
            raise InfraError(at, at.what, f"{address} does not exist")
        return picked[0]

    def child(self, name: str) -> Module | None:
        """The local module ``name`` (None: its source is not a local folder)."""
        if name not in self._children:
            block = self.modules[name]
            source = to_string(Evaluator(self.lookup).attribute(block.attributes["source"]))
            if not source.startswith(("./", "../")):
                self._children[name] = None
                return None
            folder = (self.folder / source).resolve()
            files = sorted(folder.glob("*.tf"))
            if not files:
                raise InfraError(
                    Origin(block.source.file, block.line, f"module.{name}"),
                    f'source = "{source}"',
                    "no .tf files in that folder",
                )
            evaluator = Evaluator(self.lookup)
            inputs = {
                key: (lambda attribute=attribute: evaluator.attribute(attribute))
                for key, attribute in block.attributes.items()
                if key not in ("source", "version", "count", "for_each", "providers", "depends_on")
            }
            self._children[name] = Module(
                self.reader, folder, files, f"{self.prefix}module.{name}.", inputs
            )
        return self._children[name]

    def module_output(self, name: str, at: Origin) -> Any:
        if name not in self.modules:
            raise InfraError(at, at.what, f"no module {name!r} in these files")
        child = self.child(name)

        def output(key: str, at: Origin) -> Any:
            override = self.reader.options.vars.get(f"{self.prefix}module.{name}.{key}")
            if override is not None:
                return override
            if child is None:
                raise InfraError(
                    at,
                    at.what,
                    f"module.{name} is not a local folder; hubbub reads only local modules",
                    f'pass --var "{self.prefix}module.{name}.{key}=VALUE"',
                )
            block = child.outputs.get(key)
            if block is None or "value" not in block.attributes:
                raise InfraError(at, at.what, f"module.{name} has no output {key!r}")
            return Evaluator(child.lookup).attribute(block.attributes["value"])

        return Names(output)

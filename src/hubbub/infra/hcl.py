"""HCL2 files as blocks, and the evaluation of Terraform expressions in them.

python-hcl2 parses (the ``infra`` extra); its raw Lark tree, which keeps every expression and
its position, is turned into :class:`Block` s whose attributes stay unevaluated until a reader
asks for them. :class:`Evaluator` evaluates an expression: literals, strings with
interpolation, operators, conditionals, collections, ``for`` expressions, splats, the functions
real projects use on names and paths, and references, which it hands to its ``lookup`` (the
Terraform reader knows what ``var``, ``local``, ``aws_dynamodb_table`` … mean).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hubbub.infra.model import InfraError, Origin

# A node of python-hcl2's Lark tree (a lark Tree or Token): its shape is the grammar's
# (hcl2/hcl2.lark), which the pinned python-hcl2 range keeps; typed loosely on purpose.
Node = Any


class Namespace:
    """A value that references lead through: ``var``, ``aws_lambda_function.x``, ``module.m``."""

    def attr(self, name: str, at: Origin) -> Any:
        raise InfraError(at, at.what, f"has no attribute {name!r}")

    def index(self, key: Any, at: Origin) -> Any:
        raise InfraError(at, at.what, "can't be indexed")


@dataclass
class Attribute:
    name: str
    expression: Node
    source: Source
    line: int


@dataclass
class Block:
    type: str
    labels: list[str]
    source: Source
    line: int
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def children(self, kind: str) -> list[Block]:
        return [block for block in self.blocks if block.type == kind]


@dataclass(frozen=True)
class Source:
    """One parsed file: its path and text (to quote an expression in an error)."""

    file: Path
    text: str

    def origin(self, node: Node | int | None, what: str = "") -> Origin:
        if isinstance(node, int) or node is None:
            return Origin(self.file, node, what)
        return Origin(self.file, _line(node), what)

    def quote(self, node: Node) -> str:
        meta = getattr(node, "meta", None)
        if meta is not None and not meta.empty:
            return " ".join(self.text[meta.start_pos : meta.end_pos].split())
        return str(node)


def parse(file: Path) -> list[Block]:
    """The top-level blocks of one ``.tf`` (or attributes-only ``.tfvars``) file."""
    try:
        import hcl2  # noqa: PLC0415 - optional dependency
        from lark.exceptions import UnexpectedInput  # noqa: PLC0415 - optional dependency
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise InfraError(
            Origin(file),
            "",
            "reading Terraform needs python-hcl2",
            "install hubbub's infra extra: pip install 'hubbub[infra]'",
        ) from None
    text = file.read_text()
    source = Source(file, text)
    try:
        tree = hcl2.parses_to_tree(text)
    except UnexpectedInput as e:
        raise InfraError(Origin(file, e.line), "", f"not valid HCL: {_first_line(e)}") from None
    return _body(tree.children[0], source, file)


def parse_attributes(file: Path) -> dict[str, Attribute]:
    """The attributes of a ``.tfvars`` file (name = value lines, no blocks)."""
    attributes: dict[str, Attribute] = {}
    for block in parse(file):
        if block.type != "":
            raise InfraError(Origin(file, block.line), block.type, "a .tfvars file holds no blocks")
        attributes.update(block.attributes)
    return attributes


def parse_expression(text: str, file: Path) -> Attribute:
    """One expression given outside a file (a ``--var`` value), as an attribute to evaluate."""
    import hcl2  # noqa: PLC0415 - optional dependency
    from lark.exceptions import UnexpectedInput  # noqa: PLC0415 - optional dependency

    line = f"x = {text}\n"
    try:
        tree = hcl2.parses_to_tree(line)
    except UnexpectedInput as e:
        raise InfraError(Origin(file), text, f"not valid HCL: {_first_line(e)}") from None
    (block,) = _body(tree.children[0], Source(file, line), file)
    return block.attributes["x"]


def _first_line(error: Exception) -> str:
    return str(error).split("\n", 1)[0]


def _line(node: Node) -> int | None:
    meta = getattr(node, "meta", None)
    if meta is not None and not meta.empty:
        return int(meta.line)
    line = getattr(node, "line", None)
    return int(line) if line is not None else None


def _parts(node: Node) -> list[Node]:
    """A tree's children without newlines and comments."""
    return [
        child
        for child in node.children
        if not (hasattr(child, "data") and child.data == "new_line_or_comment")
    ]


def _trees(node: Node) -> list[Node]:
    return [child for child in _parts(node) if hasattr(child, "data")]


def _name(node: Node) -> str:
    """An identifier, keyword or literal_value used as a name, or a quoted label."""
    if node.data == "string":
        return "".join(str(part.children[0]) for part in _trees(node))
    return str(node.children[0])


def _body(body: Node, source: Source, file: Path) -> list[Block]:
    blocks: list[Block] = []
    loose = Block("", [], source, 1)  # attributes at the top level (.tfvars)
    for item in _trees(body):
        if item.data == "attribute":
            name, expression = _name(item.children[0]), _trees(item)[-1]
            loose.attributes[name] = Attribute(name, expression, source, _line(item) or 1)
        elif item.data == "block":
            trees = _trees(item)
            inner = trees[-1]
            block = Block(
                _name(trees[0]), [_name(t) for t in trees[1:-1]], source, _line(item) or 1
            )
            for child in _body(inner, source, file):
                if child.type == "":
                    block.attributes.update(child.attributes)
                else:
                    block.blocks.append(child)
            blocks.append(block)
    if loose.attributes:
        blocks.append(loose)
    return blocks


# -- evaluation -------------------------------------------------------------------------------


Lookup = Callable[[str, Origin], Any]


class Evaluator:
    """Evaluates expressions of one module; ``lookup`` answers the root names of references."""

    def __init__(self, lookup: Lookup, bindings: Mapping[str, Any] | None = None) -> None:
        self.lookup = lookup
        self.bindings = dict(bindings or {})

    def attribute(self, attribute: Attribute) -> Any:
        return self.evaluate(attribute.expression, attribute.source)

    def evaluate(self, node: Node, source: Source) -> Any:
        kind = node.data if hasattr(node, "data") else None
        if kind is None:
            raise self.error(node, source, "not an expression")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            raise self.error(node, source, "hubbub does not evaluate this expression")
        return method(node, source)

    def error(self, node: Node, source: Source, problem: str, hint: str = "") -> InfraError:
        return InfraError(source.origin(node), source.quote(node), problem, hint)

    def _expr_term(self, node: Node, source: Source) -> Any:
        trees = _trees(node)
        return self.evaluate(trees[0], source)

    def _int_lit(self, node: Node, source: Source) -> Any:
        return int(str(node.children[0]))

    def _float_lit(self, node: Node, source: Source) -> Any:
        return float(str(node.children[0]))

    def _literal_value(self, node: Node, source: Source) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _identifier(self, node: Node, source: Source) -> Any:
        name = str(node.children[0])
        if name in self.bindings:
            return self.bindings[name]
        return self.lookup(name, source.origin(node, source.quote(node)))

    def _string(self, node: Node, source: Source) -> Any:
        parts: list[str] = []
        for part in _trees(node):
            (child,) = part.children
            if hasattr(child, "data"):
                if child.data != "interpolation":
                    raise self.error(node, source, "hubbub does not evaluate template directives")
                value = self.evaluate(_trees(child)[0], source)
                if len(_trees(node)) == 1:
                    return value  # "${x}" keeps x's type, as Terraform does
                parts.append(to_string(value, partial(self.error, child, source, "not a string")))
            elif child.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                parts.append(str(child)[1:])
            else:
                parts.append(_unescape(str(child)))
        return "".join(parts)

    def _template_string(self, node: Node, source: Source) -> Any:
        return _unescape(str(node.children[0])[2:-2])

    def _heredoc_template(self, node: Node, source: Source) -> Any:
        return self._heredoc(node, source, trim=False)

    def _heredoc_template_trim(self, node: Node, source: Source) -> Any:
        return self._heredoc(node, source, trim=True)

    def _heredoc(self, node: Node, source: Source, trim: bool) -> Any:
        text = str(node.children[0])
        lines = text.split("\n")[1:-2]  # drop the <<EOT line and the closing marker
        if trim:
            indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
            lines = [x[indent:] for x in lines]
        body = "\n".join(lines) + "\n"
        if "${" not in body:
            return body
        # The grammar keeps a heredoc as one token: its interpolations are parsed here.
        import hcl2  # noqa: PLC0415 - optional dependency

        quoted = json.dumps(body)  # "$${" stays an escape: it means the same in a quoted string
        tree = hcl2.parses_to_tree(f"x = {quoted}\n")
        return self.evaluate(_trees(_trees(tree.children[0])[0])[-1], source)

    def _tuple(self, node: Node, source: Source) -> Any:
        return [self.evaluate(child, source) for child in _trees(node)]

    def _object(self, node: Node, source: Source) -> Any:
        result: dict[str, Any] = {}
        for element in _trees(node):
            key_node, value_node = _trees(element)
            (key_expr,) = _trees(key_node) or [key_node.children[0]]
            if hasattr(key_expr, "data") and key_expr.data == "keyword":  # { in = 1 }
                key = str(key_expr.children[0])
            elif hasattr(key_expr, "data") and _is_bare_identifier(key_expr):
                key = str(_trees(key_expr)[0].children[0])
            elif hasattr(key_expr, "data"):
                key = to_string(
                    self.evaluate(key_expr, source),
                    partial(self.error, key_expr, source, "not a key"),
                )
            else:
                key = str(key_expr)
            result[key] = self.evaluate(value_node, source)
        return result

    def _conditional(self, node: Node, source: Source) -> Any:
        condition, yes, no = _trees(node)
        chosen = self.evaluate(condition, source)
        if not isinstance(chosen, bool):
            raise self.error(condition, source, "a condition must be true or false")
        return self.evaluate(yes if chosen else no, source)

    def _unary_op(self, node: Node, source: Source) -> Any:
        operator, operand = str(node.children[0]), _trees(node)[0]
        value = self.evaluate(operand, source)
        if operator == "!":
            return not _bool(value, lambda: self.error(node, source, "not a bool"))
        return -_number(value, lambda: self.error(node, source, "not a number"))

    def _binary_op(self, node: Node, source: Source) -> Any:
        left_node, term = _trees(node)
        operator_node, right_node = _trees(term)
        operator = str(operator_node.children[0])
        left = self.evaluate(left_node, source)
        fail = lambda: self.error(node, source, f"bad operands for {operator}")  # noqa: E731
        if operator == "&&":
            return _bool(left, fail) and _bool(self.evaluate(right_node, source), fail)
        if operator == "||":
            return _bool(left, fail) or _bool(self.evaluate(right_node, source), fail)
        right = self.evaluate(right_node, source)
        if operator == "==":
            return _equal(left, right)
        if operator == "!=":
            return not _equal(left, right)
        a, b = _number(left, fail), _number(right, fail)
        if operator in ("/", "%") and b == 0:
            raise self.error(node, source, "division by zero")
        operations: dict[str, Callable[[float, float], Any]] = {
            "+": lambda x, y: x + y,
            "-": lambda x, y: x - y,
            "*": lambda x, y: x * y,
            "/": lambda x, y: x / y,
            "%": math.fmod,
            "<": lambda x, y: x < y,
            ">": lambda x, y: x > y,
            "<=": lambda x, y: x <= y,
            ">=": lambda x, y: x >= y,
        }
        result = operations[operator](a, b)
        if isinstance(result, float) and result.is_integer() and operator != "/":
            return int(result)
        return result

    def _get_attr_expr_term(self, node: Node, source: Source) -> Any:
        base_node, get_attr = _trees(node)
        return self._get(self.evaluate(base_node, source), _name(_trees(get_attr)[0]), node, source)

    def _get(self, value: Any, name: str, node: Node, source: Source) -> Any:
        if isinstance(value, Mapping):
            if name not in value:
                raise self.error(node, source, f"has no attribute {name!r}")
            return value[name]
        if isinstance(value, Namespace):
            return value.attr(name, source.origin(node, source.quote(node)))
        raise self.error(node, source, f"can't read {name!r} of a {_type(value)}")

    def _index_expr_term(self, node: Node, source: Source) -> Any:
        base_node, index = _trees(node)
        return self._index(self.evaluate(base_node, source), index, node, source)

    def _index(self, value: Any, index: Node, node: Node, source: Source) -> Any:
        if index.data == "short_index":
            key: Any = int(str(index.children[1]))
        else:
            key = self.evaluate(_trees(index)[0], source)
        if isinstance(value, Namespace):
            return value.index(key, source.origin(node, source.quote(node)))
        try:
            if isinstance(value, list):
                return value[int(key)]
            if isinstance(value, Mapping):
                return value[str(key)]
        except (IndexError, KeyError, ValueError, TypeError):
            raise self.error(node, source, f"has no element {key!r}") from None
        raise self.error(node, source, f"can't index a {_type(value)}")

    def _attr_splat_expr_term(self, node: Node, source: Source) -> Any:
        return self._splat(node, source)

    def _full_splat_expr_term(self, node: Node, source: Source) -> Any:
        return self._splat(node, source)

    def _splat(self, node: Node, source: Source) -> Any:
        base_node, splat = _trees(node)
        base = self.evaluate(base_node, source)
        items = base if isinstance(base, list) else [] if base is None else [base]
        results = []
        for item in items:
            value = item
            for step in _trees(splat):
                if step.data == "get_attr":
                    value = self._get(value, _name(_trees(step)[0]), node, source)
                else:
                    value = self._index(value, step, node, source)
            results.append(value)
        return results

    def _function_call(self, node: Node, source: Source) -> Any:
        trees = _trees(node)
        name = ":".join(_name(t) for t in trees if t.data == "identifier")
        arguments_node = next((t for t in trees if t.data == "arguments"), None)
        argument_nodes = _trees(arguments_node) if arguments_node is not None else []
        expand = arguments_node is not None and any(
            not hasattr(c, "data") and c.type == "ELLIPSIS" for c in arguments_node.children
        )
        function = FUNCTIONS.get(name)
        if name == "try":
            for argument in argument_nodes:
                try:
                    return self.evaluate(argument, source)
                except InfraError:
                    continue
            raise self.error(node, source, "no argument of try() could be evaluated")
        if name == "can":
            try:
                self.evaluate(argument_nodes[0], source)
            except InfraError:
                return False
            return True
        if function is None:
            raise self.error(node, source, f"hubbub does not evaluate the function {name}()")
        arguments = [self.evaluate(a, source) for a in argument_nodes]
        if expand and arguments:
            arguments = arguments[:-1] + list(arguments[-1])
        try:
            return function(*arguments)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise self.error(node, source, f"{name}(): {e}") from None

    def _for_tuple_expr(self, node: Node, source: Source) -> Any:
        return [item for _, item in self._for(node, source, object_form=False)]

    def _for_object_expr(self, node: Node, source: Source) -> Any:
        result: dict[str, Any] = {}
        for key, value in self._for(node, source, object_form=True):
            result[to_string(key, lambda: self.error(node, source, "not a key"))] = value
        return result

    def _for(self, node: Node, source: Source, object_form: bool) -> Iterator[tuple[Any, Any]]:
        trees = _trees(node)
        intro = trees[0]
        names = [str(t.children[0]) for t in _trees(intro) if t.data == "identifier"]
        collection = self.evaluate(next(t for t in _trees(intro) if t.data != "identifier"), source)
        condition = next((t for t in trees if t.data == "for_cond"), None)
        bodies = [t for t in trees[1:] if t.data != "for_cond"]
        pairs = (
            list(collection.items())
            if isinstance(collection, Mapping)
            else list(enumerate(collection))
        )
        for key, value in pairs:
            bound = dict(zip(names, [key, value] if len(names) == 2 else [value], strict=True))
            inner = Evaluator(self.lookup, {**self.bindings, **bound})
            if condition is not None and not inner.evaluate(_trees(condition)[0], source):
                continue
            if object_form:
                yield inner.evaluate(bodies[0], source), inner.evaluate(bodies[1], source)
            else:
                yield None, inner.evaluate(bodies[0], source)


def _is_bare_identifier(node: Node) -> bool:
    trees = _trees(node)
    return node.data == "expr_term" and len(trees) == 1 and trees[0].data == "identifier"


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return str(json.loads(f'"{text}"'))


def _type(value: Any) -> str:
    return {str: "string", bool: "bool", int: "number", float: "number", list: "list"}.get(
        type(value), "object" if isinstance(value, Mapping) else type(value).__name__
    )


def _bool(value: Any, fail: Callable[[], InfraError]) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise fail()


def _number(value: Any, fail: Callable[[], InfraError]) -> float:
    if isinstance(value, bool):
        raise fail()
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value) if "." in str(value) else int(value)
    except (TypeError, ValueError):
        raise fail() from None


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return bool(left == right)


def to_string(value: Any, fail: Callable[[], InfraError] | None = None) -> str:
    """Terraform's string conversion of a primitive."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    if value is None:
        return ""
    if fail is not None:
        raise fail()
    return json.dumps(value)


# -- functions --------------------------------------------------------------------------------


def _format(spec: str, *values: Any) -> str:
    values_left = list(values)

    def replace(match: re.Match[str]) -> str:
        verb = match.group(2)
        if verb == "%":
            return "%"
        value = values_left.pop(0)
        if verb == "q":
            return json.dumps(to_string(value))
        if verb == "d":
            return f"%{match.group(1)}d" % int(value)
        if verb in ("f", "e", "g"):
            return f"%{match.group(1)}{verb}" % float(value)
        return to_string(value) if not isinstance(value, (list, dict)) else json.dumps(value)

    return re.sub(r"%([-+ #0-9.]*)([%sdqvtfegbox])", replace, spec)


def _lookup(mapping: Mapping[str, Any], key: str, *default: Any) -> Any:
    if key in mapping:
        return mapping[key]
    if default:
        return default[0]
    raise KeyError(f"no key {key!r} and no default")


def _merge(*maps: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in maps:
        if item is not None:
            result.update(item)
    return result


def _one(items: list[Any]) -> Any:
    if len(items) > 1:
        raise ValueError("more than one element")
    return items[0] if items else None


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise ValueError("all arguments are null or empty")


def _element(items: list[Any], index: int) -> Any:
    return items[int(index) % len(items)]


def _regex_replace(text: str, old: str, new: str) -> str:
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        return re.sub(old[1:-1], re.sub(r"\$(\d)", r"\\\1", new), text)
    return text.replace(old, new)


def _distinct(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _flatten(items: list[Any]) -> list[Any]:
    result: list[Any] = []
    for item in items:
        result.extend(_flatten(item) if isinstance(item, list) else [item])
    return result


def _tonumber(value: Any) -> float:
    return _number(value, lambda: InfraError(Origin(Path()), str(value), "not a number"))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "format": _format,
    "join": lambda separator, *lists: separator.join(to_string(x) for xs in lists for x in xs),
    "split": lambda separator, text: text.split(separator),
    "lookup": _lookup,
    "replace": _regex_replace,
    "trimprefix": lambda text, prefix: text.removeprefix(prefix),
    "trimsuffix": lambda text, suffix: text.removesuffix(suffix),
    "trimspace": lambda text: text.strip(),
    "trim": lambda text, chars: text.strip(chars),
    "lower": lambda text: text.lower(),
    "upper": lambda text: text.upper(),
    "title": lambda text: text.title(),
    "substr": lambda text, offset, length: text[offset : None if length < 0 else offset + length],
    "startswith": lambda text, prefix: text.startswith(prefix),
    "endswith": lambda text, suffix: text.endswith(suffix),
    "merge": _merge,
    "concat": lambda *lists: [x for xs in lists for x in xs],
    "coalesce": _coalesce,
    "compact": lambda items: [x for x in items if x not in (None, "")],
    "contains": lambda items, value: value in items,
    "element": _element,
    "length": len,
    "keys": sorted,
    "values": lambda mapping: [mapping[k] for k in sorted(mapping)],
    "one": _one,
    "distinct": _distinct,
    "flatten": _flatten,
    "sort": sorted,
    "min": min,
    "max": max,
    "tostring": to_string,
    "tonumber": _tonumber,
    "tobool": lambda value: value if isinstance(value, bool) else value == "true",
    "tolist": list,
    "toset": _distinct,
    "tomap": dict,
    "jsonencode": lambda value: json.dumps(value, separators=(",", ":")),
    "jsondecode": json.loads,
    "basename": lambda path: Path(path).name,
    "dirname": lambda path: str(Path(path).parent),
    "abspath": lambda path: str(Path(path).resolve()),
    "file": lambda path: Path(path).read_text(),
    "fileexists": lambda path: Path(path).is_file(),
    "zipmap": lambda keys, values: dict(zip(keys, values, strict=True)),
}

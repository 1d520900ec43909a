"""Route selection expressions: which route an inbound frame goes to (docs/compatibility.md,
"Route selection").

Theory of operation
-------------------
An expression is compiled once (at config load) into a :class:`RouteSelector`: a sequence of
static text and JSON paths into the frame. :meth:`RouteSelector.evaluate` parses the frame once
with orjson and concatenates the parts (evaluated once, never re-scanned for variables).
:func:`select_route` then picks the route: exact, case-sensitive match, else ``$default``, else
None (the caller answers with the Forbidden frame).

Syntax accepted
---------------
- ``$request.body.<path>`` and ``${request.body.<path>}``; ``$request.body`` alone is the whole
  body. Use braces to put static text right after a variable.
- Path steps: ``.name``, ``['quoted name']`` / ``["quoted name"]`` (backslash escapes the quote
  and itself), ``[0]`` array indexes (``[-1]`` counts from the end). Unbraced dot names are
  ``[A-Za-z0-9_-]`` and other word characters; inside braces a name runs to the next ``.``, ``[``,
  ``]`` or ``}``.
- Static text around and between variables: ``${request.body.service}/${request.body.action}``.
- ``\\$`` is a literal ``$`` and ``\\\\`` a literal backslash, so ``\\$default`` is ``$default``;
  any other backslash is kept as is.
- Rejected with ValueError: any other ``$`` variable (``$context.x``, ``$request.header.x``, an
  unescaped ``$default``), wildcards, filters, slices, recursive descent, unclosed brackets.

Stringification (hubbub's reading of AWS's "the result is stringified")
-----------------------------------------------------------------------
- a missing path or JSON ``null`` -> ``""``;
- a string -> itself; ``true``/``false`` -> ``true``/``false``;
- a number -> its JSON text (``1``, ``1.5``; integers beyond 64 bits arrive as floats);
- an array -> ``[a, b]`` and an object -> ``{k=v, k2=v2}``, Java's ``toString`` style, items
  stringified the same way except that a nested ``null`` prints as ``null`` (as Java does).

A frame that is not valid JSON (or not UTF-8, or nested deeper than orjson's 1024 levels) evaluates
to None, which :func:`select_route` sends to ``$default``. A valid JSON scalar body is JSON: its
paths are simply missing.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Any, TypeAlias

import orjson

__all__ = ["RouteSelector", "compile_route_selection", "select_route"]

Step: TypeAlias = str | int  # str: object key, int: array index
Path: TypeAlias = tuple[Step, ...]
Part: TypeAlias = str | Path  # static text, or a path into the body

_PREFIX = "request.body"
_UNBRACED_NAME = re.compile(r"[\w-]+")
_BRACED_NAME = re.compile(r"[^.\[\]}]+")
_INDEX = re.compile(r"-?[0-9]+")
_SYSTEM_ROUTES = frozenset({"$connect", "$disconnect"})
_MISSING: Any = object()


class RouteSelector:
    """A compiled route selection expression; see :func:`compile_route_selection`."""

    __slots__ = ("_fast", "_name", "_needle", "_needle_bytes", "_parts", "expression")

    def __init__(self, expression: str, parts: tuple[Part, ...]) -> None:
        self.expression = expression
        self._parts = parts
        # The common case ($request.body.action, $request.body.a.b) skips the general join.
        self._fast: tuple[str, ...] | None = None
        if len(parts) == 1 and isinstance(parts[0], tuple):
            names = tuple(step for step in parts[0] if isinstance(step, str))
            if len(names) == len(parts[0]):
                self._fast = names
        # The first name of such a path as it must appear in any JSON text holding it (see
        # cannot_select): a key written with escapes would need a backslash.
        first = self._fast[0] if self._fast else None
        self._needle = None if first is None else '"' + first + '"'
        self._needle_bytes = None if self._needle is None else self._needle.encode("utf-8")
        # One name ($request.body.action, the default): select() looks it up itself.
        self._name = first if self._fast is not None and len(self._fast) == 1 else None

    def __repr__(self) -> str:
        return f"RouteSelector({self.expression!r})"

    def cannot_select(self, body: str | bytes) -> bool:
        """True when ``body`` cannot hold the expression's key, told without parsing it.

        For ``$request.body.name...`` a body without the text ``"name"`` and without a backslash
        has no key ``name`` at any depth, so :meth:`evaluate` would give ``""`` (JSON without
        the key) or None (not JSON): no route key either way. Chat clients send such messages
        to ``$default`` all the time; this saves their JSON parse.
        """
        if type(body) is str:
            needle = self._needle
            return needle is not None and needle not in body and "\\" not in body
        needle_bytes = self._needle_bytes
        return needle_bytes is not None and needle_bytes not in body and b"\\" not in body

    def evaluate(self, body: str | bytes) -> str | None:
        """Return the route key the frame selects, or None when ``body`` is not valid JSON."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        fast = self._fast
        if fast is not None:
            value = document
            for name in fast:
                if type(value) is not dict:
                    return ""
                value = value.get(name, _MISSING)
            if type(value) is str:
                return value
            return _stringify(value, top=True)
        pieces: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                pieces.append(part)
            else:
                pieces.append(_stringify(_lookup(document, part), top=True))
        return "".join(pieces)

    def select(self, body: str | bytes, routes: Container[str]) -> str | None:
        """:func:`select_route`: the route key that handles ``body``, or None (Forbidden).

        This runs once per message. For a one-name expression (``$request.body.action``) the
        steps of :meth:`cannot_select` and :meth:`evaluate` are written out here rather than
        called, and the route check follows: one Python call per message instead of three.
        """
        name = self._name
        if name is None:
            # A route named "" cannot be configured, but this takes any container: only skip
            # the parse when its "" (valid JSON without the key) could not select anything.
            skip = self.cannot_select(body) and "" not in routes
            key = None if skip else self.evaluate(body)
        elif (
            (self._needle not in body and "\\" not in body)  # type: ignore[operator]
            if type(body) is str
            else (self._needle_bytes not in body and b"\\" not in body)  # type: ignore[operator]
        ) and "" not in routes:
            key = None  # cannot hold the key: see cannot_select
        else:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:
                key = None
            else:
                value = document.get(name, _MISSING) if type(document) is dict else _MISSING
                key = value if type(value) is str else _stringify(value, top=True)
        if key is not None and key in routes and key not in _SYSTEM_ROUTES:
            return key
        return "$default" if "$default" in routes else None


def _lookup(document: Any, path: Path) -> Any:
    value = document
    for step in path:
        if isinstance(step, str):
            if type(value) is not dict:
                return _MISSING
            value = value.get(step, _MISSING)
        else:
            if type(value) is not list or not -len(value) <= step < len(value):
                return _MISSING
            value = value[step]
        if value is _MISSING:
            return _MISSING
    return value


# Deeper structures are cut off with "...": no route key is that deep, and plain recursion would
# hit Python's recursion limit on the ~1000-level documents orjson accepts.
_MAX_DEPTH = 64


def _stringify(value: Any, *, top: bool = False, depth: int = 0) -> str:
    if depth > _MAX_DEPTH:
        return "..."
    if value is _MISSING:
        return ""
    if value is None:
        return "" if top else "null"
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return orjson.dumps(value).decode("ascii")
    if type(value) is list:
        return "[" + ", ".join([_stringify(item, depth=depth + 1) for item in value]) + "]"
    if type(value) is dict:
        items = [f"{key}={_stringify(item, depth=depth + 1)}" for key, item in value.items()]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")  # pragma: no cover


class _Parser:
    """A single-pass scanner over one expression; raises ValueError naming the position."""

    def __init__(self, expression: str) -> None:
        self.text = expression
        self.pos = 0

    def fail(self, problem: str) -> ValueError:
        return ValueError(
            f"invalid route selection expression {self.text!r}: {problem} at position {self.pos}"
        )

    def parse(self) -> tuple[Part, ...]:
        text, end = self.text, len(self.text)
        parts: list[Part] = []
        static: list[str] = []
        while self.pos < end:
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < end and text[self.pos + 1] in "$\\":
                static.append(text[self.pos + 1])
                self.pos += 2
            elif char == "$":
                if static:
                    parts.append("".join(static))
                    static = []
                parts.append(self.variable())
            else:
                static.append(char)
                self.pos += 1
        if static:
            parts.append("".join(static))
        return tuple(parts)

    def variable(self) -> Path:
        text = self.text
        self.pos += 1  # the "$"
        braced = text.startswith("{", self.pos)
        if braced:
            self.pos += 1
        if not text.startswith(_PREFIX, self.pos):
            raise self.fail(
                "only $request.body.<path> variables are supported (write \\$ for a literal $)"
            )
        self.pos += len(_PREFIX)
        if not braced and _UNBRACED_NAME.match(text, self.pos):
            raise self.fail("unknown variable; expected $request.body.<path>")
        path = self.path(braced)
        if braced:
            if not text.startswith("}", self.pos):
                raise self.fail("expected '}' closing '${'")
            self.pos += 1
        return path

    def path(self, braced: bool) -> Path:
        text, end = self.text, len(self.text)
        steps: list[Step] = []
        while self.pos < end:
            char = text[self.pos]
            if char == ".":
                self.pos += 1
                steps.append(self.name(braced))
            elif char == "[":
                self.pos += 1
                steps.append(self.bracket())
            else:
                break
        return tuple(steps)

    def name(self, braced: bool) -> str:
        match = (_BRACED_NAME if braced else _UNBRACED_NAME).match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a name after '.' (recursive descent is not supported)")
        name = match.group()
        if name == "*":
            raise self.fail("wildcards are not supported")
        self.pos = match.end()
        return name

    def bracket(self) -> Step:
        text = self.text
        if text.startswith(("'", '"'), self.pos):
            step: Step = self.quoted()
        else:
            match = _INDEX.match(text, self.pos)
            if match is None:
                raise self.fail("expected an index or a quoted name in '[...]'")
            step = int(match.group())
            self.pos = match.end()
        if not text.startswith("]", self.pos):
            raise self.fail("expected ']'")
        self.pos += 1
        return step

    def quoted(self) -> str:
        text, end = self.text, len(self.text)
        quote = text[self.pos]
        self.pos += 1
        chars: list[str] = []
        while self.pos < end:
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(chars)
            if char == "\\" and self.pos + 1 < end:
                self.pos += 1
                char = text[self.pos]
            chars.append(char)
            self.pos += 1
        raise self.fail("unterminated quoted name")


def compile_route_selection(expression: str) -> RouteSelector:
    """Compile a route selection expression such as ``$request.body.action``.

    Raises ValueError, naming the problem and its position, when the expression is malformed.
    """
    if not expression:
        raise ValueError("invalid route selection expression '': it is empty")
    return RouteSelector(expression, _Parser(expression).parse())


def select_route(selector: RouteSelector, body: str | bytes, routes: Container[str]) -> str | None:
    """Return the route key that handles ``body``, or None when nothing does (send Forbidden).

    The evaluated key must match a route exactly (case-sensitive); otherwise ``$default`` is used
    when it exists. ``$connect`` and ``$disconnect`` are never selected by a frame.
    """
    return selector.select(body, routes)

"""The exception tree drawn in hubbub.errors names every exception of the package.

Read from the source with ``ast``: every class that derives (through any chain of base names) from
``HubbubError`` must appear in the drawing, or, below ``ClientError``, in the client's own tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub.client.errors
import hubbub.errors
from hubbub.errors import (
    BlockingCallError,
    HubbubError,
    LimitExceededError,
    ManagementError,
    MethodNotAllowedError,
    NotFoundError,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "hubbub"


def _classes() -> dict[str, tuple[str, list[str]]]:
    """Class name -> (file, base names) for every class in the package."""
    found: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                found[node.name] = (str(path.relative_to(SRC)), bases)
    return found


def _descendants(classes: dict[str, tuple[str, list[str]]], root: str) -> set[str]:
    tree = {root}
    grew = True
    while grew:
        grew = False
        for name, (_, bases) in classes.items():
            if name not in tree and any(b.rpartition(".")[2] in tree for b in bases):
                tree.add(name)
                grew = True
    return tree - {root}


def test_every_hubbub_error_is_drawn_in_the_tree() -> None:
    classes = _classes()
    drawing = hubbub.errors.__doc__ or ""
    client_drawing = hubbub.client.errors.__doc__ or ""
    client = _descendants(classes, "ClientError")
    missing = [
        f"{name} ({classes[name][0]})"
        for name in sorted(_descendants(classes, "HubbubError"))
        if f" {name} " not in (client_drawing if name in client else drawing)
        and not (name in client and f" {name} " in drawing)
    ]
    assert missing == []


def test_exceptions_named_in_the_tree_are_defined() -> None:
    classes = _classes()
    drawn = {
        line.split("── ")[1].split()[0]
        for line in (hubbub.errors.__doc__ or "").splitlines()
        if "── " in line
    }
    assert drawn - set(classes) == set()
    assert "HubbubError" in classes


def test_moved_errors_keep_their_status_and_bases() -> None:
    assert (NotFoundError.status, NotFoundError.error_type) == (404, "NotFoundException")
    assert (MethodNotAllowedError.status, MethodNotAllowedError.error_type) == (
        405,
        "MethodNotAllowedException",
    )
    assert (LimitExceededError.status, LimitExceededError.error_type) == (
        429,
        "LimitExceededException",
    )
    assert issubclass(NotFoundError, ManagementError)
    # Callers that caught it as a RuntimeError before it joined the tree still do.
    assert issubclass(BlockingCallError, RuntimeError)
    assert issubclass(BlockingCallError, HubbubError)

"""The hot-reload watcher's pure parts: what a walk sees, what changed, which function owns a
file (the end-to-end reloads are in test_reload.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubbub.config import load_config
from hubbub.gateway.invoke import Route
from hubbub.gateway.reload import watched_functions
from hubbub.gateway.watch import Tree, changes, ignored, scan
from hubbub.integrations.python import HandlerPool, PythonIntegration
from hubbub.testing import make_config


def _files(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")


@pytest.mark.parametrize(
    "name",
    [".app.py.swp", "app.py~", "#app.py#", ".#app.py", "4913", "app.py.tmp", "x.pyc", ".env"],
)
def test_editors_temporary_files_are_ignored(name: str) -> None:
    assert ignored(name)


@pytest.mark.parametrize("name", ["app.py", "index.mjs", "bootstrap", "package.json"])
def test_source_files_are_watched(name: str) -> None:
    assert not ignored(name)


def test_a_walk_skips_caches_dependencies_and_virtual_environments(tmp_path: Path) -> None:
    _files(
        tmp_path,
        "app.py",
        "lib/db.py",
        "index.js",
        "__pycache__/app.cpython-311.pyc",
        "node_modules/aws-sdk/index.js",
        ".git/HEAD",
        "venv/pyvenv.cfg",
        "venv/lib/site.py",
        ".app.py.swp",
    )
    found = scan([Tree(tmp_path)])
    assert {Path(p).relative_to(tmp_path).as_posix() for p in found} == {
        "app.py",
        "lib/db.py",
        "index.js",
    }
    python = scan([Tree(tmp_path, python_only=True)])
    assert {Path(p).relative_to(tmp_path).as_posix() for p in python} == {"app.py", "lib/db.py"}


def test_changes_are_added_removed_and_modified_files(tmp_path: Path) -> None:
    _files(tmp_path, "same.py", "edited.py", "removed.py")
    before = scan([Tree(tmp_path)])
    (tmp_path / "edited.py").write_text("x = 22\n")  # another size
    (tmp_path / "removed.py").unlink()
    _files(tmp_path, "added.py")
    stamp = os.stat(tmp_path / "same.py").st_mtime_ns
    os.utime(tmp_path / "same.py", ns=(stamp, stamp))  # touched, yet the same
    after = scan([Tree(tmp_path)])
    assert {p.name for p in changes(before, after)} == {"edited.py", "removed.py", "added.py"}


def test_each_function_owns_its_files_and_not_another_functions_handler(tmp_path: Path) -> None:
    _files(
        tmp_path,
        "first.py",
        "second.py",
        "shared.py",
        "functions/own/app.py",
        "functions/own/helper.py",
        "layers/common/python/util.py",
    )
    config = make_config(
        {
            "routes": {
                "a": {"handler": "first.handler"},
                "b": {"handler": "second.handler"},
                "own": {
                    "handler": "app.handler",
                    "code": "functions/own",
                    "layers": ["layers/common"],
                },
            }
        },
        base_dir=tmp_path,
    )
    # Every route counts as reloadable here: only the config decides ownership.
    routes = dict.fromkeys(config.routes, _python_route())
    functions = {f.key: f for f in watched_functions(config, routes)}
    root = tmp_path.resolve()

    def owners(name: str) -> set[str]:
        return {key for key, f in functions.items() if f.files([root / name])}

    assert owners("first.py") == {"a"}
    assert owners("second.py") == {"b"}
    assert owners("shared.py") == {"a", "b"}  # a sibling both may import
    assert owners("functions/own/helper.py") == {"own"}  # not a's or b's sibling
    assert owners("layers/common/python/util.py") == {"own"}
    assert owners("notes.txt") == set()  # handlers under the config's folder: .py only


def test_the_config_file_is_no_functions_file(tmp_path: Path) -> None:
    _files(tmp_path, "app.py")
    (tmp_path / "hubbub.toml").write_text('[routes.a]\nhandler = "app.handler"\ncode = "."\n')
    config = load_config(tmp_path / "hubbub.toml", env={})
    [function] = watched_functions(config, {"a": _python_route()})
    root = tmp_path.resolve()
    assert function.files([root / "hubbub.toml", root / "app.py"]) == [root / "app.py"]


def _python_route() -> Route:
    def handler(event: object, context: object) -> None:
        del event, context

    return Route("x", PythonIntegration("x", handler, HandlerPool(1, "x")), timeout=1)

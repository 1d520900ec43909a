"""Every config key and CLI flag is documented, and documentation links resolve."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import importlib
import io
import os
import re
import sys
import tokenize
from pathlib import Path

import pytest

from hubbub import cli, config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

SECTIONS = {
    "api": config.ApiConfig,
    "server": config.ServerConfig,
    "management": config.ManagementConfig,
    "limits": config.LimitsConfig,
    "static": config.StaticConfig,
    "log": config.LogConfig,
    "authorizer": config.AuthorizerConfig,
    "authorizer.jwt": config.JwtConfig,
    "history": config.HistoryConfig,
    "presence": config.PresenceConfig,
}


def _documented_keys() -> str:
    return (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        (s, f.name)
        for s, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if "from_keys" not in f.metadata  # built from other keys, not a key of its own
    ],
)
def test_every_config_key_is_documented(section: str, key: str) -> None:
    text = _documented_keys()
    assert f"`[{section}]`" in text or f"[{section}]" in text
    assert f"`{key}`" in text, f"{section}.{key} missing from docs/configuration.md"


@pytest.mark.parametrize(
    "key", ["store.url", "store.key_prefix", "cluster.node_id", "cluster.heartbeat_interval"]
)
def test_store_and_cluster_keys_are_documented(key: str) -> None:
    assert f"`{key}`" in _documented_keys()


def test_every_cli_command_and_flag_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():  # type: ignore[union-attr]
        assert f"hubbub {name}" in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in text, f"{name} {flag} missing from docs/cli.md"


def test_markdown_links_resolve() -> None:
    broken = []
    for md in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", md.read_text()):
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, broken


# -- comments and docstrings point at things that exist -------------------------------------------
# A comment or docstring in src/, bench/ or tests/ that names a file, a test, or a function, class
# or module must name one that exists at test time (so a moved or renamed file fails here, not in a
# reader's head). Section signs cite RFCs or the docs in this repository, nothing outside it.

SCANNED = ("src", "bench", "tests")
NOT_OURS = ROOT / "tests" / "infra" / "fixtures"  # third-party projects, copied verbatim
PRUNED = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", "build"}
FILE_REF = re.compile(
    r"(?<![\w./<{*-])[A-Za-z_][\w.-]*(?:/[\w.-]+)*\.(?:py|md|json|toml|js|html)\b"
)
TEST_REF = re.compile(r"\btest_\w+")
PACKAGE_REF = re.compile(r"(?<![\w./-])(?:hubbub|bench)(?:\.[A-Za-z_]\w*)+")
ROLE_REF = re.compile(r":(?:func|meth|class|mod|data|attr|exc|obj):`~?\.?([\w.]+)(?:\(\))?`")
BACKTICKED = re.compile(r"`{1,2}([A-Za-z_][\w.]*)(\(\))?`{1,2}")
CLASS_ATTR = re.compile(r"(?<![\w.`])([A-Z]\w*[a-z]\w*)\.([a-z_]\w*)\b")
SECTION_SIGN = re.compile(r"RFC \d+|\bdocs/[\w-]+\.md|§")
DOC_SECTION = re.compile(r"\b(docs/[\w-]+\.md),? \"([^\"]+)\"")
USERS_FILES = {"helper.py", "lambda_function.py"}  # files of a user's project, named as examples
SUFFIXES = {"py", "md", "json", "toml", "js", "html"}


@dataclasses.dataclass
class _Repo:
    files: set[str]  # every path relative to ROOT, and every folder
    basenames: set[str]
    names: set[str]  # every name a Python file in the repository defines, imports or logs under
    members: dict[str, set[str]]  # class name -> what its instances and the class itself hold
    external: dict[str, str]  # name imported from outside the repository -> "module.name"


def _walk() -> list[Path]:
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in PRUNED and not d.endswith(".egg-info")]
        found += [Path(top) / d for d in dirs] + [Path(top) / f for f in files]
    return found


def _python_files(paths: list[Path]) -> list[Path]:
    return [
        p
        for p in paths
        if p.suffix == ".py" and NOT_OURS not in p.parents and p.parts[len(ROOT.parts)] != "build"
    ]


@functools.cache
def _repo() -> _Repo:
    paths = _walk()
    repo = _Repo({str(p.relative_to(ROOT)) for p in paths}, {p.name for p in paths}, set(), {}, {})
    for path in _python_files(paths):
        repo.names.add(path.stem)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                repo.names.add(node.name)
            elif isinstance(node, ast.Name | ast.arg | ast.Attribute | ast.alias | ast.keyword):
                name = {
                    ast.Name: "id",
                    ast.arg: "arg",
                    ast.Attribute: "attr",
                    ast.keyword: "arg",
                }.get(type(node))
                if name is None:  # an alias: the name it is bound to
                    assert isinstance(node, ast.alias)
                    repo.names.add((node.asname or node.name).split(".")[0])
                    repo.names.update(node.name.split("."))
                elif getattr(node, name):
                    repo.names.add(getattr(node, name))
            elif path.name != "test_docs.py" and re.fullmatch(r"[\w.]+", str(_value(node))):
                repo.names.add(
                    str(_value(node))
                )  # dict keys and logger names are named in prose too
            if isinstance(node, ast.ClassDef):
                held = repo.members.setdefault(node.name, set())
                held.update(
                    n.attr if isinstance(n, ast.Attribute) else n.name
                    for n in ast.walk(node)
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                    or (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store))
                )
                held.update(
                    n.id
                    for n in ast.walk(node)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                )
            if isinstance(node, ast.ImportFrom) and node.level == 0 and _outside(node.module):
                for alias in node.names:
                    repo.external[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return repo


def _outside(module: str | None) -> bool:
    return module is not None and module.split(".")[0] not in ("hubbub", "bench", "tests")


def _value(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _texts(path: Path) -> list[tuple[int, str]]:
    """The comments (a run of comment lines is one text) and string statements of a file."""
    source = path.read_text()
    texts: list[tuple[int, str]] = []
    last = -2
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            if token.start[0] == last + 1 and texts:
                texts[-1] = (texts[-1][0], texts[-1][1] + "\n" + token.string)
            else:
                texts.append((token.start[0], token.string))
            last = token.start[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(_value(node.value), str):
            texts.append((node.lineno, str(_value(node.value))))
    return texts


def _resolve(dotted: str) -> bool:
    """Whether ``a.b.c`` names a module, or an attribute of one, that imports here."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            if not hasattr(target, part):
                return False
            target = getattr(target, part)
        return True
    return False


def _names_something(ref: str) -> bool:
    """Whether a code reference (``name``, ``Class.attr``, ``module.func``) exists."""
    repo = _repo()
    head, *rest = ref.split(".")
    if head in ("hubbub", "bench") or (not rest and head in repo.members):
        return _resolve(ref) if head in ("hubbub", "bench") else True
    if head in repo.external:
        return _resolve(".".join([repo.external[head], *rest]))
    if hasattr(builtins, head):
        return _resolve(f"builtins.{ref}")
    if head in repo.members and rest:
        return rest[0] in repo.members[head] or _inherits_from_outside(head)
    if head in sys.stdlib_module_names and rest:
        return _resolve(ref)
    return all(part in repo.names for part in ref.split("."))


@functools.cache
def _inherits_from_outside(cls: str) -> bool:
    """Whether a class of the repository has a base class defined elsewhere (its members vary)."""
    for path in _python_files(_walk()):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                for base in node.bases:
                    name = ast.unparse(base).split("[")[0].split(".")[-1]
                    if name not in _repo().members or _inherits_from_outside(name):
                        return True
    return False


def _file_exists(ref: str, where: Path) -> bool:
    repo = _repo()
    if "/" not in ref:  # a bare name: a module or document of the repo, or a user's file
        return Path(ref).suffix not in (".py", ".md") or ref in repo.basenames | USERS_FILES
    bases = [ROOT, ROOT / "src", ROOT / "src" / "hubbub", *where.parents]
    anchored = [b for b in bases if (b / ref.split("/", maxsplit=1)[0]).is_dir()]
    # A first folder that exists nowhere is a placeholder (OUT/latest.json, path/to/mod.py).
    return not anchored or any((b / ref).exists() for b in anchored)


def _has_heading(doc: str, section: str) -> bool:
    lines = (ROOT / doc).read_text().splitlines()
    return any(section in line.replace("`", "") for line in lines if line.startswith("#"))


def _dangling(path: Path) -> list[str]:
    found = []
    repo = _repo()
    tests = {n for n in repo.names if n.startswith("test_")}
    for line, text in _texts(path):
        refs: list[tuple[int, str, bool]] = []
        refs += [(m.start(), m[0], _file_exists(m[0], path)) for m in FILE_REF.finditer(text)]
        refs += [(m.start(), m[0], m[0] in tests) for m in TEST_REF.finditer(text)]
        refs += [
            (m.start(), m[0], m[0] in repo.names or _names_something(m[0].rstrip(".")))
            for m in PACKAGE_REF.finditer(text)
            if not re.match(r"\.(?:v1|toml|js)\b", text[m.start() + len(m[0].split(".")[0]) :])
        ]
        refs += [(m.start(), m[0], _names_something(m[1])) for m in ROLE_REF.finditer(text)]
        refs += [
            (m.start(), m[0], _names_something(m[1]))
            for m in BACKTICKED.finditer(text)
            if m[2] or (m[1].startswith("_") and not m[1].startswith("__"))
        ]
        refs += [
            (m.start(), m[0], _names_something(m[0]))
            for m in CLASS_ATTR.finditer(text)
            if m[1] in repo.members and m[2] not in SUFFIXES
        ]
        cited = ""  # what the last citation named: an RFC, a doc of the repository, or nothing
        for m in SECTION_SIGN.finditer(text):
            if m[0] != "§":
                cited = m[0]
            elif not cited:
                refs.append((m.start(), text[m.start() : m.start() + 8].split()[0], False))
        for m in DOC_SECTION.finditer(text):
            if (ROOT / m[1]).exists():
                refs.append((m.start(), m[0], _has_heading(m[1], m[2])))
        for offset, ref, ok in refs:
            if not ok:
                label = path.relative_to(ROOT) if ROOT in path.parents else path.name
                found.append(f"{label}:{line + text[:offset].count(chr(10))}: {ref}")
    return found


# References known to dangle, each with its file (a stale entry fails the test); keep it empty.
PENDING: set[str] = set()


def test_comments_and_docstrings_name_what_exists() -> None:
    sources = _python_files([p for d in SCANNED for p in (ROOT / d).rglob("*.py")])
    dangling = [ref for path in sorted(sources) for ref in _dangling(path)]
    unlined = {re.sub(r":\d+:", ":", ref) for ref in dangling}
    assert not PENDING - unlined, f"fixed, remove from PENDING: {PENDING - unlined}"
    dangling = [ref for ref in dangling if re.sub(r":\d+:", ":", ref) not in PENDING]
    assert not dangling, "\n".join(dangling)


def test_the_reference_check_finds_what_points_at_nothing(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        '"""Checked as in docs/compatibility.md, "Close codes" (RFC 6455 §7.4.1), by\n'
        "test_every_cli_command_and_flag_is_documented, :func:`hubbub.aws.ids.new_connection_id`,\n"
        ':meth:`RouteStats.failed`; see gateway/hub.py, tests/helpers.py and README.md."""\n'
        "\n"
        "# As the spec says (spec §4.3, see PERF-BASELINE.md and src/hubbub/gateway/nowhere.py),\n"
        "# test_that_was_renamed checks ``_read_loop()`` and :class:`hubbub.aws.Missing`:\n"
        '# RouteStats.record, docs/compatibility.md, "No such section", ``vanished()``.\n'
    )
    assert [ref.split(": ", 1)[1] for ref in _dangling(module)] == [
        "PERF-BASELINE.md",
        "src/hubbub/gateway/nowhere.py",
        "test_that_was_renamed",
        "hubbub.aws.Missing",
        ":class:`hubbub.aws.Missing`",
        "``_read_loop()``",
        "``vanished()``",
        "RouteStats.record",
        "§4.3,",
        'docs/compatibility.md, "No such section"',
    ]

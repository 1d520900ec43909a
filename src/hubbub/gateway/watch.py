"""Which files changed: the polling watcher behind hot reload (``hubbub serve --reload``).

Dependency-free on purpose: every ``interval`` (0.5 s) the watched folders are walked and each
file's modification time and size compared with the previous walk. A function's code root is a
few dozen to a few thousand files (``node_modules``, ``.git``, ``__pycache__`` and virtual
environments are skipped), which a walk reads in milliseconds, in a thread off the event loop;
an OS notification library (``watchfiles``) would save those milliseconds at the cost of a
compiled dependency and of its own quirks on network and container filesystems.

Changes are debounced: a batch is reported once a walk finds nothing new, so an editor's save
(write a temporary file, rename it over the original, touch a backup) or a ``git checkout`` of
many files is one batch, reported 0.5 to 1 s after the last write. Editors' temporary and backup
files and hidden files are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hubbub.reload")

# Folders never walked, with hidden ones (.git, .venv) and virtual environments (pyvenv.cfg):
# bytecode caches and dependencies a package manager installs (restart after installing).
IGNORED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
# Editors' temporary, swap and backup files (vim, emacs, JetBrains, Kate, GNOME), and bytecode.
_IGNORED_SUFFIXES = (
    "~",
    ".swp",
    ".swo",
    ".swx",
    ".tmp",
    ".bak",
    ".orig",
    ".pyc",
    ".pyo",
    ".kate-swp",
    "___jb_tmp___",
    "___jb_old___",
)

# A file's (modification time in ns, size): either differing means it changed.
Stamp = tuple[int, int]


@dataclass(frozen=True)
class Tree:
    """A folder watched with everything below it; ``python_only``: only its ``.py`` files (a
    handler's folder under the config's, which may hold anything else: pages, databases)."""

    root: Path
    python_only: bool = False

    def holds(self, path: Path) -> bool:
        if self.python_only and path.suffix != ".py":
            return False
        return path.is_relative_to(self.root)


def ignored(name: str) -> bool:
    """Hidden files, editors' temporary files (vim's ``4913`` probe, emacs' ``#x#``) and
    backups: a save through them ends with a write of the real file, which is what counts."""
    return name.startswith((".", "#")) or name.endswith(_IGNORED_SUFFIXES) or name == "4913"


def scan(trees: Iterable[Tree]) -> dict[str, Stamp]:
    """Every watched file below ``trees`` (by path), with its stamp."""
    found: dict[str, Stamp] = {}
    for tree in trees:
        _walk(found, str(tree.root), tree)
    return found


def _walk(found: dict[str, Stamp], folder: str, tree: Tree) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:  # removed meanwhile, or unreadable: nothing to watch there
        return
    for entry in entries:
        if ignored(entry.name):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)  # no loops through symlinked folders
        except OSError:
            continue
        if is_dir:
            if entry.name not in IGNORED_DIRS and not os.path.exists(
                os.path.join(entry.path, "pyvenv.cfg")
            ):
                _walk(found, entry.path, tree)
        elif not tree.python_only or entry.name.endswith(".py"):
            try:
                stat = entry.stat()
            except OSError:  # removed between the listing and now: absent from this walk
                continue
            found[entry.path] = (stat.st_mtime_ns, stat.st_size)


def changes(before: dict[str, Stamp], after: dict[str, Stamp]) -> set[Path]:
    """Files added, removed or modified between two walks."""
    changed = {path for path, stamp in after.items() if before.get(path) != stamp}
    changed.update(path for path in before if path not in after)
    return {Path(path) for path in changed}


OnChange = Callable[[frozenset[Path]], Awaitable[None]]


class Poller:
    """Walks ``trees`` every ``interval`` seconds and hands each debounced batch of changed
    files to ``on_change`` (awaited: batches never overlap)."""

    def __init__(self, trees: Iterable[Tree], on_change: OnChange, interval: float = 0.5) -> None:
        self.trees = tuple(dict.fromkeys(trees))  # one walk per distinct tree
        self._on_change = on_change
        self._interval = interval
        self._snapshot: dict[str, Stamp] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def files(self) -> int:
        """How many files the last walk found."""
        return len(self._snapshot)

    async def start(self) -> None:
        """Take the first snapshot (a change after this returns is seen), then poll."""
        self._snapshot = await asyncio.to_thread(scan, self.trees)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hubbub-reload")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        pending: set[Path] = set()
        while True:
            await asyncio.sleep(self._interval)
            now = await asyncio.to_thread(scan, self.trees)
            new = changes(self._snapshot, now)
            self._snapshot = now
            if new:
                pending |= new  # still being written: wait for a quiet walk
                continue
            if pending:
                batch = frozenset(pending)
                pending.clear()
                try:
                    await self._on_change(batch)
                except Exception:  # a bug of ours must not end watching for good
                    log.exception("reload failed unexpectedly")

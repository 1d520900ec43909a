"""Importing in-process Python handlers again after their files changed (``hubbub serve --reload``).

One :class:`Reimport` per batch of changed files. It:

- imports each module at most once, however many routes name handlers in it;
- drops the bytecode cache (``__pycache__/*.pyc``) of every changed ``.py`` file first: a file
  rewritten within the same second at the same size would load its old ``.pyc`` otherwise (the
  cache records the source's mtime in whole seconds and its size);
- for handlers under the config's folder (:func:`~hubbub.integrations.python.load_handler`),
  takes the changed sibling modules (``import helper``) out of ``sys.modules`` so the handler's
  module imports them anew. Functions with their own code root
  (:func:`~hubbub.integrations.python.load_function`) import every module of their folders anew
  anyway;
- keeps the old version whenever the new one fails (a SyntaxError, an ImportError, a missing
  handler): the loaded modules are put back, and the error (a ``HandlerError`` naming
  ``file:line``, or a ``ConfigError``) is raised for the caller to log.

Unchanged modules that imported a changed sibling keep the object they imported (reloading is
per changed file, not transitive); handlers imported at call time see the new module.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from hubbub.errors import ConfigError, HandlerError
from hubbub.integrations.python import load_function, load_handler

# The module names load_handler gives handler modules: imported again by load_handler itself.
_HANDLER_PREFIX = "_hubbub_handler_"


class Reimport:
    """One batch of changed files, and the modules imported again for it so far."""

    def __init__(self, changed: Iterable[Path]) -> None:
        self.changed = frozenset(Path(os.path.realpath(path)) for path in changed)
        # Module identity -> the import error, or None once imported (each at most once).
        self._done: dict[tuple[object, ...], HandlerError | None] = {}
        for path in self.changed:
            if path.suffix == ".py":
                with contextlib.suppress(OSError, ValueError):  # none yet, or read-only
                    os.unlink(importlib.util.cache_from_source(str(path)))
        importlib.invalidate_caches()  # new files: the path finders list folders anew

    def handler(self, spec: str, base_dir: Path, *, key: str) -> Callable[..., Any]:
        """``spec`` (``"module.function"`` under ``base_dir``) from its module imported anew."""
        identity = ("handler", base_dir.resolve(), spec.rpartition(".")[0])
        return self._once(
            identity,
            lambda fresh: load_handler(spec, base_dir, key=key, fresh=fresh),
            siblings=True,
        )

    def function(
        self, spec: str, code: Path, layers: tuple[Path, ...], *, key: str
    ) -> Callable[..., Any]:
        """``spec`` (Lambda's ``"module.function"``) from its code root, imported anew."""
        identity = ("function", code.resolve(), layers, spec.rpartition(".")[0])
        return self._once(
            identity,
            lambda fresh: load_function(spec, code, layers, key=key, fresh=fresh),
            siblings=False,
        )

    def _once(
        self,
        identity: tuple[object, ...],
        load: Callable[[bool], Callable[..., Any]],
        *,
        siblings: bool,
    ) -> Callable[..., Any]:
        if identity in self._done:
            error = self._done[identity]
            if error is not None:
                raise error
            return load(False)  # imported for another route of this batch: the cached one
        evicted = self._evict_siblings() if siblings else {}
        try:
            func = load(True)
        except HandlerError as exc:  # the import failed: everything as it was
            sys.modules.update(evicted)
            self._done[identity] = exc
            raise
        except ConfigError:  # imported, but no such function (or no such module file)
            self._done[identity] = None
            raise
        self._done[identity] = None
        return func

    def _evict_siblings(self) -> dict[str, ModuleType]:
        """Take the modules loaded from changed files out of ``sys.modules`` (returned, to put
        back if the import fails)."""
        evicted: dict[str, ModuleType] = {}
        for name, module in list(sys.modules.items()):
            if name.startswith(_HANDLER_PREFIX):
                continue
            file = getattr(module, "__file__", None)
            if isinstance(file, str) and Path(os.path.realpath(file)) in self.changed:
                evicted[name] = module
        for name in evicted:
            del sys.modules[name]
        return evicted

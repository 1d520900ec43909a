"""Hot reload (``hubbub serve --reload``, ``[server] reload = true``): a change to a function's
files reloads that function only, and every client stays connected.

Which files are a function's (:func:`watched_functions`): its code root and layers, for a route
with ``code`` (as imported templates give them); for a handler under the config's folder, the
``.py`` files of its module's folder and below. A file that is another function's handler module
reloads that function only, so functions sharing a folder (a SAM ``CodeUri: src/``) reload one
at a time unless a module they share changes. The config file never counts: routes, the config
and ``[environment]`` are read once, at start.

An in-process Python function is imported again (hubbub.integrations.reimport) in a thread, off
the event loop; its route is then replaced in the gateway's routing table, so new invocations run
the new handler while the ones in flight finish on the old one (they hold the old route). An
import that fails leaves the old route in place.

A function in its own processes (Node.js, provided, isolated Python) first starts one environment
of the new code, which must initialise (hubbub.runtimes.reload); then its pool replaces every
environment, each once its invocation in flight has finished. One that fails to initialise
leaves the old environments serving.

Each reload is one log line: ``reloaded``, or ``reload failed`` with the error (and, for
in-process Python, its ``file:line``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hubbub.config import Config, FunctionSpec
from hubbub.errors import ConfigError, HandlerError
from hubbub.gateway.auth import ConnectAuthorizer
from hubbub.gateway.invoke import Route
from hubbub.gateway.routing import never_suspends
from hubbub.gateway.watch import Poller, Tree
from hubbub.integrations import environment
from hubbub.integrations.python import PythonIntegration
from hubbub.integrations.reimport import Reimport
from hubbub.runtimes.integration import RuntimeIntegration
from hubbub.runtimes.pool import Pool
from hubbub.runtimes.reload import try_init

log = logging.getLogger("hubbub.reload")

AUTHORIZER = "$authorizer"  # the authorizer's function, among the route keys


class Target(Protocol):
    """What the reloader reads and replaces in a gateway."""

    config: Config
    routes: dict[str, Route]
    authorizer: ConnectAuthorizer | None


@dataclass(frozen=True)
class Watched:
    """One function: its route key (or ``$authorizer``), its handler and the files that are its."""

    key: str
    config_key: str  # 'routes."sendMessage"' or "authorizer": errors name it
    handler: str
    function: FunctionSpec | None  # None: a handler under the config's folder
    trees: tuple[Tree, ...]
    # Other functions' handler modules (and the config file) inside this function's trees.
    foreign: frozenset[Path] = frozenset()
    # Other functions' code roots and layers nested inside this function's trees.
    nested: tuple[Path, ...] = ()

    def files(self, changed: Iterable[Path]) -> list[Path]:
        """The changed files that are this function's."""
        return sorted(
            path
            for path in changed
            if path not in self.foreign
            and any(tree.holds(path) for tree in self.trees)
            and not any(path.is_relative_to(root) for root in self.nested)
        )


# Where a handler's module may be: Python, then Node.js (CommonJS, ES module), then a package.
_MODULE_SUFFIXES = (".py", ".js", ".mjs", ".cjs")


def _module_file(handler: str, root: Path) -> Path | None:
    """Where ``handler``'s module is (``pkg/mod.function`` or ``pkg.mod.function``); None when
    no file is (a provided runtime's handler names no file)."""
    rel = Path(*handler.rpartition(".")[0].replace("/", ".").split("."))
    candidates = [root / f"{rel}{suffix}" for suffix in _MODULE_SUFFIXES]
    candidates.append(root / rel / "__init__.py")
    file = next((c for c in candidates if c.is_file()), None)
    return Path(os.path.realpath(file)) if file is not None else None


def watched_functions(config: Config, routes: Mapping[str, Route]) -> list[Watched]:
    """Every reloadable function of ``config`` (``routes`` are the gateway's: Python in-process
    and functions in their own processes reload; HTTP integrations are someone else's)."""
    candidates: list[tuple[str, str, str, FunctionSpec | None]] = []
    for key, spec in config.routes.items():
        route = routes.get(key)
        if spec.handler is not None and route is not None and reloadable(route):
            candidates.append((key, f'routes."{key}"', spec.handler, spec.function))
    auth = config.authorizer
    if auth is not None and auth.handler is not None:
        candidates.append((AUTHORIZER, "authorizer", auth.handler, auth.function))
    modules = {
        key: _module_file(handler, function.code if function else config.base_dir)
        for key, _, handler, function in candidates
    }
    config_files = {
        Path(os.path.realpath(source))
        for source in (config.source, config.imported.source if config.imported else None)
        if source is not None and Path(source).is_file()
    }
    trees: dict[str, tuple[Tree, ...]] = {}
    for key, _, _, function in candidates:
        if function is not None:
            roots = (function.code, *function.layers)
            trees[key] = tuple(Tree(Path(os.path.realpath(root))) for root in roots)
        else:
            module = modules[key]
            assert module is not None  # loaded at start from that file
            trees[key] = (Tree(module.parent, python_only=True),)
    code_roots = {
        tree.root for key, _, _, function in candidates if function for tree in trees[key]
    }
    watched = []
    for key, config_key, handler, function in candidates:
        own = {tree.root for tree in trees[key]}
        foreign = {file for file in modules.values() if file and file != modules[key]}
        foreign |= config_files
        nested = tuple(
            root for root in code_roots - own if any(root.is_relative_to(mine) for mine in own)
        )
        watched.append(
            Watched(key, config_key, handler, function, trees[key], frozenset(foreign), nested)
        )
    return watched


def reloadable(route: Route) -> bool:
    return isinstance(route.integration, PythonIntegration | RuntimeIntegration)


class Reloader:
    """Watches every reloadable function of a gateway and reloads the ones whose files change."""

    def __init__(self, target: Target, interval: float = 0.5) -> None:
        self.target = target
        self.config = target.config
        self.functions = watched_functions(self.config, target.routes)
        trees = [tree for function in self.functions for tree in function.trees]
        self.poller = Poller(trees, self.on_change, interval)
        self.batches = 0  # batches of changes handled (each reloads the functions they touch)

    async def start(self) -> None:
        await self.poller.start()
        log.info(
            "watching for changes",
            extra={
                "fields": {"functions": len(self.functions), "files": self.poller.files},
            },
        )

    async def close(self) -> None:
        await self.poller.close()

    async def on_change(self, changed: frozenset[Path]) -> None:
        """Reload every function that owns one of ``changed``, one after the other."""
        reimport = Reimport(changed)
        recycled: set[Pool] = set()  # routes of one process-run function share its pool
        for function in self.functions:
            files = function.files(changed)
            if files:
                await self.reload(function, files, reimport, recycled)
        self.batches += 1

    def route(self, key: str) -> Route | None:
        if key != AUTHORIZER:
            return self.target.routes.get(key)
        authorizer = self.target.authorizer
        return authorizer.route if authorizer is not None else None

    def _install(self, key: str, route: Route) -> None:
        if key == AUTHORIZER:
            assert self.config.authorizer is not None
            self.target.authorizer = ConnectAuthorizer(self.config.authorizer, route)
        else:
            self.target.routes[key] = route

    async def reload(
        self, function: Watched, files: list[Path], reimport: Reimport, recycled: set[Pool]
    ) -> None:
        route = self.route(function.key)
        if route is None:  # pragma: no cover - the routes are fixed at start
            return
        integration = route.integration
        if isinstance(integration, RuntimeIntegration):
            if integration.pool in recycled:
                return  # reloaded for another route of the same function in this batch
            recycled.add(integration.pool)
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "function": route.function.name if route.function else route.integration.name,
            "route": function.key,
            "files": ",".join(self._shown(path) for path in files),
        }
        if isinstance(integration, RuntimeIntegration):
            error = await try_init(integration.pool.function, route.timeout)
            if error is not None:
                fields.update(status="failed", error=error)
                log.error(
                    "reload failed, the previous version keeps serving", extra={"fields": fields}
                )
                return
            integration.pool.recycle()  # each busy environment once its invocation ends
            fields.update(status="ok", ms=round((time.perf_counter() - started) * 1000, 1))
            log.info("reloaded", extra={"fields": fields})
            return
        try:
            func = await asyncio.to_thread(self._import, function, route, reimport)
        except ConfigError as exc:
            if isinstance(exc, HandlerError):
                fields.update(status="failed", at=exc.location, error=exc.error)
            else:
                fields.update(status="failed", error=exc.problem)
            log.error("reload failed, the previous version keeps serving", extra={"fields": fields})
            return
        assert isinstance(route.integration, PythonIntegration)
        self._install(
            function.key,
            dataclasses.replace(
                route,
                integration=route.integration.with_handler(func),
                is_async=inspect.iscoroutinefunction(func),
                inline=func if never_suspends(func) else None,
            ),
        )
        fields.update(status="ok", ms=round((time.perf_counter() - started) * 1000, 1))
        log.info("reloaded", extra={"fields": fields})

    def _import(self, function: Watched, route: Route, reimport: Reimport) -> Callable[..., Any]:
        """In a thread: the new handler, imported in the function's own environment (its
        module-level code reads it, as at start)."""
        key = f"{function.config_key}.handler"
        token = environment.function_env(route.environment)
        try:
            if function.function is not None:
                spec = function.function
                return reimport.function(function.handler, spec.code, spec.layers, key=key)
            return reimport.handler(function.handler, self.config.base_dir, key=key)
        finally:
            environment.reset(token)

    def _shown(self, path: Path) -> str:
        base = Path(os.path.realpath(self.config.base_dir))
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


async def start_reloader(target: Target) -> Reloader:
    """Watch ``target``'s functions (the first snapshot is taken before this returns)."""
    reloader = Reloader(target)
    await reloader.start()
    return reloader

"""In-process Python handlers, written exactly as for Lambda: ``handler(event, context)``.

Plain functions run in a thread pool so that a blocking call (boto3, a database) never stalls the
event loop; ``async def`` handlers are awaited on the loop. Modules are loaded by file path
relative to the config's folder, once per file (like one warm Lambda container), with that folder
on ``sys.path`` so handlers can import their siblings.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from hubbub.errors import ConfigError
from hubbub.integrations.base import LambdaContext

_MODULES: dict[Path, ModuleType] = {}


def load_handler(spec: str, base_dir: Path, *, key: str = "handler") -> Callable[..., Any]:
    """Resolve ``"pkg.module.function"`` against ``base_dir``; errors name the config ``key``."""
    module_path, _, func_name = spec.rpartition(".")
    rel = Path(*module_path.replace("/", ".").split("."))
    candidates = [base_dir / rel.with_suffix(".py"), base_dir / rel / "__init__.py"]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise ConfigError(key, f"no module {module_path!r} under {base_dir} ({candidates[0].name})")
    module = _load_module(file.resolve(), base_dir.resolve(), module_path)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(key, f"{module_path!r} has no function {func_name!r}")
    handler: Callable[..., Any] = func
    return handler


def _load_module(file: Path, base_dir: Path, dotted: str) -> ModuleType:
    cached = _MODULES.get(file)
    if cached is not None:
        return cached
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    # A unique module name per file: two APIs (or tests) may both have a "handler.py".
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    name = f"_hubbub_handler_{digest}_{dotted.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for exotic files
        raise ConfigError("handler", f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError("handler", f"importing {file} failed: {exc!r}") from exc
    _MODULES[file] = module
    return module


class PythonIntegration:
    """One route's Python handler."""

    def __init__(self, name: str, func: Callable[..., Any], pool: ThreadPoolExecutor) -> None:
        self.name = name
        self._func = func
        self._pool = pool
        self.is_async = inspect.iscoroutinefunction(func)

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> object:
        if self.is_async:
            return await self._func(event, context)
        loop = asyncio.get_running_loop()
        # copy_context: the thread sees the function's environment overlay (environment.py).
        call = functools.partial(contextvars.copy_context().run, self._func, event, context)
        return await loop.run_in_executor(self._pool, call)

    async def close(self) -> None:
        return None

"""Routes whose function runs in its own processes, through the Lambda Runtime API.

:class:`RuntimeIntegration` is what the gateway invokes (an :class:`Integration` like the Python
and HTTP ones); :class:`Runtimes` owns every function's :class:`Pool` in one gateway process, so
that routes served by the same function share its environments, and drains them on shutdown.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import ChainMap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from hubbub.integrations.base import LambdaContext
from hubbub.runtimes import launch
from hubbub.runtimes.pool import FunctionProcess, Pool


class RuntimeIntegration:
    """Invokes a function's environments: the event goes out as ``GET .../next``'s body, the
    runtime's ``/response`` comes back as the handler's return value."""

    def __init__(self, name: str, pool: Pool) -> None:
        self.name = name
        self.pool = pool

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> object:
        deadline_ms = int(time.time() * 1000) + context.get_remaining_time_in_millis()
        return await self.pool.invoke(
            orjson.dumps(event),
            request_id=context.aws_request_id,
            deadline_ms=deadline_ms,
            arn=context.invoked_function_arn,
        )

    async def close(self) -> None:
        """Nothing per route: the pool may serve other routes; :meth:`Runtimes.close` stops it."""


class Runtimes:
    """Every process-run function of one gateway process, one pool each."""

    def __init__(self) -> None:
        self.pools: dict[tuple[object, ...], Pool] = {}
        # What every environment is told about the gateway, known only once the management
        # listener is bound (after the routes are built; environments start later, on demand).
        self._gateway_env: dict[str, str] = {}

    def set_management(self, url: str, aliases: Sequence[str], *, unsigned: bool) -> None:
        """Where the management API listens (plain HTTP) and the host names that mean this API
        (``[api] aliases``): hubbub's Node.js bootstrap sends an AWS SDK v2 client whose endpoint
        names one of them to ``url``, keeping the stage (runtimes/node/aws_sdk_v2.js).
        ``unsigned``: the listener ignores signatures (``[management] auth = "none"``), so the
        bootstrap may post an SDK v3 PostToConnectionCommand to it unsigned
        (runtimes/node/aws_sdk_v3.js)."""
        self._gateway_env["_HUBBUB_MANAGEMENT_URL"] = url
        self._gateway_env["_HUBBUB_API_HOSTS"] = ",".join(aliases)
        if unsigned:
            self._gateway_env["_HUBBUB_MANAGEMENT_UNSIGNED"] = "1"
        else:
            self._gateway_env.pop("_HUBBUB_MANAGEMENT_UNSIGNED", None)

    def integration(
        self,
        *,
        name: str,
        kind: str,
        runtime: str,
        handler: str,
        code: Path,
        layers: tuple[Path, ...],
        env: Mapping[str, str],
        base_env: Mapping[str, str],
        reserved_concurrency: int | None,
    ) -> RuntimeIntegration:
        """The integration of one route; routes of the same function (name, code, handler and
        variables alike) share one pool."""
        full = {**base_env, **env, **_runtime_env(kind, code, layers, base_env)}
        # As Lambda's own runtimes say it; custom runtimes (provided) get none.
        full.pop("AWS_EXECUTION_ENV", None)
        if kind == "node":
            full["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{runtime}"
        elif kind == "python":
            full["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{runtime or python_runtime()}"
        function = FunctionProcess(
            name=name,
            argv=tuple(launch.command(kind, code)),
            cwd=code,
            env=ChainMap(full, self._gateway_env),
            reserved_concurrency=reserved_concurrency or launch.DEFAULT_RESERVED_CONCURRENCY,
        )
        key = (name, function.argv, code, handler, tuple(sorted(full.items())))
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(function)
        return RuntimeIntegration(name, pool)

    def pools_of(self, name: str) -> list[Pool]:
        """The pools of the function called ``name`` (for hot reload: :meth:`Pool.recycle`)."""
        return [pool for pool in self.pools.values() if pool.function.name == name]

    async def close(self) -> None:
        """Drain every pool (see :meth:`Pool.close`), all at once."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))


def python_runtime() -> str:
    """The runtime name of the Python that runs the isolated functions (``python3.12``)."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def _runtime_env(
    kind: str, code: Path, layers: tuple[Path, ...], base: Mapping[str, str]
) -> dict[str, str]:
    """What Lambda's own runtimes add: module search paths with the layers (/opt/python,
    /opt/nodejs/node_modules on Lambda) and unbuffered Python output."""
    if kind == "python":
        paths = [str(code)]
        for layer in layers:
            python = layer / "python"
            paths.append(str(python if python.is_dir() else layer))
        if base.get("PYTHONPATH"):
            paths.append(base["PYTHONPATH"])
        return {"PYTHONPATH": ":".join(paths), "PYTHONUNBUFFERED": "1"}
    if kind == "node" and layers:
        paths = [str(layer / "nodejs" / "node_modules") for layer in layers]
        if base.get("NODE_PATH"):
            paths.append(base["NODE_PATH"])
        return {"NODE_PATH": ":".join(paths)}
    return {}

"""Hot reload of a function that runs in its own processes (``hubbub serve --reload``).

Before its environments are replaced (:meth:`~hubbub.runtimes.pool.Pool.recycle`), one
throwaway environment of the changed code is started and must initialise, as Lambda's init phase
does: a function whose new code fails to load (a syntax error, a missing module or handler, a
``bootstrap`` that exits) keeps its old environments, and the runtime's own error says why
(its traceback is in the log, as the function's output).
"""

from __future__ import annotations

import asyncio

from hubbub.errors import InvocationError
from hubbub.runtimes.environment import Environment
from hubbub.runtimes.pool import FunctionProcess


async def try_init(function: FunctionProcess, timeout: float) -> str | None:
    """Start one environment of ``function`` outside its pool and stop it again: None when it
    initialised (it asked for its first event) within ``timeout`` seconds (the route's: init
    counts against an invocation's timeout, see docs/runtimes.md), else what went wrong."""

    def ended(env: Environment) -> None:
        del env  # the environment's own flags say how it ended

    env = Environment(function.name, function.argv, function.cwd, function.env, on_exit=ended)
    try:
        await env.start()
    except InvocationError as exc:  # it could not even start (a bootstrap gone missing)
        return str(exc)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        # The environment has no readiness future: a poll for the few seconds an init takes.
        while not env.ready and not env.ended:
            if loop.time() > deadline:
                return f"Runtime.InitTimeout: did not initialise within {timeout:g} s"
            await asyncio.sleep(0.02)
        if env.ready:
            return None
        if env.init_error is not None:
            return str(env.init_error)
        return "Runtime.ExitError: the runtime exited during init"
    finally:
        await env.stop()

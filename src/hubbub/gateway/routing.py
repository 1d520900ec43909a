"""Building routes: each route's integration, loaded inside its function's own environment.

A route is what one Lambda function is on AWS: a handler (Python in-process, or an HTTP endpoint),
a timeout, its environment variables (``[environment]`` + the route's own + what Lambda sets), and —
for plain ``def`` handlers — its own thread pool, so a route whose handlers block for minutes
exhausts only its own threads.
"""

from __future__ import annotations

import dis
import os
import re
from collections.abc import Callable, Mapping
from inspect import CO_COROUTINE
from pathlib import Path
from types import FunctionType
from typing import Any

from hubbub.aws.sigv4 import Credential
from hubbub.config import Config, FunctionSpec
from hubbub.gateway.auth import ConnectAuthorizer
from hubbub.gateway.invoke import Route
from hubbub.gateway.tls import LocalTls, handler_environment
from hubbub.integrations import environment
from hubbub.integrations.base import Integration, LambdaFunction
from hubbub.integrations.http import HttpClient, HttpIntegration
from hubbub.integrations.python import (
    HandlerPool,
    PythonIntegration,
    load_function,
    load_handler,
)
from hubbub.runtimes.integration import Runtimes


class RouteFactory:
    def __init__(
        self,
        config: Config,
        *,
        execution_role: Credential,
        tls: LocalTls | None,
        http: HttpClient,
    ) -> None:
        self.config = config
        self.execution_role = execution_role
        self.tls = tls
        self._http = http
        self._pools: list[HandlerPool] = []
        # Functions in their own processes (nodejs, provided, isolated Python): their pools.
        self.runtimes = Runtimes()

    def close(self) -> None:
        for pool in self._pools:
            pool.close()

    def function_environment(
        self,
        function: LambdaFunction,
        route_env: Mapping[str, str],
        handler: str = "",
        task_root: Path | None = None,
    ) -> dict[str, str]:
        """What one function's ``os.environ`` shows on top of the process environment: Lambda's
        own variables (consistent with the function's context), then ``[environment]``, then the
        function's own table."""
        config = self.config
        env = {
            "AWS_REGION": config.api.region,
            "AWS_DEFAULT_REGION": config.api.region,
            **function.environment(),
            "LAMBDA_TASK_ROOT": str(task_root or config.base_dir),
            "_HANDLER": handler,
        }
        if "AWS_ACCESS_KEY_ID" not in os.environ and "AWS_ACCESS_KEY_ID" not in config.environment:
            # Like a Lambda's execution role: handlers without credentials of their own can
            # still call the management API, also when it requires SigV4.
            env["AWS_ACCESS_KEY_ID"] = self.execution_role.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = self.execution_role.secret_access_key
        if self.tls is not None:
            env.update(handler_environment(self.tls))  # an AWS_CA_BUNDLE in [environment] wins
        env.update(config.environment)
        env.update(route_env)
        return env

    def routes(self) -> dict[str, Route]:
        config = self.config
        routes: dict[str, Route] = {}
        for key, spec in config.routes.items():
            routes[key] = self.route(
                key,
                spec.handler,
                spec.url,
                f'routes."{key}"',
                spec.environment,
                timeout=spec.timeout,
                two_way=spec.route_response,
                name=spec.name,
                spec=spec.function,
            )
        return routes

    def function_name(self, key: str, name: str | None) -> str:
        """The route's Lambda function name: its ``name``, else ``{api}-{stage}-{route}`` (the
        Serverless Framework's convention) with the route key reduced to Lambda's characters."""
        if name:
            return name
        api = self.config.api
        route = re.sub(r"[^A-Za-z0-9_-]", "", key) or "route"
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{api.name}-{api.stage}-{route}")[:64]

    def authorizer(self) -> ConnectAuthorizer | None:
        auth = self.config.authorizer
        if auth is None:
            return None
        route = None
        if auth.handler is not None or auth.url is not None:
            route = self.route(
                "$authorizer",
                auth.handler,
                auth.url,
                "authorizer",
                auth.environment,
                timeout=auth.timeout,
                name=auth.name,
                spec=auth.function,
            )
        return ConnectAuthorizer(auth, route)

    def route(
        self,
        key: str,
        handler: str | None,
        url: str | None,
        config_key: str,
        route_env: Mapping[str, str],
        *,
        timeout: float | None,
        two_way: bool = False,
        name: str | None = None,
        spec: FunctionSpec | None = None,
    ) -> Route:
        """One route's integration, loaded inside the function's own environment.

        ``spec``: the function's own code root, layers and memory (None: the handler is a module
        under the config's folder)."""
        integration: Integration
        api = self.config.api
        function = LambdaFunction(
            self.function_name(key, name or (spec.name if spec is not None else None)),
            region=api.region,
            account_id=api.account_id,
            **({"memory_mb": spec.memory} if spec is not None and spec.memory else {}),
        )
        name = function.name
        kind = spec.process_kind if spec is not None else None
        if handler is not None and spec is not None and kind is not None:
            env = self.function_environment(function, route_env, handler, spec.code)
            integration = self.runtimes.integration(
                name=name,
                kind=kind,
                runtime=spec.runtime,
                handler=handler,
                code=spec.code,
                layers=spec.layers,
                env=env,
                base_env=dict(os.environ),
                reserved_concurrency=spec.reserved_concurrency,
            )
            is_async = True
            inline = None
        elif handler is not None:
            env = self.function_environment(
                function, route_env, handler, spec.code if spec is not None else None
            )
            token = environment.function_env(env)
            try:  # module-level code of the handler reads its environment at import
                if spec is not None:  # its own code root, apart from other functions
                    func = load_function(
                        handler, spec.code, spec.layers, key=f"{config_key}.handler"
                    )
                else:
                    func = load_handler(handler, self.config.base_dir, key=f"{config_key}.handler")
            finally:
                environment.reset(token)
            # One pool per route: a route whose handlers block for minutes exhausts only its own
            # threads (created on demand), never another route's.
            pool = HandlerPool(self.config.limits.handler_threads, f"hubbub-handler-{key}")
            self._pools.append(pool)
            integration = PythonIntegration(name, func, pool)
            is_async = integration.is_async
            inline = func if never_suspends(func) else None
        else:
            assert url is not None
            integration = HttpIntegration(key, url, client=self._http)
            env = {}
            is_async = True
            inline = None
        return Route(
            key=key,
            integration=integration,
            timeout=timeout or self.config.limits.handler_timeout,
            two_way=two_way,
            is_async=is_async,
            environment=env,
            inline=inline,
            function=function,
        )


def never_suspends(func: Callable[..., Any]) -> bool:
    """Tell whether ``func`` is an ``async def`` whose own code has no ``await`` (nor ``async
    for`` / ``async with``): its coroutine then runs to its end in one step, and the gateway may
    run it inline instead of in a task (see Invoker.invoke_inline).

    Every suspension of a coroutine is a YIELD_VALUE in its own bytecode; code of nested
    functions sits in other code objects. Anything that is not a plain coroutine function
    (a partial, a callable object, a wrapper) answers False: such handlers keep their task.
    """
    if not isinstance(func, FunctionType) or not func.__code__.co_flags & CO_COROUTINE:
        return False
    return all(op.opname != "YIELD_VALUE" for op in dis.get_instructions(func.__code__))

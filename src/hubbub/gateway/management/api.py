"""The management HTTP app: AWS ``@connections`` plus hubbub's rooms, users and broadcast.

:meth:`ManagementApi.handle` parses the path (:mod:`hubbub.aws.management`), checks the stage,
the rate limit and the signature, finds the endpoint in the table of
:mod:`hubbub.gateway.management.endpoints`, and turns its result or
:class:`~hubbub.errors.ManagementError` into the AWS wire format (``x-amzn-ErrorType`` headers,
so boto3 raises ``GoneException`` and friends). The pages beside the API (/health, /metrics,
/dashboard) are answered here too, under the same checks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from hubbub.aws.ids import new_request_id
from hubbub.aws.management import (
    error_body,
    error_headers,
    parse_management_path,
)
from hubbub.aws.sigv4 import Credential
from hubbub.config import Config
from hubbub.errors import (
    ForbiddenError,
    LimitExceededError,
    ManagementError,
    MethodNotAllowedError,
    NotFoundError,
    UnavailableError,
)
from hubbub.gateway.auth import ManagementAuth
from hubbub.gateway.limits import TokenBucket
from hubbub.gateway.management import endpoints
from hubbub.gateway.management.services import GatewayApi
from hubbub.gateway.metrics import Metrics
from hubbub.wire.http import HttpRequest, HttpResponse

log = logging.getLogger("hubbub.api")

Authenticate = Callable[[HttpRequest, datetime], Awaitable[None]]
# GET pages served beside the API under the same checks (/metrics, /dashboard: observability.py).
Page = Callable[[HttpRequest], Awaitable[HttpResponse]]


def _json(status: int, value: Any) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, orjson.dumps(value))


class ManagementApi:
    def __init__(
        self,
        api: GatewayApi,
        *,
        stage: str,
        authenticate: Authenticate | None = None,
        health: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        pages: Mapping[str, Page] | None = None,
        metrics: Metrics | None = None,
        rate: TokenBucket | None = None,
    ) -> None:
        self._api = api
        self._stage = stage
        self._authenticate = authenticate
        self._health = health
        self._pages = dict(pages or {})
        self._metrics = metrics if metrics is not None else Metrics()
        # [management] rate_limit: AWS throttles @connections calls with 429 LimitExceeded.
        self._rate = rate

    @classmethod
    def for_config(
        cls,
        config: Config,
        api: GatewayApi,
        *,
        execution_role: Credential,
        health: Callable[[], Awaitable[dict[str, Any]]],
        pages: Mapping[str, Page],
        metrics: Metrics,
    ) -> ManagementApi:
        """The API ``[management]`` describes: SigV4 with ``auth = "sigv4"``, the rate limit."""
        management = config.management
        rate = management.rate_limit
        return cls(
            api,
            stage=config.api.stage,
            health=health,
            authenticate=(
                ManagementAuth(management, execution_role) if management.auth == "sigv4" else None
            ),
            pages=pages,
            metrics=metrics,
            rate=TokenBucket(rate, management.burst or None) if rate else None,
        )

    async def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id()
        operation = "unknown"
        try:
            if request.raw_path == "/health" and request.method == "GET":
                return await self._health_response(request)
            page = self._pages.get(request.raw_path)
            if page is not None:
                operation = request.raw_path.strip("/").replace("/", "_")
                response = await self._page(page, request)
            else:
                if self._rate is not None and not self._rate.allow():
                    raise LimitExceededError()
                path = parse_management_path(request.raw_path)
                if path is None:
                    raise NotFoundError(f"No route for {request.method} {request.raw_path}")
                operation = endpoints.operation(path, request.method)
                if path.stage != self._stage:
                    raise ForbiddenError(f"Unknown stage {path.stage!r}")
                if self._authenticate is not None:
                    await self._authenticate(request, datetime.now(UTC))
                handler = endpoints.endpoint(request.method, path, request.raw_path)
                response = await handler(self._api, request, path)
        except ManagementError as exc:
            response = HttpResponse(
                exc.status,
                error_headers(exc.error_type, request_id),
                error_body(exc.error_type, exc.message),
            )
        except Exception:
            log.exception("management API error", extra={"fields": {"path": request.raw_path}})
            kind = "InternalServerErrorException"
            response = HttpResponse(500, error_headers(kind, request_id), error_body(kind, None))
        response.headers.setdefault("x-amzn-RequestId", request_id)
        self._metrics.management[(operation, response.status)] += 1
        return response

    async def _page(self, page: Page, request: HttpRequest) -> HttpResponse:
        if request.method != "GET":
            raise MethodNotAllowedError(f"{request.method} is not allowed here")
        if self._authenticate is not None:
            await self._authenticate(request, datetime.now(UTC))
        return await page(request)

    async def _health_response(self, request: HttpRequest) -> HttpResponse:
        """``GET /health``: the status for anyone (load balancers do not sign); under SigV4
        the details (node id, connection count, store state) only for a signed request."""
        details = await self._health() if self._health else {"status": "ok"}
        if self._authenticate is not None:
            try:
                await self._authenticate(request, datetime.now(UTC))
            except ManagementError:
                return _json(200, {"status": details.get("status", "ok")})
        return _json(200, details)

    def accept_post(
        self, request: HttpRequest, loop: asyncio.AbstractEventLoop
    ) -> HttpResponse | None:
        """PostToConnection from a handler's thread (see inprocess.py), answered there when it
        can be: no authentication to run, and a local, open connection within the size limit
        (:meth:`Connections.post_soon`). The 200 then comes at once, as :meth:`handle` would
        give it, and the message goes out on ``loop``: the thread does not wait for the loop.
        None: the request needs the loop, and takes the whole way through :meth:`handle`.
        It reads no headers (the in-process hooks pass it none).
        """
        if (
            self._authenticate is not None
            or self._rate is not None  # the bucket lives on the loop
            or request.method != "POST"
            or request.query_string
        ):
            return None
        path = parse_management_path(request.raw_path)
        if (
            path is None
            or path.stage != self._stage
            or path.resource != "connections"
            or not path.ident
            or path.sub is not None
            or not self._api.connections.post_soon(path.ident, request.body, loop)
        ):
            return None
        self._metrics.management[("connection_post", 200)] += 1
        return HttpResponse(200, {"x-amzn-RequestId": new_request_id()}, b"")


__all__ = ["ManagementApi", "UnavailableError"]

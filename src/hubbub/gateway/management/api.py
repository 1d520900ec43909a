"""The management HTTP API: AWS ``@connections`` plus hubbub's rooms, users and broadcast.

Every route is a thin translation: parse the path (``hubbub.aws.management``), call the service
layer, turn its result or :class:`~hubbub.errors.ManagementError` into the AWS wire format
(``x-amzn-ErrorType`` headers, so boto3 raises ``GoneException`` and friends).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from hubbub.aws.ids import new_request_id
from hubbub.aws.management import (
    ManagementPath,
    error_body,
    error_headers,
    get_connection_body,
    parse_management_path,
)
from hubbub.errors import (
    BadRequestError,
    ForbiddenError,
    LimitExceededError,
    ManagementError,
    UnavailableError,
)
from hubbub.gateway.limits import TokenBucket
from hubbub.gateway.management.services import GatewayApi
from hubbub.gateway.metrics import Metrics
from hubbub.gateway.transport import HttpRequest, HttpResponse

log = logging.getLogger("hubbub.api")

Authenticate = Callable[[HttpRequest, datetime], Awaitable[None]]
# GET pages served beside the API under the same checks (/metrics, /dashboard: observability.py).
Page = Callable[[HttpRequest], Awaitable[HttpResponse]]


class NotFoundError(ManagementError):
    status = 404
    error_type = "NotFoundException"


class MethodNotAllowedError(ManagementError):
    status = 405
    error_type = "MethodNotAllowedException"


def _handler(path: ManagementPath) -> str | None:
    """The name of the endpoint a path reaches ("connection", "room", ...), or None."""
    sub_kind = path.sub.partition("/")[0] if path.sub else None
    return _ROUTES.get((path.resource, path.ident is not None, sub_kind))


def _operation(path: ManagementPath, method: str) -> str:
    """The /metrics label of a management call: "connection_post", "room_get", ..."""
    handler = _handler(path)
    return f"{handler}_{method.lower()}" if handler else "unknown"


def _json(status: int, value: Any) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, orjson.dumps(value))


def _empty(status: int) -> HttpResponse:
    return HttpResponse(status, {}, b"")


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
                operation = _operation(path, request.method)
                if path.stage != self._stage:
                    raise ForbiddenError(f"Unknown stage {path.stage!r}")
                if self._authenticate is not None:
                    await self._authenticate(request, datetime.now(UTC))
                response = await self._dispatch(request, path)
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

    async def _dispatch(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        handler = _handler(path)
        if handler is None:
            raise NotFoundError(f"No route for {request.method} {request.raw_path}")
        method = getattr(self, f"_{handler}_{request.method.lower()}", None)
        if method is None:
            raise MethodNotAllowedError(f"{request.method} is not allowed here")
        result: HttpResponse = await method(request, path)
        return result

    # -- @connections ----------------------------------------------------------------------
    async def _connection_post(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        await self._api.connections.post(_ident(path), request.body)
        return _empty(200)

    async def _connection_get(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        info = await self._api.connections.get(_ident(path))
        body = get_connection_body(
            connected_at=info["connectedAt"],
            last_active_at=info["lastActiveAt"],
            source_ip=info["sourceIp"],
            user_agent=info["userAgent"],
            attributes=info["attributes"],
        )
        return HttpResponse(200, {"Content-Type": "application/json"}, body)

    async def _connection_delete(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        await self._api.connections.delete(_ident(path))
        return _empty(204)

    async def _connections_get(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        query = parse_qs(request.query_string)
        try:
            limit = int(query.get("limit", ["100"])[0])
        except ValueError:
            raise BadRequestError("limit must be an integer") from None
        cursor = query.get("cursor", [None])[0]
        page = await self._api.connections.list(limit, cursor)
        return _json(200, {"connections": page.connection_ids, "next": page.next_cursor})

    async def _attributes_put(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        try:
            value = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise BadRequestError("attributes must be a JSON object") from None
        await self._api.connections.set_attributes(_ident(path), value)
        return _empty(204)

    async def _attributes_get(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        return _json(200, await self._api.connections.get_attributes(_ident(path)))

    # -- @rooms ------------------------------------------------------------------------------
    async def _room_post(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        exclude = parse_qs(request.query_string).get("exclude", [None])[0]
        n = await self._api.rooms.send(_ident(path), request.body, exclude=exclude)
        return _json(200, {"delivered": n})

    async def _room_get(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        room = _ident(path)
        members = await self._api.rooms.members(room)
        return _json(200, {"room": room, "count": len(members), "connections": members})

    async def _member_put(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        query = parse_qs(request.query_string)
        if "presence" in query or request.body:
            # Join with presence: ?presence=1 and/or a JSON body as the member's presence data.
            presence = _flag(query, "presence") if "presence" in query else None
            data = _json_body(request, "presence data") if request.body else None
            await self._api.rooms.join(_ident(path), _member(path), presence=presence, data=data)
        else:
            await self._api.rooms.join(_ident(path), _member(path))
        return _empty(204)

    async def _presence_get(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        if path.sub != "presence":
            raise NotFoundError(f"No route for GET {request.raw_path}")
        query = parse_qs(request.query_string)
        try:
            limit = int(query.get("limit", ["100"])[0])
        except ValueError:
            raise BadRequestError("limit must be an integer") from None
        listing = await self._api.rooms.presence(
            _ident(path),
            limit=limit,
            cursor=query.get("cursor", [None])[0],
            summary=_flag(query, "summary"),
        )
        return _json(200, listing)

    async def _presence_put(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        data = _json_body(request, "presence data")
        await self._api.rooms.set_presence(_ident(path), _member(path), data)
        return _empty(204)

    async def _member_delete(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        await self._api.rooms.leave(_ident(path), _member(path))
        return _empty(204)

    # -- @users ------------------------------------------------------------------------------
    async def _user_post(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        return _json(200, {"delivered": await self._api.users.send(_ident(path), request.body)})

    async def _user_get(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        user = _ident(path)
        ids = await self._api.users.connections(user)
        return _json(200, {"user": user, "count": len(ids), "connections": ids})

    async def _user_delete(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        await self._api.users.disconnect(_ident(path))
        return _empty(204)

    async def _binding_put(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        await self._api.users.bind(_ident(path), _member(path))
        return _empty(204)

    # -- @broadcast --------------------------------------------------------------------------
    async def _broadcast_post(self, request: HttpRequest, path: ManagementPath) -> HttpResponse:
        return _json(200, {"delivered": await self._api.broadcast(request.body)})


def _ident(path: ManagementPath) -> str:
    if not path.ident:
        raise BadRequestError("missing name in path")
    return path.ident


def _flag(query: dict[str, list[str]], name: str) -> bool:
    value = query.get(name, ["0"])[0].lower()
    if value not in ("1", "true", "0", "false", ""):
        raise BadRequestError(f"{name} must be 1, true, 0 or false")
    return value in ("1", "true", "")


def _json_body(request: HttpRequest, what: str) -> Any:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise BadRequestError(f"{what} must be JSON") from None


def _member(path: ManagementPath) -> str:
    assert path.sub is not None
    cid = path.sub.partition("/")[2]
    if not cid:
        raise BadRequestError("missing connection id in path")
    return cid


# (resource, has ident, sub-resource kind) -> handler name prefix
_ROUTES: dict[tuple[str, bool, str | None], str] = {
    ("connections", True, None): "connection",
    ("connections", False, None): "connections",
    ("connections", True, "attributes"): "attributes",
    ("rooms", True, None): "room",
    ("rooms", True, "connections"): "member",
    ("rooms", True, "presence"): "presence",
    ("users", True, None): "user",
    ("users", True, "connections"): "binding",
    ("broadcast", False, None): "broadcast",
}

__all__ = ["ManagementApi", "UnavailableError"]

"""The management endpoints: which function answers each method on each path.

Every handler is a thin translation: read the request, call the service layer
(:mod:`hubbub.gateway.management.services`), turn the result into a response. Errors are raised
as :class:`~hubbub.errors.ManagementError` and answered by
:meth:`~hubbub.gateway.management.api.ManagementApi.handle`.

A new endpoint is a handler function here and a row in :data:`ENDPOINTS` (a new path shape also
a row in :data:`SHAPES`), plus its operation in ``services.py``; a new top-level resource is
also named in :data:`hubbub.aws.management.RESOURCES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

from hubbub.aws.management import ManagementPath, get_connection_body
from hubbub.errors import BadRequestError, MethodNotAllowedError, NotFoundError
from hubbub.gateway.management.services import GatewayApi
from hubbub.wire.http import HttpRequest, HttpResponse

Handler = Callable[[GatewayApi, HttpRequest, ManagementPath], Awaitable[HttpResponse]]


class Shape(NamedTuple):
    """A path shape below ``/{stage}/``."""

    pattern: str  # as docs/management-api.md writes it, below /{stage}/
    label: str  # the /metrics operation is "{label}_{method}": connection_post, room_get, ...


def _json(status: int, value: Any) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, orjson.dumps(value))


def _empty(status: int) -> HttpResponse:
    return HttpResponse(status, {}, b"")


def _ident(path: ManagementPath) -> str:
    if not path.ident:
        raise BadRequestError("missing name in path")
    return path.ident


def _member(path: ManagementPath) -> str:
    assert path.sub is not None
    cid = path.sub.partition("/")[2]
    if not cid:
        raise BadRequestError("missing connection id in path")
    return cid


def _flag(query: dict[str, list[str]], name: str) -> bool:
    value = query.get(name, ["0"])[0].lower()
    if value not in ("1", "true", "0", "false", ""):
        raise BadRequestError(f"{name} must be 1, true, 0 or false")
    return value in ("1", "true", "")


def _limit(query: dict[str, list[str]]) -> int:
    try:
        return int(query.get("limit", ["100"])[0])
    except ValueError:
        raise BadRequestError("limit must be an integer") from None


def _json_body(request: HttpRequest, what: str) -> Any:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise BadRequestError(f"{what} must be JSON") from None


# -- @connections ---------------------------------------------------------------------------------
async def post_to_connection(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    await api.connections.post(_ident(path), request.body)
    return _empty(200)


async def get_connection(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    info = await api.connections.get(_ident(path))
    body = get_connection_body(
        connected_at=info["connectedAt"],
        last_active_at=info["lastActiveAt"],
        source_ip=info["sourceIp"],
        user_agent=info["userAgent"],
        attributes=info["attributes"],
    )
    return HttpResponse(200, {"Content-Type": "application/json"}, body)


async def delete_connection(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    await api.connections.delete(_ident(path))
    return _empty(204)


async def list_connections(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    query = parse_qs(request.query_string)
    limit = _limit(query)
    page = await api.connections.list(limit, query.get("cursor", [None])[0])
    return _json(200, {"connections": page.connection_ids, "next": page.next_cursor})


async def put_attributes(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    try:
        value = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise BadRequestError("attributes must be a JSON object") from None
    await api.connections.set_attributes(_ident(path), value)
    return _empty(204)


async def get_attributes(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    return _json(200, await api.connections.get_attributes(_ident(path)))


# -- @rooms ---------------------------------------------------------------------------------------
async def send_to_room(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    exclude = parse_qs(request.query_string).get("exclude", [None])[0]
    n = await api.rooms.send(_ident(path), request.body, exclude=exclude)
    return _json(200, {"delivered": n})


async def room_members(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    room = _ident(path)
    members = await api.rooms.members(room)
    return _json(200, {"room": room, "count": len(members), "connections": members})


async def join_room(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    query = parse_qs(request.query_string)
    if "presence" in query or request.body:
        # Join with presence: ?presence=1 and/or a JSON body as the member's presence data.
        presence = _flag(query, "presence") if "presence" in query else None
        data = _json_body(request, "presence data") if request.body else None
        await api.rooms.join(_ident(path), _member(path), presence=presence, data=data)
    else:
        await api.rooms.join(_ident(path), _member(path))
    return _empty(204)


async def leave_room(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    await api.rooms.leave(_ident(path), _member(path))
    return _empty(204)


async def room_presence(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    if path.sub != "presence":
        raise NotFoundError(f"No route for GET {request.raw_path}")
    query = parse_qs(request.query_string)
    listing = await api.rooms.presence(
        _ident(path),
        limit=_limit(query),
        cursor=query.get("cursor", [None])[0],
        summary=_flag(query, "summary"),
    )
    return _json(200, listing)


async def set_presence(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    data = _json_body(request, "presence data")
    await api.rooms.set_presence(_ident(path), _member(path), data)
    return _empty(204)


# -- @users ---------------------------------------------------------------------------------------
async def send_to_user(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    return _json(200, {"delivered": await api.users.send(_ident(path), request.body)})


async def user_connections(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    user = _ident(path)
    ids = await api.users.connections(user)
    return _json(200, {"user": user, "count": len(ids), "connections": ids})


async def disconnect_user(
    api: GatewayApi, request: HttpRequest, path: ManagementPath
) -> HttpResponse:
    await api.users.disconnect(_ident(path))
    return _empty(204)


async def bind_user(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    await api.users.bind(_ident(path), _member(path))
    return _empty(204)


# -- @broadcast -----------------------------------------------------------------------------------
async def broadcast(api: GatewayApi, request: HttpRequest, path: ManagementPath) -> HttpResponse:
    return _json(200, {"delivered": await api.broadcast(request.body)})


# (resource, has a name or id, first segment after it) -> the shape; see shape_of.
SHAPES: dict[tuple[str, bool, str | None], Shape] = {
    ("connections", False, None): Shape("@connections", "connections"),
    ("connections", True, None): Shape("@connections/{id}", "connection"),
    ("connections", True, "attributes"): Shape("@connections/{id}/attributes", "attributes"),
    ("rooms", True, None): Shape("@rooms/{room}", "room"),
    ("rooms", True, "connections"): Shape("@rooms/{room}/connections/{id}", "member"),
    # GET lists the room's presence, PUT .../presence/{id} replaces a member's presence data.
    ("rooms", True, "presence"): Shape("@rooms/{room}/presence[/{id}]", "presence"),
    ("users", True, None): Shape("@users/{user}", "user"),
    ("users", True, "connections"): Shape("@users/{user}/connections/{id}", "binding"),
    ("broadcast", False, None): Shape("@broadcast", "broadcast"),
}

# (method, pattern) -> the function that answers it.
ENDPOINTS: dict[tuple[str, str], Handler] = {
    ("GET", "@connections"): list_connections,
    ("POST", "@connections/{id}"): post_to_connection,
    ("GET", "@connections/{id}"): get_connection,
    ("DELETE", "@connections/{id}"): delete_connection,
    ("PUT", "@connections/{id}/attributes"): put_attributes,
    ("GET", "@connections/{id}/attributes"): get_attributes,
    ("POST", "@rooms/{room}"): send_to_room,
    ("GET", "@rooms/{room}"): room_members,
    ("PUT", "@rooms/{room}/connections/{id}"): join_room,
    ("DELETE", "@rooms/{room}/connections/{id}"): leave_room,
    ("GET", "@rooms/{room}/presence[/{id}]"): room_presence,
    ("PUT", "@rooms/{room}/presence[/{id}]"): set_presence,
    ("POST", "@users/{user}"): send_to_user,
    ("GET", "@users/{user}"): user_connections,
    ("DELETE", "@users/{user}"): disconnect_user,
    ("PUT", "@users/{user}/connections/{id}"): bind_user,
    ("POST", "@broadcast"): broadcast,
}


def shape_of(path: ManagementPath) -> Shape | None:
    """The shape a parsed path has, or None when no endpoint is there."""
    sub_kind = path.sub.partition("/")[0] if path.sub else None
    return SHAPES.get((path.resource, path.ident is not None, sub_kind))


def endpoint(method: str, path: ManagementPath, raw_path: str) -> Handler:
    """The handler for ``method`` on ``path``: NotFoundError (404) where no endpoint is,
    MethodNotAllowedError (405) where others are but not this method."""
    shape = shape_of(path)
    if shape is None:
        raise NotFoundError(f"No route for {method} {raw_path}")
    handler = ENDPOINTS.get((method, shape.pattern))
    if handler is None:
        raise MethodNotAllowedError(f"{method} is not allowed here")
    return handler


def operation(path: ManagementPath, method: str) -> str:
    """The /metrics label of a management call: "connection_post", "room_get", ..."""
    shape = shape_of(path)
    return f"{shape.label}_{method.lower()}" if shape else "unknown"

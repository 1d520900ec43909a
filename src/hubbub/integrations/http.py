"""HTTP integrations: POST the event to a URL, treat the JSON reply as the Lambda proxy result.

This is how handlers in any language run behind hubbub (``[routes."x"] url = "http://..."``).
The contract, in full in docs/integrations.md:

- request: ``POST url`` with the event as the JSON body, ``Content-Type: application/json`` and
  the Lambda runtime API's headers (``Lambda-Runtime-Aws-Request-Id``,
  ``Lambda-Runtime-Deadline-Ms`` as epoch milliseconds, ``Lambda-Runtime-Invoked-Function-Arn``);
- reply 2xx with a JSON body: that value is the handler's result (``{"statusCode": ...,
  "headers": ..., "body": ...}``, a string, or an object), exactly as a Lambda return value;
- reply 2xx with an empty body: the handler returned nothing (accepted, like ``None``);
- anything else is a handler failure (:class:`~hubbub.errors.InvocationError`): an HTTP status
  outside 2xx, a body that is not JSON or larger than Lambda's 6 MB response limit, a refused or
  dropped connection. The invoker turns failures into 502 on ``$connect`` and the "Internal
  server error" frame on messages, as for Python handlers.

The invoker owns the timeout: it cancels ``invoke`` at the route's ``timeout``, which closes the
pending HTTP connection instead of returning it to the pool.

Connections are pooled: an :class:`HttpClient` (one ``aiohttp.ClientSession``) is meant to be
shared by every HTTP route of a gateway; an integration built without one owns a private client.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from hubbub import __version__
from hubbub.errors import InvocationError
from hubbub.integrations.base import LambdaContext

__all__ = ["MAX_REPLY_BYTES", "HttpClient", "HttpIntegration"]

# Lambda's limit for a synchronous invocation's response; a larger reply is a failure rather
# than a way to fill the gateway's memory.
MAX_REPLY_BYTES = 6 * 1024 * 1024
# Shorter than the idle keep-alive timeout of common servers (Node 5 s, uvicorn 5 s, gunicorn
# 2 s is the exception): the pool drops an idle connection before the server does, so a POST is
# rarely written into a socket the server is closing. A POST is not retried (the handler might
# run twice), so this margin is what keeps pooled requests from failing.
_KEEPALIVE_S = 4.0
_SNIPPET = 200  # characters of a failed reply's body kept for the log


class HttpClient:
    """A pooled HTTP client for HTTP integrations: keep-alive connections, bounded per host.

    The session is created on first use, inside the running event loop. ``close`` is for the
    owner (the gateway, or an integration that made its own client).
    """

    def __init__(self, *, max_connections_per_host: int = 100) -> None:
        self._limit_per_host = max_connections_per_host
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    # No global cap: the invoker's concurrency cap already bounds the work.
                    limit=0,
                    limit_per_host=self._limit_per_host,
                    keepalive_timeout=_KEEPALIVE_S,
                ),
                # The invoker's per-route timeout is the only deadline (see the module docstring).
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": f"hubbub/{__version__}"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpIntegration:
    """One route whose handler is an HTTP endpoint."""

    def __init__(self, route_key: str, url: str, *, client: HttpClient | None = None) -> None:
        self.name = route_key.lstrip("$") or "route"
        self.url = url
        self._owns_client = client is None
        self._client = client if client is not None else HttpClient()

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> object:
        remaining_ms = context.get_remaining_time_in_millis()
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": context.aws_request_id,
            # As in the Lambda runtime API: the deadline as Unix epoch milliseconds.
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + remaining_ms),
            "Lambda-Runtime-Invoked-Function-Arn": context.invoked_function_arn,
        }
        try:
            async with self._client.session.post(
                self.url, data=orjson.dumps(event), headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                body = await _read_capped(resp, self.url)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # aiohttp's ClientError covers refused connections, resets, bad HTTP and payload
            # errors; OSError and TimeoutError what may slip past it from the socket layer.
            raise InvocationError(f"POST {self.url} failed: {type(exc).__name__}: {exc}") from exc
        if not 200 <= status <= 299:
            raise InvocationError(f"POST {self.url} answered HTTP {status}: {_snippet(body)}")
        if not body.strip():
            return None  # a handler that returns nothing
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvocationError(
                f"POST {self.url} did not answer JSON ({exc}): {_snippet(body)}"
            ) from exc

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


async def _read_capped(resp: aiohttp.ClientResponse, url: str) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > MAX_REPLY_BYTES:
        raise InvocationError(f"POST {url} answered {declared} bytes (limit {MAX_REPLY_BYTES})")
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            raise InvocationError(f"POST {url} answered more than {MAX_REPLY_BYTES} bytes")
    return bytes(body)


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "(empty body)"
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "")

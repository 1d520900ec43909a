"""HTTP integrations: POST the event to a URL, treat the JSON reply as the Lambda proxy result.

This is how handlers in any language run behind hubbub. One pooled ``aiohttp`` client session is
shared by every HTTP route of a gateway (keep-alive connections, bounded per host).
"""

from __future__ import annotations

from typing import Any

import orjson

from hubbub.integrations.base import InvocationError, LambdaContext


class HttpIntegration:
    """One route whose handler is an HTTP endpoint."""

    def __init__(self, route_key: str, url: str) -> None:
        self.name = route_key.lstrip("$") or "route"
        self.url = url
        self._session: Any = None

    async def _client(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=100, keepalive_timeout=30),
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
        return self._session

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> object:
        session = await self._client()
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": context.aws_request_id,
            "Lambda-Runtime-Deadline-Ms": str(context.get_remaining_time_in_millis()),
        }
        try:
            async with session.post(self.url, data=orjson.dumps(event), headers=headers) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise InvocationError(f"{self.url} answered HTTP {resp.status}")
        except OSError as exc:
            raise InvocationError(f"{self.url} is unreachable: {exc}") from exc
        if not body.strip():
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvocationError(f"{self.url} did not answer JSON: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

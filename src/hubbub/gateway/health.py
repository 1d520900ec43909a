"""What a gateway says about itself: where it is in its life, its health, and its URLs.

The probes (``/healthz``, ``/readyz``) are served on the public listener for load balancers and
Kubernetes; the details (``GET /health``) on the management listeners (docs/operations.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from hubbub.config import Config
from hubbub.gateway.hub import Hub
from hubbub.gateway.transport_aiohttp import Listener
from hubbub.store import Store
from hubbub.wire.http import HttpResponse


@dataclass
class Status:
    """Where the gateway is in its life: starting (not accepting, not started), accepting,
    draining (not accepting, started)."""

    accepting: bool = False
    started_at: float = 0.0  # epoch seconds, once it accepts connections


class Health:
    """The probes and the health details of one gateway."""

    def __init__(self, *, node_id: str, status: Status, hub: Hub, store: Store) -> None:
        self._node_id = node_id
        self._status = status
        self._hub = hub
        self._store = store

    async def healthz(self) -> HttpResponse:
        """Liveness for load balancers and Kubernetes: the event loop answers."""
        return _probe(200, {"status": "ok"})

    async def readyz(self) -> HttpResponse:
        """Readiness: accepting connections and the store reachable; 503 saying why not."""
        status = self._status
        if not status.accepting:
            return _probe(503, {"status": "draining" if status.started_at else "starting"})
        if not self._store.status().get("ok"):
            return _probe(503, {"status": "store unreachable"})
        return _probe(200, {"status": "ready"})

    async def details(self) -> dict[str, Any]:
        """``GET /health``: status, node, connections, uptime and the store's own report."""
        store = self._store.status()
        return {
            "status": "ok" if store.get("ok") else "degraded",
            "node": self._node_id,
            "connections": len(self._hub.connections),
            "uptime_s": round(time.time() - self._status.started_at, 3),
            **store,
        }


def _probe(status: int, body: dict[str, str]) -> HttpResponse:
    return HttpResponse(
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store"},
        orjson.dumps(body),
    )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def websocket_url(config: Config, public: Listener) -> str:
    scheme = "wss" if config.server.tls_cert is not None else "ws"
    return f"{scheme}://{_host(public.host)}:{public.port}/{config.api.stage}"


def http_url(config: Config, public: Listener) -> str:
    """The public listener's pages (static files, /hubbub.js, the probes)."""
    scheme = "https" if config.server.tls_cert is not None else "http"
    return f"{scheme}://{_host(public.host)}:{public.port}"


def management_url(config: Config, management: Listener, scheme: str = "http") -> str:
    return f"{scheme}://{_host(management.host)}:{management.port}/{config.api.stage}"

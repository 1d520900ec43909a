"""hubbub: a self-hosted, AWS API Gateway compatible WebSocket gateway."""

from __future__ import annotations

__version__ = "0.1.0"

"""How a route's handler runs: in-process Python (``python``) or an HTTP endpoint (``http``)."""

from hubbub.integrations.base import Integration, InvocationError, LambdaContext

__all__ = ["Integration", "InvocationError", "LambdaContext"]

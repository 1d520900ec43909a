"""How a route's handler runs: in-process Python (``python``) or an HTTP endpoint (``http``)."""

from hubbub.errors import InvocationError
from hubbub.integrations.base import Integration, LambdaContext

__all__ = ["Integration", "InvocationError", "LambdaContext"]

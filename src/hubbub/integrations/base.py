"""What every integration offers, and the Lambda-like ``context`` handlers receive."""

from __future__ import annotations

import time
from typing import Any, Protocol

from hubbub.errors import HubbubError


class InvocationError(HubbubError):
    """The integration could not produce a result (handler raised, bad reply, unreachable URL)."""


class Integration(Protocol):
    """Runs one route's handler. ``invoke`` returns the raw Lambda result (any JSON value)."""

    name: str

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> object: ...

    async def close(self) -> None: ...


class LambdaFunction:
    """What every context of one function says about the function: built once per route.

    The ARN and log group are formatted here, not per invocation (two f-strings per message).
    """

    __slots__ = ("arn", "log_group_name", "name")

    def __init__(self, name: str, *, region: str, account_id: str) -> None:
        self.name = name
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"


class LambdaContext:
    """The subset of ``awslambdaric``'s context object that handlers use.

    ``gateway`` is a hubbub extension: the management operations in-process (async for ``async
    def`` handlers, a blocking facade for plain ``def`` handlers running in a thread).
    """

    __slots__ = (
        "_deadline",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "gateway",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    )

    def __init__(
        self, function: LambdaFunction, request_id: str, timeout: float, gateway: Any = None
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = "128"
        self.log_group_name = function.log_group_name
        self.log_stream_name = "hubbub"
        self.identity = None
        self.client_context = None
        self.gateway = gateway
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

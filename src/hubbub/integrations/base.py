"""What every integration offers, and the Lambda-like ``context`` handlers receive."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any, Protocol


class Integration(Protocol):
    """Runs one route's handler. ``invoke`` returns the raw Lambda result (any JSON value)."""

    name: str

    async def invoke(self, event: dict[str, Any], context: LambdaContext) -> object: ...

    async def close(self) -> None: ...


DEFAULT_MEMORY_MB = 128
EXECUTION_ENV = f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"


class LambdaFunction:
    """What every context of one function says about the function: built once per route.

    The ARN, log group and log stream are formatted here, not per invocation. The log stream is
    named as Lambda names an execution environment's (``2024/01/20/[$LATEST]<32 hex>``): one per
    function per gateway process, the process being the warm container.
    """

    __slots__ = (
        "arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "memory_mb",
        "name",
    )

    def __init__(
        self, name: str, *, region: str, account_id: str, memory_mb: int = DEFAULT_MEMORY_MB
    ) -> None:
        self.name = name
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/", time.gmtime()) + (
            f"[$LATEST]{uuid.uuid4().hex}"
        )
        self.memory_mb = memory_mb
        self.memory_limit_in_mb = str(memory_mb)  # as the context shows it: formatted once

    def environment(self) -> dict[str, str]:
        """The variables Lambda sets that say who the function is, consistent with its context."""
        return {
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": self.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream_name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": EXECUTION_ENV,
        }


class LambdaContext:
    """The subset of ``awslambdaric``'s context object that handlers use.

    ``aws_request_id`` is the invocation's own id, a UUID as on Lambda, not API Gateway's
    ``requestContext.requestId`` (made on first read: most handlers never look). ``gateway`` is a
    hubbub extension: the management operations in-process (async for ``async def`` handlers, a
    blocking facade for plain ``def`` handlers running in a thread).
    """

    __slots__ = (
        "_deadline",
        "_invocation_id",
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

    def __init__(self, function: LambdaFunction, timeout: float, gateway: Any = None) -> None:
        self._invocation_id: str | None = None
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_limit_in_mb
        self.log_group_name = function.log_group_name
        self.log_stream_name = function.log_stream_name
        self.identity = None
        self.client_context = None
        self.gateway = gateway
        self._deadline = time.monotonic() + timeout

    @property
    def aws_request_id(self) -> str:
        if self._invocation_id is None:
            self._invocation_id = str(uuid.uuid4())
        return self._invocation_id

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

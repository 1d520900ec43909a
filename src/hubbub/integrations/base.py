"""What every integration offers, and the Lambda-like ``context`` handlers receive."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from hubbub.aws.ids import new_invocation_id


class Integration(Protocol):
    """Runs one route's handler. ``invoke`` returns the raw Lambda result (any JSON value)."""

    name: str

    def invoke(self, event: dict[str, Any], context: LambdaContext) -> Awaitable[object]: ...

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
        "context_type",
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
        # This function's contexts: a LambdaContext whose class holds what they all say about
        # the function, so that making one sets only what is the invocation's own (see context).
        self.context_type: Callable[[], LambdaContext] = type(
            "LambdaContext",
            (LambdaContext,),
            {
                "__slots__": (),
                "__init__": object.__init__,
                "__module__": __name__,
                "function_name": name,
                "invoked_function_arn": self.arn,
                "memory_limit_in_mb": self.memory_limit_in_mb,
                "log_group_name": self.log_group_name,
                "log_stream_name": self.log_stream_name,
            },
        )

    def context(self, timeout: float, gateway: Any = None) -> LambdaContext:
        """A context for one invocation of this function: what ``LambdaContext(self, timeout,
        gateway)`` says, at a third of the cost (no ``__init__`` frame, two attributes set)."""
        context = self.context_type()
        context.gateway = gateway
        context._deadline = time.monotonic() + timeout
        return context

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

    # What every invocation of a function says about the function sits on the class (its
    # LambdaFunction.context_type) or, for a context made with LambdaContext(...), on the
    # instance. Handlers may still assign any of them: the instance's own __dict__ takes it.
    __slots__ = ("__dict__", "_deadline", "gateway")

    _invocation_id: str | None = None
    function_version = "$LATEST"
    identity: Any = None
    client_context: Any = None
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: str
    log_group_name: str
    log_stream_name: str

    def __init__(self, function: LambdaFunction, timeout: float, gateway: Any = None) -> None:
        self.function_name = function.name
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_limit_in_mb
        self.log_group_name = function.log_group_name
        self.log_stream_name = function.log_stream_name
        self.gateway = gateway
        self._deadline = time.monotonic() + timeout

    @property
    def aws_request_id(self) -> str:
        if self._invocation_id is None:
            self._invocation_id = new_invocation_id()
        return self._invocation_id

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

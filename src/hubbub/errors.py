"""The hubbub exception tree.

    HubbubError
    ├── ConfigError            a config file, env var or flag is wrong (names the key)
    └── ManagementError        a management operation failed; carries the AWS error type
        ├── GoneError              410 GoneException: the connection does not exist (any more)
        ├── PayloadTooLargeError   413 PayloadTooLargeException
        ├── LimitExceededError     429 LimitExceededException
        ├── ForbiddenError         403 ForbiddenException
        ├── BadRequestError        400 BadRequestException (bad room/user name, bad body)
        └── UnavailableError       503 ServiceUnavailableException (shared store unreachable)

Peer faults (bad frames, bad handshakes) never raise out of the gateway: they become close codes,
error frames or HTTP statuses at one boundary each.
"""

from __future__ import annotations


class HubbubError(Exception):
    """Root of every exception hubbub raises on purpose."""


class ConfigError(HubbubError):
    """A configuration value is invalid; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class ManagementError(HubbubError):
    """A management API operation failed in a way the caller must see."""

    status = 500
    error_type = "InternalServerErrorException"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.error_type)
        self.message = message


class GoneError(ManagementError):
    status = 410
    error_type = "GoneException"


class PayloadTooLargeError(ManagementError):
    status = 413
    error_type = "PayloadTooLargeException"


class LimitExceededError(ManagementError):
    status = 429
    error_type = "LimitExceededException"


class ForbiddenError(ManagementError):
    status = 403
    error_type = "ForbiddenException"


class BadRequestError(ManagementError):
    status = 400
    error_type = "BadRequestException"


class UnavailableError(ManagementError):
    status = 503
    error_type = "ServiceUnavailableException"

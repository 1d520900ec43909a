"""The hubbub exception tree.

    HubbubError
    ├── ConfigError            a config file, env var or flag is wrong (names the key)
    │   └── HandlerError           a handler module failed to import (names route, file, line)
    ├── ListenError            a listener could not bind (names listener, address, key, flag)
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


class HandlerError(ConfigError):
    """A handler's module failed to import; ``location`` is ``file:line`` of the failing frame."""

    def __init__(self, key: str, what: str, location: str, error: str) -> None:
        super().__init__(key, f"{what} at {location}: {error}")
        self.location = location
        self.error = error


class ListenError(HubbubError):
    """A listener could not bind its address.

    The message says which listener, where, the config key and flag that set its port, and why:
    ``cannot listen on 127.0.0.1:8443 for the HTTPS management API (management.tls_port,
    --management-tls-port): address already in use``.
    """

    def __init__(
        self, listener: str, host: str, port: int, *, key: str, flag: str, reason: str
    ) -> None:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {address} for the {listener} ({key}, {flag}): {reason}")
        self.listener = listener
        self.host = host
        self.port = port
        self.key = key
        self.flag = flag
        self.reason = reason


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

"""The hubbub exception tree.

    HubbubError
    ├── ConfigError            a config file, env var or flag is wrong (names the key)
    │   ├── HandlerError           a handler module failed to import (names route, file, line)
    │   └── InfraError             an infrastructure file hubbub cannot import (names file, line;
    │                              in hubbub.infra.model, beside the Origin it carries)
    ├── ListenError            a listener could not bind (names listener, address, key, flag)
    ├── BlockingCallError      a synchronous boto3 call from the gateway's own event loop
    │                          (also a RuntimeError)
    ├── InvalidProxyResult     a handler's result is not a usable Lambda proxy result (also a
    │                          ValueError)
    ├── InvocationError        an integration produced no result (raised, bad reply, unreachable)
    ├── ManagementError        a management operation failed; carries the AWS error type
    │   ├── BadRequestError        400 BadRequestException (bad room/user name, bad body)
    │   ├── ForbiddenError         403 ForbiddenException
    │   │   └── SignatureError         the SigV4 signature is missing, stale or wrong
    │   ├── NotFoundError          404 NotFoundException: no endpoint at that path
    │   ├── MethodNotAllowedError  405 MethodNotAllowedException: the path has no such method
    │   ├── GoneError              410 GoneException: the connection does not exist (any more)
    │   ├── PayloadTooLargeError   413 PayloadTooLargeException
    │   ├── LimitExceededError     429 LimitExceededException ([management] rate_limit)
    │   └── UnavailableError       503 ServiceUnavailableException (shared store unreachable)
    └── ClientError            the Python client's errors, in hubbub.client.errors (its own tree)
        └── PresenceError          a presence request the server refused (hubbub.client.presence)

Every exception above lives in this module except the three marked with their module, which stay
beside the types they carry or the API they belong to (tests/test_errors.py checks that every
HubbubError subclass in the package is drawn here). Exceptions private to one module (a leading
underscore, or caught where raised) are not part of the tree.

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


class BlockingCallError(HubbubError, RuntimeError):
    """A synchronous management call from the gateway's own event loop (an ``async def``
    handler calling boto3): waiting for the answer there would stall every connection.

    Raised by :mod:`hubbub.gateway.management.targets`; its message says what to do instead.
    """


class InvalidProxyResult(HubbubError, ValueError):
    """A handler returned something that is not a usable Lambda proxy result."""


class InvocationError(HubbubError):
    """The integration could not produce a result (handler raised, bad reply, unreachable URL)."""


class ManagementError(HubbubError):
    """A management API operation failed in a way the caller must see."""

    status = 500
    error_type = "InternalServerErrorException"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.error_type)
        self.message = message


class NotFoundError(ManagementError):
    status = 404
    error_type = "NotFoundException"


class MethodNotAllowedError(ManagementError):
    status = 405
    error_type = "MethodNotAllowedException"


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


class SignatureError(ForbiddenError):
    """The request is not correctly signed; answered with 403 ``ForbiddenException``.

    ``canonical_request`` and ``string_to_sign`` are set when the signature itself did not match:
    they are what the server computed, for debugging a client's signing code. Neither they nor the
    message ever contain a secret key.
    """

    def __init__(
        self,
        message: str,
        *,
        canonical_request: str | None = None,
        string_to_sign: str | None = None,
    ) -> None:
        super().__init__(message)
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign


class BadRequestError(ManagementError):
    status = 400
    error_type = "BadRequestException"


class UnavailableError(ManagementError):
    status = 503
    error_type = "ServiceUnavailableException"

"""The Lambda Runtime API's wire contract, as pure functions: paths, headers, error bodies.

A runtime (``bootstrap``, ``awslambdaric``, hubbub's own bootstraps) long-polls
``GET /2018-06-01/runtime/invocation/next`` for an event and posts the handler's result to
``/invocation/{id}/response`` or its failure to ``/invocation/{id}/error``; a runtime that cannot
initialise posts ``/init/error`` instead. Accepted posts answer 202; malformed ones 400 with a
JSON body ``{"errorMessage": ..., "errorType": ...}`` as AWS's endpoint answers them.
"""

from __future__ import annotations

import contextlib
import time
from random import getrandbits
from typing import Any, NamedTuple

import orjson

VERSION = "2018-06-01"
PREFIX = f"/{VERSION}/runtime/"

# Lambda's limit for a synchronous invocation's response (6 MB).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
# What the runtime may say about an error: more is cut (the log and the frame need little).
MAX_ERROR_BYTES = 1024 * 1024

REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
DEADLINE = "Lambda-Runtime-Deadline-Ms"
FUNCTION_ARN = "Lambda-Runtime-Invoked-Function-Arn"
TRACE_ID = "Lambda-Runtime-Trace-Id"
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"


_ANSWERS = ("response", "error")


class Call(NamedTuple):
    """One request of a runtime: ``kind`` is next, response, error or init_error."""

    kind: str
    request_id: str = ""


class Refusal(NamedTuple):
    """A request the API refuses: the HTTP status and Lambda's error type and message."""

    status: int
    error_type: str
    message: str


def parse_call(method: str, path: str) -> Call | Refusal:
    """What ``method path`` asks for, or why it is refused (404 unknown path, 405 wrong method)."""
    if not path.startswith(PREFIX):
        return Refusal(404, "NotFound", f"unknown path {path}")
    rest = path[len(PREFIX) :].strip("/").split("/")
    if rest == ["invocation", "next"]:
        call = Call("next")
        expected = "GET"
    elif rest == ["init", "error"]:
        call = Call("init_error")
        expected = "POST"
    elif len(rest) == 3 and rest[0] == "invocation" and rest[1] and rest[2] in _ANSWERS:
        call = Call(rest[2], rest[1])
        expected = "POST"
    else:
        return Refusal(404, "NotFound", f"unknown path {path}")
    if method != expected:
        return Refusal(405, "MethodNotAllowed", f"{path} takes {expected}, not {method}")
    return call


def error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorMessage": message, "errorType": error_type})


def trace_id(now: float | None = None) -> str:
    """An X-Ray trace header as Lambda passes it (not sampled: nothing collects traces here).
    Its ids are unique, not secret (as hubbub.aws.ids.new_trace_id's): no system call per
    invocation."""
    epoch = int(time.time() if now is None else now)
    return f"Root=1-{epoch:08x}-{getrandbits(96):024x};Parent={getrandbits(64):016x};Sampled=0"


def invocation_answer(
    event: bytes, request_id: str, deadline_ms: int, function_arn: str, keep_alive: bool
) -> bytes:
    """``GET .../invocation/next``'s whole answer, framed as hubbub.runtimes.http11.answer frames
    a 200, made in one format (it is written once per invocation): the event and its headers, a
    fresh :func:`trace_id` among them. ``Lambda-Runtime-Client-Context`` and
    ``-Cognito-Identity`` are left out: they come from mobile SDK invocations, and API Gateway
    never sends them."""
    close = "" if keep_alive else "Connection: close\r\n"
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(event)}\r\n"
        f"{REQUEST_ID}: {request_id}\r\n{DEADLINE}: {deadline_ms}\r\n"
        f"{FUNCTION_ARN}: {function_arn}\r\n{TRACE_ID}: {trace_id()}\r\n{close}\r\n"
    ).encode("latin-1") + event


class FunctionError(NamedTuple):
    """What a runtime reported: the error type (``Runtime.ImportModuleError``, ``ValueError``)
    and message, as Lambda's logs and ``FunctionError`` show them."""

    error_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}" if self.message else self.error_type


def parse_function_error(body: bytes, header: str | None) -> FunctionError:
    """An ``/error`` or ``/init/error`` body: Lambda's ``{"errorMessage", "errorType",
    "stackTrace"}`` when it is that JSON; else the header's type and the body as text (runtimes
    may post anything, and Lambda takes it)."""
    data: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(body) if body else None
    if isinstance(data, dict):
        error_type = data.get("errorType")
        message = data.get("errorMessage")
        return FunctionError(
            str(error_type or header or "Unhandled"),
            "" if message is None else str(message),
        )
    text = body[:1000].decode("utf-8", "replace").strip()
    return FunctionError(header or "Unhandled", text)

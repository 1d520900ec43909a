"""hubbub's Python runtime for ``isolation = "process"``: standard library only.

Run as a script (``python python_bootstrap.py``) by hubbub in a function's code root, with Lambda's
variables set (``_HANDLER``, ``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_RUNTIME_API``): it imports the
handler module from the code root, then loops on the Lambda Runtime API like AWS's own
``awslambdaric``: ``handler(event, context)`` per event, the result posted as JSON, an exception
posted as Lambda's error object (``errorMessage``, ``errorType``, ``stackTrace``). Init failures
are posted to ``/init/error`` as ``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``,
``Runtime.UserCodeSyntaxError`` or ``Runtime.MalformedHandlerName``, then the process exits.

It imports nothing from hubbub: the function's module namespace is its own.
"""

from __future__ import annotations

import asyncio
import decimal
import http.client
import importlib
import inspect
import json
import logging
import os
import sys
import time
import traceback
from typing import Any

API = "/2018-06-01/runtime"


class LambdaContext:
    """The attributes and method of awslambdaric's context object."""

    def __init__(self, request_id: str, deadline_ms: int, arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class RuntimeClient:
    """One keep-alive HTTP connection to the Runtime API."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._conn = http.client.HTTPConnection(host, int(port))

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        self._conn.request(method, API + path, body=body, headers=headers or {})
        response = self._conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def _error(error_type: str, message: str, tb: Any = None) -> dict[str, Any]:
    stack = traceback.format_list(traceback.extract_tb(tb)) if tb is not None else []
    return {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": stack}


def _log_error(error: dict[str, Any]) -> None:
    """The error as Lambda's Python runtime logs it: ``[ERROR] Type: message`` and the trace."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in error["stackTrace"])
    print("\n".join(lines), file=sys.stderr, flush=True)


def load_handler(spec: str) -> Any:
    """The handler function, or raise _InitError with Lambda's error type."""
    module_name, _, func_name = spec.rpartition(".")
    if not module_name or not func_name:
        raise _InitError(
            _error("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values")
        )
    dotted = module_name.replace("/", ".")
    try:
        module = importlib.import_module(dotted)
    except ImportError as exc:
        raise _InitError(
            _error(
                "Runtime.ImportModuleError",
                f"Unable to import module '{dotted}': {exc}",
                exc.__traceback__,
            )
        ) from None
    except SyntaxError as exc:
        raise _InitError(
            _error(
                "Runtime.UserCodeSyntaxError",
                f"Syntax error in module '{dotted}': {exc}",
                exc.__traceback__,
            )
        ) from None
    except Exception as exc:
        raise _InitError(_error(type(exc).__name__, str(exc), exc.__traceback__)) from None
    func = getattr(module, func_name, None)
    if func is None:
        raise _InitError(
            _error("Runtime.HandlerNotFound", f"Handler '{func_name}' missing on module '{dotted}'")
        )
    return func


class _InitError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):  # what boto3's DynamoDB resources return
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Buffers the C environment points at (TraceEnv): kept until the process ends.
_IN_ENVIRON: list[Any] = []


class TraceEnv:
    """``os.environ["_X_AMZN_TRACE_ID"]`` per invocation, as awslambdaric sets it, without leaking.

    ``os.environ[...] = value`` is a setenv(3), and glibc's setenv keeps every distinct
    ``NAME=value`` string it was ever given (so that pointers getenv returned stay valid): a
    fresh trace id per invocation grew the process by ~140 bytes per invocation for as long as
    it lived. Here the C environment points at one buffer of ours (putenv(3) does not copy),
    rewritten in place, and ``os.environ``'s own mapping is updated directly: Python code, child
    processes and native getenv(3) all see the value. Where that cannot be done (no libc
    through ctypes, a value longer than the buffer, an ``os.environ`` replaced by the handler)
    it falls back to ``os.environ``.
    """

    NAME = "_X_AMZN_TRACE_ID"
    CAPACITY = 256  # bytes for "NAME=value\0"; with hubbub's trace ids (74 characters): 92

    def __init__(self) -> None:
        self._buffer: Any = None
        self._putenv: Any = None
        self._memmove: Any = None
        self._value_at = 0  # the address of the value in the buffer
        try:
            import ctypes  # noqa: PLC0415 - only here

            libc = ctypes.CDLL(None, use_errno=True)
            putenv = libc.putenv
        except (OSError, AttributeError):
            return
        putenv.argtypes = [ctypes.c_void_p]
        putenv.restype = ctypes.c_int
        self._buffer = ctypes.create_string_buffer(self.NAME.encode() + b"=", self.CAPACITY)
        _IN_ENVIRON.append(self._buffer)  # the C environment may point at it: never freed
        self._value_at = ctypes.addressof(self._buffer) + len(self.NAME) + 1
        self._putenv = putenv
        self._memmove = ctypes.memmove

    def set(self, value: str | None) -> None:
        environ = os.environ
        if value is None:
            environ.pop(self.NAME, None)  # unsetenv(3): allocates nothing
            return
        raw = os.fsencode(value)
        data = getattr(environ, "_data", None)
        if (
            self._buffer is None
            or len(raw) >= self.CAPACITY - len(self.NAME) - 1
            or b"\0" in raw
            or not isinstance(environ, os._Environ)
            or not isinstance(data, dict)
        ):
            environ[self.NAME] = value
            return
        self._memmove(self._value_at, raw + b"\0", len(raw) + 1)
        # Again each time: a handler's own setenv or a pop may have replaced or removed the
        # entry. For a name already there, putenv swaps one pointer and allocates nothing.
        self._putenv(self._buffer)
        data[environ.encodekey(self.NAME)] = environ.encodevalue(value)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _install_logging() -> _RequestIdFilter:
    """The root logger as on Lambda: level WARNING is the default of Python's logging, Lambda's
    handler writes ``[LEVEL]\\ttime\\trequest id\\tmessage`` lines."""
    request_filter = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    handler.addFilter(request_filter)
    logging.getLogger().addHandler(handler)
    return request_filter


def main() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # The script's own folder is sys.path[0]: the function's code root takes its place, as
    # /var/task is first on Lambda.
    sys.path[0] = task_root
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    request_filter = _install_logging()
    trace_env = TraceEnv()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except _InitError as failure:
        _log_error(failure.error)
        client.request(
            "POST",
            "/init/error",
            json.dumps(failure.error).encode(),
            {"Lambda-Runtime-Function-Error-Type": failure.error["errorType"]},
        )
        sys.exit(1)
    loop: asyncio.AbstractEventLoop | None = None
    while True:
        status, headers, body = client.request("GET", "/invocation/next")
        if status != 200:
            sys.exit(f"Runtime API answered {status} to invocation/next: {body[:200]!r}")
        request_id = headers["lambda-runtime-aws-request-id"]
        request_filter.request_id = request_id
        trace_env.set(headers.get("lambda-runtime-trace-id") or None)
        context = LambdaContext(
            request_id,
            int(headers.get("lambda-runtime-deadline-ms", "0")),
            headers.get("lambda-runtime-invoked-function-arn", ""),
        )
        try:
            event = json.loads(body) if body else None
            result = handler(event, context)
            if inspect.isawaitable(result):  # an async def handler, as hubbub runs in-process
                if loop is None:
                    loop = asyncio.new_event_loop()
                result = loop.run_until_complete(result)
            try:
                payload = json.dumps(result, default=_json_default).encode()
            except (TypeError, ValueError) as exc:
                error = _error("Runtime.MarshalError", f"Unable to marshal response: {exc}")
                raise _InitError(error) from None
        except _InitError as failure:
            failure.error["requestId"] = request_id
            _log_error(failure.error)
            _post_error(client, request_id, failure.error)
            continue
        except Exception as exc:
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # not this frame
            error = _error(type(exc).__name__, str(exc), tb)
            error["requestId"] = request_id
            _log_error(error)
            _post_error(client, request_id, error)
            continue
        client.request("POST", f"/invocation/{request_id}/response", payload)


def _post_error(client: RuntimeClient, request_id: str, error: dict[str, Any]) -> None:
    client.request(
        "POST",
        f"/invocation/{request_id}/error",
        json.dumps(error).encode(),
        {"Lambda-Runtime-Function-Error-Type": "Unhandled"},
    )


if __name__ == "__main__":
    main()

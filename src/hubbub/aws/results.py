"""Lambda proxy results: what a handler returned, normalised (docs/compatibility.md,
"Handler results").

hubbub's reading of the shapes a handler may return:

- ``None`` -> 200, no body. AWS accepts a ``$connect`` handler that returns nothing, so hubbub
  treats "no result" as success everywhere.
- a dict with ``statusCode`` (an int, or a numeric string) -> that status, ``headers``,
  ``body`` and ``isBase64Encoded``. Header values are stringified (``True`` -> ``true``);
  ``multiValueHeaders`` are merged after ``headers``, case-insensitively, and the last value of a
  list wins. A non-string ``body`` is sent as its JSON text.
- a dict without ``statusCode`` -> 200 with the whole dict, as JSON, for body.
- a str -> 200 with that body.
- ``isBase64Encoded`` (``true`` or ``"true"``) -> ``body`` must be base64 of UTF-8 text, because
  it is sent as a text frame; :meth:`ProxyResult.body_text` decodes it.
- anything else, a status outside 100..599, a body that cannot become JSON, a text body that
  cannot be sent as UTF-8 (lone surrogates) or bad base64 ->
  :class:`~hubbub.errors.InvalidProxyResult` (502 on ``$connect``, the Internal server error
  frame on messages).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from hubbub.errors import InvalidProxyResult

__all__ = ["ProxyResult", "is_success", "parse_proxy_result"]

_MIN_STATUS = 100
_MAX_STATUS = 599


# Shared by every result without headers, so it must be read-only.
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ProxyResult(NamedTuple):
    """A normalised handler result. ``body`` is as returned: base64 text when ``is_base64``.

    A named tuple rather than a frozen dataclass: one per message, built in a third of the time.
    """

    status_code: int
    headers: Mapping[str, str] = _NO_HEADERS
    body: str | None = None
    is_base64: bool = False

    def body_text(self) -> str | None:
        """The body to send as a text frame, base64-decoded when ``is_base64``; None if no body.

        Never raises for a result from :func:`parse_proxy_result`, which has checked the base64
        already; for a hand-built one with bad base64 it raises InvalidProxyResult.
        """
        if self.body is None or not self.is_base64:
            return self.body
        return _decode_base64_text(self.body)


def _decode_base64_text(body: str) -> str:
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        # ValueError covers non-ASCII input to b64decode and the UnicodeDecodeError of .decode().
        raise InvalidProxyResult(
            f"isBase64Encoded body is not base64 of UTF-8 text: {exc}"
        ) from exc


def is_success(status: int) -> bool:
    """Tell whether ``status`` is a 2xx status (``$connect`` accepts the handshake on these)."""
    return 200 <= status <= 299


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isascii() and text.isdigit() else None
    return None


def _status(value: object) -> int:
    status = _as_int(value)
    if status is None:
        raise InvalidProxyResult(f"statusCode must be an integer, not {value!r}")
    if not _MIN_STATUS <= status <= _MAX_STATUS:
        raise InvalidProxyResult(f"statusCode {status} is outside {_MIN_STATUS}..{_MAX_STATUS}")
    return status


def _header_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _headers(result: Mapping[str, Any]) -> dict[str, str]:
    # Keyed by lower-case name so "Sec-WebSocket-Protocol" in one map replaces
    # "sec-websocket-protocol" in the other instead of sending both.
    merged: dict[str, tuple[str, str]] = {}
    single = result.get("headers")
    multi = result.get("multiValueHeaders")
    for label, mapping in (("headers", single), ("multiValueHeaders", multi)):
        if mapping is None:
            continue
        if not isinstance(mapping, Mapping):
            raise InvalidProxyResult(f"{label} must be an object, not {type(mapping).__name__}")
        for name, given in mapping.items():
            value = given[-1] if isinstance(given, list | tuple) and given else given
            if value is None or isinstance(value, list | tuple):
                continue  # nothing to send: null or an empty list
            merged[str(name).lower()] = (str(name), _header_value(value))
    return dict(merged.values())


def _json_text(value: object, what: str) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        raise InvalidProxyResult(f"{what} cannot be serialised as JSON: {exc}") from exc


def _text(value: str, what: str) -> str:
    """``value``, checked that it can go out as UTF-8 (a text frame, an HTTP body)."""
    if value.isascii():  # the common case, decided without encoding
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidProxyResult(f"{what} is not valid Unicode text: {exc}") from exc
    return value


def _body(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _text(value, "body")
    return _json_text(value, "body")


def _is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


_new_tuple = tuple.__new__


def parse_proxy_result(value: object) -> ProxyResult:
    """Normalise what a handler returned; raise InvalidProxyResult when it is unusable."""
    if value is None:
        return ProxyResult(200)
    if type(value) is dict:  # the common case; skips the slower ABC checks below
        status = value.get("statusCode")
        if type(status) is int and _MIN_STATUS <= status <= _MAX_STATUS:
            body = value.get("body")
            # {"statusCode": 200} or {"statusCode": 200, "body": "text"}: little else to check.
            if body is None and len(value) == 1:
                return ProxyResult(status)
            if type(body) is str and len(value) == 2:
                # tuple.__new__ skips the named tuple's Python-level __new__: a route response
                # builds one per message (and an ASCII body needs no _text call).
                if not body.isascii():
                    body = _text(body, "body")
                return _new_tuple(ProxyResult, (status, _NO_HEADERS, body, False))
    elif isinstance(value, str):
        return ProxyResult(200, body=_text(value, "result"))
    elif not isinstance(value, Mapping):
        raise InvalidProxyResult(
            f"a handler must return a dict, a str or None, not {type(value).__name__}"
        )
    if "statusCode" not in value:
        return ProxyResult(200, body=_json_text(dict(value), "result"))
    status = _status(value["statusCode"])
    body = _body(value.get("body"))
    is_base64 = _is_true(value.get("isBase64Encoded"))
    if is_base64 and body is not None:
        _decode_base64_text(body)  # fail here, where the caller expects InvalidProxyResult
    return ProxyResult(status, _headers(value), body, is_base64)

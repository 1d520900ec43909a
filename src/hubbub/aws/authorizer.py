"""REQUEST Lambda authorizers on ``$connect`` (docs/configuration.md, "[authorizer]"), as pure
functions.

Theory of operation
-------------------
The gateway runs a ``$connect`` authorizer in four steps, each a function here:

1. :func:`missing_identity` checks the configured identity sources. If any is missing or empty
   the handshake is answered **401** and the authorizer is never called.
2. :func:`authorizer_event` builds the REQUEST authorizer input from the ``$connect`` event, with
   the ``methodArn`` from :func:`method_arn`.
3. The authorizer runs (elsewhere). If it raises, :func:`authorizer_error_status` maps the error:
   the exact message ``"Unauthorized"`` is **401**, anything else **500**.
4. :func:`evaluate_authorizer_result` judges what it returned: an explicit Deny on the method ARN
   wins and gives **403**; otherwise a matching Allow gives **200**; no matching Allow is **403**;
   a result of the wrong shape is **500**. :func:`request_context_authorizer` then turns an allowed
   decision into the ``requestContext.authorizer`` object every later event of the connection
   carries.

Policy evaluation covers what authorizers return in practice: ``Effect``, ``Action`` /
``NotAction`` and ``Resource`` / ``NotResource`` as a string or a list, with IAM wildcards ``*``
and ``?``. ``Condition`` blocks are not evaluated.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "INVOKE_ACTION",
    "AuthorizerDecision",
    "ContextValue",
    "IdentitySource",
    "authorizer_error_status",
    "authorizer_event",
    "evaluate_authorizer_result",
    "method_arn",
    "missing_identity",
    "parse_identity_source",
    "request_context_authorizer",
]

INVOKE_ACTION = "execute-api:Invoke"

ContextValue = str | int | float | bool
"""The types an authorizer may put in ``context`` (string, number or boolean)."""

_HEADER_PREFIX = "route.request.header."
_QUERY_PREFIX = "route.request.querystring."
# RFC 9110 token characters: what a header field name may consist of.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class IdentitySource:
    """Where the authorizer's identity comes from: a handshake header or a query parameter."""

    kind: Literal["header", "querystring"]
    name: str

    def __str__(self) -> str:
        return f"route.request.{self.kind}.{self.name}"


def parse_identity_source(source: str) -> IdentitySource:
    """Parse ``route.request.header.<Name>`` or ``route.request.querystring.<name>``.

    Raises ``ValueError`` naming the accepted forms for anything else, including the stage
    variable and context sources AWS also allows, which hubbub does not support.
    """
    if source.startswith(_HEADER_PREFIX):
        name = source[len(_HEADER_PREFIX) :]
        if _HEADER_NAME_RE.fullmatch(name) is None:
            raise ValueError(f"identity source {source!r}: {name!r} is not a valid header name")
        return IdentitySource("header", name)
    if source.startswith(_QUERY_PREFIX):
        name = source[len(_QUERY_PREFIX) :]
        if not name:
            raise ValueError(f"identity source {source!r}: the query parameter name is empty")
        return IdentitySource("querystring", name)
    raise ValueError(
        f"identity source {source!r} must be route.request.header.<Name> "
        f"or route.request.querystring.<name>"
    )


def missing_identity(
    sources: Sequence[IdentitySource],
    headers: Sequence[tuple[str, str]],
    query: Sequence[tuple[str, str]] | None,
) -> IdentitySource | None:
    """Return the first source with no non-empty value, or ``None`` when all are present.

    Header names match case-insensitively; query parameter names match exactly, as API Gateway
    treats them. A value that is empty or only whitespace counts as missing. With a repeated
    header or parameter, one non-empty occurrence is enough.
    """
    for source in sources:
        if source.kind == "header":
            wanted = source.name.lower()
            values = [value for name, value in headers if name.lower() == wanted]
        else:
            values = [value for name, value in query or () if name == source.name]
        if not any(value.strip() for value in values):
            return source
    return None


def method_arn(
    *, region: str, account_id: str, api_id: str, stage: str, route_key: str = "$connect"
) -> str:
    """Return the ARN an authorizer's policy must allow: no HTTP verb for WebSocket APIs."""
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{route_key}"


_UPGRADE_HEADERS = (("Connection", "upgrade"), ("content-length", "0"), ("Upgrade", "websocket"))


def authorizer_event(connect_event: Mapping[str, Any], *, method_arn: str) -> dict[str, Any]:
    """Build the REQUEST authorizer input from a ``$connect`` event.

    Everything is deep-copied, so an authorizer that mutates its input cannot change the event the
    ``$connect`` handler later receives. The headers are the ``$connect`` event's plus the three
    the upgrade request shows there and the ``$connect`` event does not: ``Connection: upgrade``,
    ``content-length: 0``, ``Upgrade: websocket`` (the Powertools 2025 capture and AWS's example),
    sorted by name as AWS lists them. ``queryStringParameters`` and
    ``multiValueQueryStringParameters`` are ``{}`` without a query string, and ``stageVariables``
    is always present (``{}`` by default), as in the same capture. The request context keeps
    ``connectionId``; an ``authorizer`` key, if the caller left one, is dropped because the
    authorizer cannot see its own result.
    """
    headers = dict(connect_event.get("headers") or {})
    multi = copy.deepcopy(dict(connect_event.get("multiValueHeaders") or {}))
    for name, value in _UPGRADE_HEADERS:
        if not any(key.lower() == name.lower() for key in headers):
            headers[name] = value
            multi[name] = [value]
    event: dict[str, Any] = {
        "type": "REQUEST",
        "methodArn": method_arn,
        "headers": dict(sorted(headers.items(), key=lambda item: item[0].lower())),
        "multiValueHeaders": dict(sorted(multi.items(), key=lambda item: item[0].lower())),
    }
    for key in ("queryStringParameters", "multiValueQueryStringParameters"):
        event[key] = copy.deepcopy(dict(connect_event.get(key) or {}))
    event["stageVariables"] = copy.deepcopy(dict(connect_event.get("stageVariables") or {}))
    context = copy.deepcopy(dict(connect_event.get("requestContext") or {}))
    context.pop("authorizer", None)
    event["requestContext"] = context
    return event


@dataclass(frozen=True)
class AuthorizerDecision:
    """The verdict on an authorizer's result.

    ``status`` is what the handshake answers when not ``allowed`` (403 Deny, 500 malformed result)
    and 200 when it is. ``reason`` says why, for the log; it is never sent to the client.
    """

    allowed: bool
    status: int
    principal_id: str | None
    context: dict[str, ContextValue]
    usage_identifier_key: str | None
    reason: str


class _MalformedResultError(Exception):
    """The authorizer returned something that is not a valid authorizer result."""


@dataclass(frozen=True)
class _Statement:
    """One policy statement, validated: ``negated_*`` marks ``NotAction`` / ``NotResource``."""

    deny: bool
    actions: tuple[str, ...]
    negated_actions: bool
    resources: tuple[str, ...]
    negated_resources: bool

    def applies_to(self, arn: str) -> bool:
        action = _any_matches(self.actions, INVOKE_ACTION, case_sensitive=False)
        resource = _any_matches(self.resources, arn, case_sensitive=True)
        return action != self.negated_actions and resource != self.negated_resources


def evaluate_authorizer_result(result: object, *, method_arn: str) -> AuthorizerDecision:
    """Judge an authorizer's return value against ``method_arn``.

    Explicit Deny on a matching action and resource wins (403); otherwise an Allow on a matching
    action and resource lets the connection in (200); no matching Allow is 403. A result of the
    wrong shape (not an object, no ``principalId`` string, no ``policyDocument`` with statements,
    a ``context`` value that is not a string, number or boolean) is 500.
    """
    try:
        principal_id, statements, context, usage_key = _parse_result(result)
    except _MalformedResultError as exc:
        return AuthorizerDecision(False, 500, None, {}, None, f"malformed authorizer result: {exc}")

    matching = [i for i, statement in enumerate(statements) if statement.applies_to(method_arn)]
    denying = [i for i in matching if statements[i].deny]
    allowing = [i for i in matching if not statements[i].deny]
    if denying:
        allowed, reason = False, f"denied by policy statement {denying[0]}"
    elif allowing:
        allowed, reason = True, f"allowed by policy statement {allowing[0]}"
    else:
        allowed, reason = False, f"no policy statement allows {INVOKE_ACTION} on {method_arn}"
    return AuthorizerDecision(
        allowed, 200 if allowed else 403, principal_id, context, usage_key, reason
    )


def _parse_result(
    result: object,
) -> tuple[str, list[_Statement], dict[str, ContextValue], str | None]:
    if not isinstance(result, Mapping):
        raise _MalformedResultError(f"expected an object, got {type(result).__name__}")
    principal_id = result.get("principalId")
    if not isinstance(principal_id, str):
        raise _MalformedResultError("principalId must be a string")

    policy = result.get("policyDocument")
    if not isinstance(policy, Mapping):
        raise _MalformedResultError("policyDocument must be an object")
    raw_statements = policy.get("Statement")
    # A lone statement object is accepted, as IAM accepts it.
    if isinstance(raw_statements, Mapping):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list):
        raise _MalformedResultError("policyDocument.Statement must be a list of statements")
    statements = [_parse_statement(index, s) for index, s in enumerate(raw_statements)]

    usage_key = result.get("usageIdentifierKey")
    if usage_key is not None and not isinstance(usage_key, str):
        raise _MalformedResultError("usageIdentifierKey must be a string")
    return principal_id, statements, _parse_context(result.get("context")), usage_key


def _parse_statement(index: int, statement: object) -> _Statement:
    where = f"policy statement {index}"
    if not isinstance(statement, Mapping):
        raise _MalformedResultError(f"{where} must be an object")
    effect = statement.get("Effect")
    # IAM spells these "Allow"/"Deny"; hand-written authorizers often lower-case them, and
    # honouring a lower-case "deny" is the safe direction.
    if not isinstance(effect, str) or effect.lower() not in ("allow", "deny"):
        raise _MalformedResultError(f"{where}: Effect must be Allow or Deny")
    actions, negated_actions = _patterns(statement, "Action", "NotAction", where)
    resources, negated_resources = _patterns(statement, "Resource", "NotResource", where)
    return _Statement(
        effect.lower() == "deny", actions, negated_actions, resources, negated_resources
    )


def _patterns(
    statement: Mapping[str, Any], key: str, not_key: str, where: str
) -> tuple[tuple[str, ...], bool]:
    if key in statement:
        value, negated, used = statement[key], False, key
    elif not_key in statement:
        value, negated, used = statement[not_key], True, not_key
    else:
        raise _MalformedResultError(f"{where} has neither {key} nor {not_key}")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise _MalformedResultError(f"{where}: {used} must be a string or a list of strings")
    return tuple(value), negated


def _parse_context(raw_context: object) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {}
    if raw_context is None:
        return context
    if not isinstance(raw_context, Mapping):
        raise _MalformedResultError("context must be an object")
    for key, value in raw_context.items():
        if not isinstance(key, str):
            raise _MalformedResultError(f"context key {key!r} must be a string")
        if not isinstance(value, str | int | float | bool):
            raise _MalformedResultError(
                f"context value for {key!r} must be a string, number or boolean, "
                f"not {type(value).__name__}"
            )
        context[key] = value
    return context


def _any_matches(patterns: Sequence[str], value: str, *, case_sensitive: bool) -> bool:
    return any(_wildcard(p, case_sensitive).fullmatch(value) is not None for p in patterns)


@lru_cache(maxsize=1024)
def _wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # IAM wildcards: '*' is any run of characters (across ':' and '/'), '?' is one character.
    # Actions compare case-insensitively in IAM; resource ARNs do not.
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.compile(regex, flags)


def authorizer_error_status(exc: BaseException) -> int:
    """Map an exception raised by an authorizer to the handshake status.

    The message exactly ``"Unauthorized"`` (any exception class) is 401, matching the Lambda
    convention of ``raise Exception("Unauthorized")``; the message is ``str(exc)``, what Lambda
    reports as ``errorMessage``. Anything else is 500.
    """
    return 401 if str(exc) == "Unauthorized" else 500


def request_context_authorizer(decision: AuthorizerDecision) -> dict[str, Any]:
    """Return the ``requestContext.authorizer`` object for every later event of the connection.

    It is ``{"principalId": ..., **context}`` with the context values passed through in their
    native types (numbers stay numbers), the safest reading of the ambiguous AWS documentation. A
    context key named ``principalId`` does not override the authorizer's principal. Only allowed
    decisions have one; passing a refused decision is a programming error (``ValueError``).
    """
    if not decision.allowed or decision.principal_id is None:
        raise ValueError("only an allowed decision reaches requestContext.authorizer")
    authorizer: dict[str, Any] = {"principalId": decision.principal_id}
    authorizer.update((k, v) for k, v in decision.context.items() if k != "principalId")
    return authorizer

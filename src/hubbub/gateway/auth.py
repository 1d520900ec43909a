"""Authentication at the two doors: ``$connect`` authorizers and SigV4 on the management API.

``$connect`` (docs/configuration.md, "[authorizer]"): identity sources are checked first (missing
→ 401 without calling the authorizer); then the authorizer runs — a Lambda-style REQUEST authorizer
(Python or HTTP integration, through the invoker like any handler) or the built-in JWT one — and
its policy is evaluated against the method ARN. Allow → the ``principalId`` and context ride on
every later event of the connection; Deny → 403; ``Exception("Unauthorized")`` → 401; anything
else → 500.

Management API (docs/security.md, "Exposing the management API"): with ``auth = "sigv4"`` every
request must carry a valid AWS Signature Version 4 for ``execute-api`` from one of the configured
credentials — or from the credential hubbub hands to its own handlers (their "execution role").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hubbub.aws.authorizer import (
    IdentitySource,
    authorizer_error_status,
    authorizer_event,
    evaluate_authorizer_result,
    missing_identity,
    parse_identity_source,
    request_context_authorizer,
)
from hubbub.aws.sigv4 import Credential, SigV4Verifier
from hubbub.config import AuthorizerConfig, ManagementConfig
from hubbub.errors import ConfigError
from hubbub.gateway.invoke import Invoker, Route
from hubbub.wire.http import HttpRequest, HttpResponse

log = logging.getLogger("hubbub.auth")


class ConnectAuthorizer:
    """Decides whether a handshake may proceed to ``$connect``."""

    def __init__(self, config: AuthorizerConfig, route: Route | None) -> None:
        self.sources: list[IdentitySource] = [
            parse_identity_source(s) for s in config.identity_source
        ]
        self._route = route
        self._jwt: Any = None
        if config.jwt is not None:
            try:
                from hubbub.aws.jwt_authorizer import JwtAuthorizer  # noqa: PLC0415 - optional dependency
            except ImportError as exc:  # PyJWT is the optional "jwt" extra
                raise ConfigError(
                    "authorizer.jwt", f"needs PyJWT: pip install 'hubbub[jwt]' ({exc})"
                ) from exc
            jwt = config.jwt
            try:
                self._jwt = JwtAuthorizer(
                    issuer=jwt.issuer,
                    audience=list(jwt.audience) or None,
                    secret=jwt.secret,
                    jwks_file=jwt.jwks_file,
                    algorithms=list(jwt.algorithms) or None,
                    leeway_seconds=int(jwt.leeway),
                )
            except (ValueError, OSError) as exc:
                raise ConfigError("authorizer.jwt", str(exc)) from exc

    @property
    def route(self) -> Route | None:
        """The authorizer's function (None for a JWT authorizer)."""
        return self._route

    async def authorize(
        self,
        invoker: Invoker,
        connect_event: Mapping[str, Any],
        *,
        headers: tuple[tuple[str, str], ...],
        query: list[tuple[str, str]] | None,
        method_arn: str,
        connection_id: str,
        request_id: str,
    ) -> dict[str, Any] | HttpResponse:
        """The ``requestContext.authorizer`` object on success, else the HTTP rejection."""
        missing = missing_identity(self.sources, headers, query)
        if missing is not None:
            log.info(
                "authorizer: identity source missing",
                extra={"fields": {"connectionId": connection_id, "source": str(missing)}},
            )
            return _reject(401, "Unauthorized")
        event = authorizer_event(connect_event, method_arn=method_arn)
        if self._jwt is not None:
            raw, error = self._run_jwt(headers, query, method_arn)
        else:
            assert self._route is not None
            outcome = await invoker.invoke(
                self._route, event, connection_id=connection_id, request_id=request_id, proxy=False
            )
            raw, error = outcome.raw, outcome.exception
        if error is not None:
            status = authorizer_error_status(error)
            return _reject(status, "Unauthorized" if status == 401 else "Internal server error")
        decision = evaluate_authorizer_result(raw, method_arn=method_arn)
        if not decision.allowed:
            level = logging.ERROR if decision.status >= 500 else logging.INFO
            log.log(
                level,
                "authorizer refused the connection",
                extra={
                    "fields": {
                        "connectionId": connection_id,
                        "status": decision.status,
                        "reason": decision.reason,
                    }
                },
            )
            return _reject(decision.status, "Forbidden" if decision.status == 403 else "Error")
        return request_context_authorizer(decision)

    def _run_jwt(
        self,
        headers: tuple[tuple[str, str], ...],
        query: list[tuple[str, str]] | None,
        method_arn: str,
    ) -> tuple[object, BaseException | None]:
        from hubbub.aws.jwt_authorizer import token_from_identity  # noqa: PLC0415 - optional dependency

        source = self.sources[0]
        value = _identity_value(source, headers, query)
        try:
            return self._jwt.authorize(token_from_identity(value), method_arn=method_arn), None
        except Exception as exc:
            log.info("jwt authorizer: %s", exc.__cause__ or exc)
            return None, exc


def _identity_value(
    source: IdentitySource,
    headers: tuple[tuple[str, str], ...],
    query: list[tuple[str, str]] | None,
) -> str:
    if source.kind == "header":
        name = source.name.lower()
        return next((v for k, v in headers if k.lower() == name and v.strip()), "")
    return next((v for k, v in (query or []) if k == source.name and v.strip()), "")


def _reject(status: int, message: str) -> HttpResponse:
    return HttpResponse(
        status, {"Content-Type": "application/json"}, f'{{"message": "{message}"}}'.encode()
    )


class ManagementAuth:
    """SigV4 verification for the management API (``management.auth = "sigv4"``)."""

    def __init__(self, config: ManagementConfig, execution_role: Credential) -> None:
        credentials = [Credential(c.access_key_id, c.secret_access_key) for c in config.credentials]
        self._verifier = SigV4Verifier([*credentials, execution_role], service="execute-api")

    async def __call__(self, request: HttpRequest, now: datetime) -> None:
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        # Hashing a 128 KB body takes ~0.1 ms: fine on the loop.
        self._verifier.verify(
            method=request.method,
            raw_path=request.raw_path,
            raw_query=request.query_string,
            headers=headers,
            body=request.body,
            now=now,
        )


def execution_role() -> Credential:
    """A fresh credential for handlers that have none (like a Lambda's execution role)."""
    return Credential("ASIAHUBBUB" + secrets.token_hex(5).upper(), secrets.token_urlsafe(30))

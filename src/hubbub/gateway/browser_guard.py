"""Keeps web pages off the management API: the ``Host`` and ``Origin`` checks.

The management API has no credentials under ``auth = "none"``; what keeps it private is that it
listens on loopback. A web page the operator opens can still reach loopback through the browser:

- *cross-site*: ``fetch("http://127.0.0.1:8081/dev/@broadcast", {method: "POST", body})`` is a
  "simple" request (``text/plain``), sent without a CORS preflight. The browser hides the answer
  from the page, but the POST has happened. Browsers always say where such a request comes from
  in ``Origin``; SDKs (boto3, the AWS CLI, the JS SDK in Node) never send one.
- *DNS rebinding*: the page's own name (``rebind.evil.example``) is re-pointed at 127.0.0.1, so
  its requests are same-origin (no ``Origin`` on a GET) and it can read the answers. But the
  browser still sends ``Host: rebind.evil.example:8081``, which is none of this API's names.

So a request is refused with 403 when it carries an ``Origin`` not listed in
``[management] allowed_origins`` (empty by default: no browser), and, under ``auth = "none"``,
when its ``Host`` is not one of the listener's own names (its address, ``localhost`` and the
loopback literals with its port, ``api.domain_name``) or ``[management] allowed_hosts``. Under
``sigv4`` the signature covers ``Host`` already and a page has no key to sign with.

In-process calls (:mod:`hubbub.gateway.management.inprocess`) never pass here: they come from this
process.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence

from hubbub.aws.ids import new_request_id
from hubbub.aws.management import error_body, error_headers
from hubbub.config import is_loopback
from hubbub.wire.http import HttpHandler, HttpRequest, HttpResponse

log = logging.getLogger("hubbub.api")

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str) -> tuple[str, int | None]:
    """``Host`` header value → (lower-case name, port or None); IPv6 names keep brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port_text = value.rpartition(":") if ":" in value else (value, "", "")
    if port_text.isdigit():
        return name, int(port_text)
    return name, None


class BrowserGuard:
    """Decides whether a management request may go on (see the module docstring)."""

    def __init__(
        self,
        *,
        check_host: bool,
        allowed_hosts: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        domain_name: str = "",
    ) -> None:
        self._check_host = check_host
        self._origins = [o.rstrip("/").lower() for o in allowed_origins]
        # (name, port): port None = any port of that name.
        self._hosts: set[tuple[str, int | None]] = {split_host(h) for h in allowed_hosts}
        self._any_host = "*" in allowed_hosts
        self._loopback = False  # a listener on loopback (or every address) was added
        if domain_name:
            name, port = split_host(domain_name)
            self._hosts.add((name, port))
            if port is None:  # https://{domainName}/{stage} as handlers build it, or via a proxy
                self._hosts.update((name, p) for p in _DEFAULT_PORTS.values())

    def add_listener(self, scheme: str, host: str, port: int) -> None:
        """Accept the names a client uses to reach a listener bound to ``host``:``port``."""
        names = {f"[{host}]" if ":" in host else host}
        if is_loopback(host) or host in ("0.0.0.0", "::", ""):
            names.update(_LOOPBACK_NAMES)
            self._loopback = True
        for name in names:
            self._hosts.add((name.lower(), port))
            if port == _DEFAULT_PORTS[scheme]:
                self._hosts.add((name.lower(), None))

    def host_allowed(self, value: str | None) -> bool:
        if not self._check_host or self._any_host or value is None:
            # No Host at all is HTTP/1.0 from a tool: browsers always send one.
            return True
        name, port = split_host(value)
        if port is None and self._loopback and name in _LOOPBACK_NAMES:
            # A loopback name without a port (tools that leave it out) cannot come from a
            # rebound page: a browser sends the page's own name.
            return True
        return (name, port) in self._hosts or (name, None) in self._hosts

    def origin_allowed(self, value: str | None) -> bool:
        if value is None:
            return True
        origin = value.rstrip("/").lower()
        return any(fnmatch.fnmatchcase(origin, pattern) for pattern in self._origins)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        """The 403 for a request from a page, or None to let it through."""
        origin = request.header("Origin")
        if not self.origin_allowed(origin):
            problem = (
                f"Forbidden: requests from web pages (Origin {origin!r}) are refused; "
                "list the origin in [management] allowed_origins to allow it"
            )
        elif not self.host_allowed(host := request.header("Host")):
            problem = (
                f"Forbidden: Host {host!r} is not a name of this management API; "
                "add it to [management] allowed_hosts if it is"
            )
        else:
            return None
        log.warning(
            "management request refused",
            extra={"fields": {"sourceIp": request.remote, "reason": problem}},
        )
        kind = "ForbiddenException"
        return HttpResponse(403, error_headers(kind, new_request_id()), error_body(kind, problem))

    def wrap(self, handler: HttpHandler) -> HttpHandler:
        """``handler`` behind this guard."""

        async def guarded(request: HttpRequest) -> HttpResponse:
            refused = self.refusal(request)
            if refused is not None:
                return refused
            return await handler(request)

        return guarded

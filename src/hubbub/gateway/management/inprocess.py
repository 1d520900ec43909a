"""Management calls from this process, answered in-process (``[management] in_process``).

Handlers post back the AWS way: ``boto3.client("apigatewaymanagementapi", endpoint_url=
f"https://{domainName}/{stage}").post_to_connection(...)``. Over the network each call is a
loopback HTTP(S) round trip — urllib3 and TLS in the handler's thread, aiohttp parsing and
answering on the loop, SigV4 signing — about four fifths of the seed pattern's CPU per message
(bench routed-boto3: ~690 µs of server CPU per message over the network, ~150 in-process).

This module keeps the process-wide table of the origins (``scheme://host:port``) each running
gateway answers for — its http and https management listeners, their loopback spellings, and
``https://{api.domain_name}`` — and hands a call from a handler's thread to the gateway's loop,
where :meth:`~hubbub.gateway.management.api.ManagementApi.handle`, the function the listeners
run, answers it. :mod:`hubbub.gateway.management.botocore_hooks` diverts botocore's calls here;
every other request, real AWS included, goes to the network untouched.

An ``async def`` handler that calls boto3 synchronously runs *on* the loop: waiting there would
stall the gateway for good (over HTTP it stalls it until botocore's read timeout, since the
listener that should answer runs on that same loop). Such a call fails at once with
:class:`BlockingCallError`, which says what to do instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Iterable

from hubbub.config import Config, is_loopback
from hubbub.gateway.management.api import ManagementApi
from hubbub.gateway.management.targets import AcceptPost, Handle, InProcessEndpoint, Target
from hubbub.gateway.transport_aiohttp import Listener

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def serve(
    handle: Handle,
    *,
    listeners: Iterable[tuple[str, Listener | None]],
    domain_name: str = "",
    aliases: Iterable[str] = (),
    signed: bool = False,
    accept_post: AcceptPost | None = None,
) -> InProcessEndpoint:
    """Answer calls to ``listeners`` (``("http" | "https", listener or None)``) and to
    ``https://{domain_name}`` (and ``https://{alias}`` for each of ``aliases``: the
    ``{apiId}.execute-api.{region}.amazonaws.com`` of an imported template) with ``handle``, on the
    running loop. Call it from that loop."""
    install()
    loop = asyncio.get_running_loop()
    target = Target(handle, loop, threading.get_ident(), signed, accept_post)
    origins = [
        origin
        for scheme, listener in listeners
        if listener is not None
        for origin in listener_origins(scheme, listener.host, listener.port)
    ]
    for name in (domain_name, *aliases):
        if name:
            origins += _spellings("https", name)
    return InProcessEndpoint(target, origins)


def serve_gateway(
    config: Config,
    api: ManagementApi,
    management: Listener,
    management_tls: Listener | None,
    public: Listener,
) -> InProcessEndpoint:
    """:func:`serve` for a gateway's listeners, ``api.domain_name`` and its aliases."""
    return serve(
        api.handle,
        listeners=(
            ("http", management),
            ("https", management_tls),
            # On AWS headers.Host is the domainName: https://{Host}/{stage}, built from the
            # $connect event, names the WebSocket listener here; answer it too.
            ("https", public),
            ("http", public),
        ),
        domain_name=config.api.domain_name,
        aliases=config.api.aliases,
        signed=config.management.auth == "sigv4",
        accept_post=api.accept_post,
    )


def install() -> None:
    """Divert botocore's calls (when botocore is installed) for every later session; idempotent.

    Runs before handler modules load, so clients they create at import are covered too.
    """
    if importlib.util.find_spec("botocore") is not None:
        # Here, not at the top: botocore is slow to import, and only in_process needs it.
        from hubbub.gateway.management import botocore_hooks  # noqa: PLC0415 - optional dependency

        botocore_hooks.install()


def listener_origins(scheme: str, host: str, port: int) -> list[str]:
    """The ``scheme://host:port`` spellings that reach a listener bound to ``host``:``port``."""
    names = [host]
    if host in _WILDCARDS or is_loopback(host):
        # A wildcard listener is reachable on loopback; a loopback one by the name "localhost".
        names += ["localhost", "::1" if ":" in host else "127.0.0.1"]
    hostports = [f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names if n != "*"]
    return [o for hostport in hostports for o in _spellings(scheme, hostport)]


def _spellings(scheme: str, hostport: str) -> list[str]:
    """``scheme://hostport`` in lower case, with and without the scheme's default port."""
    hostport = hostport.lower()
    default = f":{_DEFAULT_PORTS[scheme]}"
    if hostport.endswith(default):
        return [f"{scheme}://{hostport}", f"{scheme}://{hostport[: -len(default)]}"]
    if hostport.endswith("]") or ":" not in hostport:
        return [f"{scheme}://{hostport}", f"{scheme}://{hostport}{default}"]
    return [f"{scheme}://{hostport}"]

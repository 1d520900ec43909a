"""Per-function environment variables for in-process handlers.

A Lambda function sees its own environment: the ``[environment]`` table, its route's
``[routes."x".environment]``, ``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_REGION``. In-process handlers
share one process, so hubbub replaces ``os.environ`` by an overlay: reads consult the variables of
the function that is running in the current context (a ``ContextVar`` set around each invocation,
carried into handler threads by ``copy_context().run``) before the real environment. Writes and
deletes go to the real environment, as before. Code that never runs inside a handler sees the
process environment unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

_overlay: ContextVar[Mapping[str, str] | None] = ContextVar("hubbub_function_env", default=None)


class _OverlayEnviron(os._Environ):  # type: ignore[type-arg]
    """``os.environ`` whose reads see the running function's variables first."""

    def __getitem__(self, key: str) -> str:
        extra = _overlay.get()
        if extra is not None and key in extra:
            return extra[key]
        value: str = super().__getitem__(key)
        return value

    def __contains__(self, key: object) -> bool:
        extra = _overlay.get()
        if extra is not None and key in extra:
            return True
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        extra = _overlay.get()
        if extra is None:
            yield from super().__iter__()
            return
        yield from extra
        for key in super().__iter__():
            if key not in extra:
                yield key

    def __len__(self) -> int:
        extra = _overlay.get()
        if extra is None:
            return super().__len__()
        return len(set(extra) | set(super().__iter__()))

    def copy(self) -> dict[str, str]:
        return dict(self.items())


def install() -> None:
    """Turn ``os.environ`` into the overlay (idempotent).

    The object keeps its identity (only its class changes), so code that captured a reference to
    ``os.environ`` earlier — botocore sessions do — sees the overlay too.
    """
    if type(os.environ) is not _OverlayEnviron:
        os.environ.__class__ = _OverlayEnviron


# The context variable's own methods rather than functions wrapping them: they run twice per
# invocation, and a Python frame each was ~10 % of an inline handler's invocation.
#: ``function_env(variables)``: make ``variables`` the running function's environment in the
#: current context; returns the token for :func:`reset`.
function_env = _overlay.set
#: ``reset(token)``: back to the environment before the matching :func:`function_env`.
reset = _overlay.reset

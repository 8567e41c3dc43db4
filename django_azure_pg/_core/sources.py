"""One :class:`~.token_source.TokenSource` per credential configuration and scope, process-wide.

Aliases that share an identity share its tokens (and its refusal budget and
throttle record); ``reset()`` forgets them all (tests, and after settings
change). No Django import here.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from . import forksafe
from .token_source import (
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_TIMEOUT,
    CredentialFactory,
    TokenSource,
    live_sources,
)

_registry: dict[Hashable, TokenSource] = {}
_registry_lock = threading.Lock()


def get_source(
    key: Hashable,
    credential_factory: CredentialFactory,
    scope: str,
    *,
    label: str,
    refresh_margin: float | None = DEFAULT_REFRESH_MARGIN,
    timeout: float = DEFAULT_TIMEOUT,
    rebuild_after_fork: bool = True,
) -> TokenSource:
    """The one :class:`TokenSource` for this credential configuration and scope."""
    full_key = (key, scope, refresh_margin, timeout)
    source = _registry.get(full_key)
    if source is not None:
        return source
    with _registry_lock:
        source = _registry.get(full_key)
        if source is None:
            source = TokenSource(
                credential_factory,
                scope,
                label=label,
                refresh_margin=refresh_margin,
                timeout=timeout,
                rebuild_after_fork=rebuild_after_fork,
            )
            _registry[full_key] = source
        return source


def reset(*, keep_tokens: bool = False) -> None:
    """Forget every cached token (tests, and after settings change).

    The registry is emptied, and every live source — also those that wrappers
    and pools still hold — drops its token, the fetch in flight, its refusal
    budget and throttle record, and builds a new credential object for its
    next fetch (whose own cache cannot hand the old token back).

    ``keep_tokens=True`` (the end of an ``azure_pg_faults`` test): sources and
    their still-valid tokens stay, as in a running process; only what the
    test's faults left behind — fetches in flight, a spent refusal budget, a
    ``Retry-After`` — is forgotten.
    """
    if not keep_tokens:
        with _registry_lock:
            _registry.clear()
    for source in live_sources():
        source.forget(keep_token=keep_tokens)


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # a parent thread may have held it at fork time


forksafe.on_fork(child=_after_fork_in_child)

"""The token registry's one public name: :func:`reset`.

``reset(keep_tokens=False)`` forgets every cached token and every alias's pinned route
(tests; after changing settings or the environment at run time; docs/api.md). The
registry itself lives in :mod:`django_azure_pg._core.sources` and is internal.
"""

from __future__ import annotations

from ._core import sources as _sources
from ._core import tls as _tls

__all__ = ["reset"]


def reset(*, keep_tokens: bool = False) -> None:
    """Forget every cached token and, unless ``keep_tokens``, every pinned route.

    Each alias decides its route at its first connection and keeps it (docs: Security);
    after this, the next connection decides again from the settings, the service file
    and the environment as they are then. ``keep_tokens=True`` (the end of an
    ``azure_pg_faults`` test) keeps the tokens and the routes, and forgets only what a
    test's faults left behind.
    """
    _sources.reset(keep_tokens=keep_tokens)
    if not keep_tokens:
        _tls.forget_routes()

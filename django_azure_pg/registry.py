"""The token registry's one public name: :func:`reset`.

``reset(keep_tokens=False)`` forgets every cached token (tests; after changing settings
at run time; docs/api.md). The registry itself lives in
:mod:`django_azure_pg._core.registry` and is internal.
"""

from __future__ import annotations

from ._core.registry import reset

__all__ = ["reset"]

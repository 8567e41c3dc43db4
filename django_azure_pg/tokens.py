"""The token cache's one public name: :func:`observe_response`.

An azure-core ``raw_response_hook`` for a credential object you pass yourself, so the
cache honours the identity endpoint's HTTP 429 / ``Retry-After`` (docs/api.md). The
cache itself lives in :mod:`django_azure_pg._core.token_source` and is internal.
"""

from __future__ import annotations

from ._core.endpoint import observe_response

__all__ = ["observe_response"]

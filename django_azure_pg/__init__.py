"""Passwordless Django on Azure Database for PostgreSQL with Microsoft Entra ID.

``ENGINE: "django_azure_pg"`` logs in with a fresh access token for every new
physical connection; :func:`from_env` builds the ``DATABASES`` entry from
Service Connector's variables. Importing the package registers the
``azure-postgres://`` scheme with dj-database-url.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._driver import require_psycopg3

require_psycopg3()  # before anything imports psycopg: a clear error, not ModuleNotFoundError

from .env import ENGINE, register_url_schemes  # noqa: E402

if TYPE_CHECKING:
    from .env import from_env
    from .mixin import TokenLoginMixin

__version__ = "0.1.0"
__all__ = ["ENGINE", "TokenLoginMixin", "__version__", "from_env"]
"""The public names (docs/api.md); ``TokenLoginMixin`` is loaded on first use, so a
settings import stays cheap."""

register_url_schemes()


def __getattr__(name: str) -> Any:
    if name == "from_env":
        from .env import from_env

        return from_env
    if name == "TokenLoginMixin":
        from .mixin import TokenLoginMixin

        return TokenLoginMixin
    raise AttributeError(f"module 'django_azure_pg' has no attribute {name!r}")

"""``ENGINE: "django_azure_pg"``: Django's postgresql backend, logging in with
Microsoft Entra access tokens.

The token behaviour lives in :mod:`django_azure_pg.mixin`, so other
postgresql-derived ENGINEs (``django_azure_pg.postgis``, a user's own backend
module) take on exactly the same login.
"""

from __future__ import annotations

from django.db.backends.postgresql import base as postgresql

from .mixin import TokenLoginMixin


class DatabaseWrapper(TokenLoginMixin, postgresql.DatabaseWrapper):
    pass

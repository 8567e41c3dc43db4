"""GeoDjango's PostGIS backend, logging in with Microsoft Entra access tokens.

PostGIS is an allow-listed extension on Azure Database for PostgreSQL flexible
server; see "Using another ENGINE" in the docs (docs/engines.md) for creating it as an admin.
"""

from __future__ import annotations

from django.contrib.gis.db.backends.postgis import base as postgis

from ..mixin import TokenLoginMixin


class DatabaseWrapper(TokenLoginMixin, postgis.DatabaseWrapper):
    pass

from django_prometheus.db.backends.postgresql import base

from django_azure_pg.mixin import TokenLoginMixin


class DatabaseWrapper(TokenLoginMixin, base.DatabaseWrapper):
    pass

"""The token login as a piece any postgresql-derived ``DatabaseWrapper`` can take on.

GeoDjango's PostGIS backend, django-tenants and django-prometheus each replace
the ENGINE, so a site that needs one of them could not also use ours. Put
:class:`TokenLoginMixin` first among the bases of such a wrapper and it logs
in with Entra tokens exactly like ``ENGINE: "django_azure_pg"``::

    # myproject/db/base.py            (ENGINE: "myproject.db")
    from django_prometheus.db.backends.postgresql import base
    from django_azure_pg.mixin import TokenLoginMixin
    class DatabaseWrapper(TokenLoginMixin, base.DatabaseWrapper): pass

Only the login changes: a token as the password for every new physical
connection (plain, ``CONN_MAX_AGE`` and the native pool; all through the
alias's login, _core/login.py), our OPTIONS kept away from libpq, the TLS
defaults of ``_core/tls.py`` (the route decided once per alias and pinned), dbshell with the token in
``PGPASSWORD``, and ``@sensitive_variables`` over the whole connect path.
Everything else is the wrapped backend's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from django.utils.functional import cached_property
from django.views.decorators.debug import sensitive_variables

from . import _pool, _warm, redaction
from ._client import DatabaseClient
from ._core import diagnosis, options, tls
from ._core.credentials import CredentialConfigError
from ._core.login import TokenLogin

__all__ = ["TokenLoginMixin"]

_HAS_POOL = hasattr(postgresql.DatabaseWrapper, "pool")  # Django >= 5.1

if TYPE_CHECKING:
    _Base = postgresql.DatabaseWrapper
else:
    _Base = object


class TokenLoginMixin(_Base):
    """Entra token login for a ``django.db.backends.postgresql``-derived wrapper.

    Must come before the wrapper class in the bases, so that its methods wrap
    the wrapper's own (which still run: PostGIS registers its adapters,
    django-prometheus counts the connection, and so on).
    """

    client_class = DatabaseClient

    @cached_property
    def azure_login(self) -> TokenLogin | None:
        """How this alias logs in (_core/login.py: credential, scope, role, token source
        and the pinned route); ``None`` when a PASSWORD is set (plain password auth)."""
        redaction.protect_error_trackers()
        if self.settings_dict.get("PASSWORD"):
            return None
        try:
            made = TokenLogin.from_settings(
                self.alias,
                self.settings_dict["OPTIONS"],
                self.settings_dict.get("USER"),
                host=self.settings_dict.get("HOST"),
            )
        except (CredentialConfigError, ValueError) as exc:
            raise ImproperlyConfigured(f"DATABASES[{self.alias!r}]: {exc}") from exc
        _warm.on_login(made, self.settings_dict["OPTIONS"])  # its fetch begins now
        return made

    @property
    def azure_connector(self) -> TokenLogin | None:
        """Deprecated (0.1): the same object as :attr:`azure_login`, which now owns the
        whole login (the former connector was folded into it)."""
        return self.azure_login

    def get_connection_params(self) -> dict[str, Any]:
        if not _HAS_POOL and self.settings_dict["OPTIONS"].get("pool"):
            raise ImproperlyConfigured("OPTIONS['pool'] needs Django 5.1 or later")
        params = self.raw_connection_params()
        if _HAS_POOL and self._connection_pools.get(self.alias) is not None:  # type: ignore[attr-defined]
            # Django calls this on every pool checkout and drops the result (the pool
            # hands out its own connections, each opened along the alias's pinned
            # route by the pool's connection class): skip the route on that hot path.
            return params
        return self.route_defaults(params)

    def raw_connection_params(self) -> dict[str, Any]:
        """The wrapped backend's parameters without our OPTIONS keys, before the TLS defaults."""
        return options.strip(super().get_connection_params())

    def route_defaults(self, params: dict[str, Any]) -> tls.Routed:
        """``params`` with the alias's route written in (decided at its first connection,
        then pinned: tls.routed), and the route, which the guard reuses at login."""
        return tls.routed(params, token=not self.settings_dict.get("PASSWORD"), alias=self.alias)

    @sensitive_variables()
    def connect(self) -> None:
        # Marks every frame below (get_new_connection, psycopg) as sensitive in
        # Django's error reports, so a failed login never shows the token.
        super().connect()

    @sensitive_variables()
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        found = self.azure_login
        if found is None:  # a PASSWORD: its refusal says that PASSWORD turned tokens off
            plain = super().get_new_connection
            redaction.remember(str(self.settings_dict["PASSWORD"]))
            try:
                return diagnosis.password_login(self.alias, lambda: plain(conn_params))
            except BaseException as exc:
                redaction.detach_connections(exc)  # pgconn holds the password
                raise
        if self.pool:
            return super().get_new_connection(conn_params)
        connect = super().get_new_connection
        # conn_params is get_connection_params()'s Routed: its route is the one guarded.
        return found.connect(lambda **params: connect(params), conn_params)

    @property
    def pool(self) -> Any:
        # Read on every checkout, so the common path is two dict lookups.
        if not _HAS_POOL:
            return None
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if not pool_options or self.alias == NO_DB_ALIAS:
            return None
        existing = self._connection_pools.get(self.alias)  # type: ignore[attr-defined]
        if existing is not None:
            return existing
        found = self.azure_login
        if found is None:
            return super().pool
        built = _pool.token_pool(self, found, pool_options)
        # As Django does: the pool is not open yet, so a thread that loses the
        # race drops its own and everyone uses the first one stored.
        return self._connection_pools.setdefault(self.alias, built)  # type: ignore[attr-defined]


def has_token_login(engine: str) -> bool:
    """Whether ``ENGINE`` logs in with tokens: its DatabaseWrapper takes on the mixin.

    Recognises ``django_azure_pg``, ``django_azure_pg.postgis``, a user's own
    backend module and django-tenants with ``ORIGINAL_BACKEND`` set to one of
    ours alike. An ENGINE that cannot be imported is not ours to judge.
    """
    from django.db.utils import load_backend

    try:
        wrapper = load_backend(engine).DatabaseWrapper
    except (ImproperlyConfigured, ImportError, AttributeError):
        return False
    return isinstance(wrapper, type) and issubclass(wrapper, TokenLoginMixin)

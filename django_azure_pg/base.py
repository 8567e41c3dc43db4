"""Django's postgresql backend, logging in with Microsoft Entra access tokens.

Everything not about the login is Django's own: this wrapper only supplies
the password (a token) for each new physical connection, keeps our OPTIONS
away from libpq, applies the TLS defaults of ``tls.py``, and hands the native
pool a connection class that fetches a token per physical connection.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from django.utils.functional import cached_property
from django.views.decorators.debug import sensitive_variables

from . import options, tls
from .client import DatabaseClient
from .credentials import CredentialConfigError
from .login import TokenLogin
from .pool import token_connection_class

_HAS_POOL = hasattr(postgresql.DatabaseWrapper, "pool")  # Django >= 5.1


class DatabaseWrapper(postgresql.DatabaseWrapper):
    client_class = DatabaseClient

    @cached_property
    def azure_login(self) -> TokenLogin | None:
        """How this alias logs in; ``None`` when a PASSWORD is set (plain password auth)."""
        if self.settings_dict.get("PASSWORD"):
            return None
        try:
            return TokenLogin.from_settings(
                self.alias,
                self.settings_dict["OPTIONS"],
                self.settings_dict.get("USER"),
                host=self.settings_dict.get("HOST"),
            )
        except (CredentialConfigError, ValueError) as exc:
            raise ImproperlyConfigured(f"DATABASES[{self.alias!r}]: {exc}") from exc

    def get_connection_params(self) -> dict[str, Any]:
        if not _HAS_POOL and self.settings_dict["OPTIONS"].get("pool"):
            raise ImproperlyConfigured("OPTIONS['pool'] needs Django 5.1 or later")
        return tls.apply_defaults(options.strip(super().get_connection_params()), os.environ)

    @sensitive_variables()
    def connect(self) -> None:
        # Marks every frame below (get_new_connection, psycopg) as sensitive in
        # Django's error reports, so a failed login never shows the token.
        super().connect()

    @sensitive_variables()
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        login = self.azure_login
        if login is None or self.pool:
            return super().get_new_connection(conn_params)
        connect = super().get_new_connection
        return login.connect(lambda **params: connect(params), conn_params)

    @property
    def pool(self) -> Any:
        # Read on every checkout, so the common path is two dict lookups.
        if not _HAS_POOL:
            return None
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if not pool_options or self.alias == NO_DB_ALIAS:
            return None
        pool = self._connection_pools.get(self.alias)  # type: ignore[attr-defined]
        if pool is not None:
            return pool
        login = self.azure_login
        if login is None:
            return super().pool
        # Build Django's pool from a copy of the settings whose pool options
        # name our connection class; the user's OPTIONS["pool"] is untouched.
        pool_options = {} if pool_options is True else dict(pool_options)
        base = pool_options.get("connection_class", psycopg.Connection)
        pool_options["connection_class"] = token_connection_class(base, login)
        settings_dict = self.settings_dict
        self.settings_dict = {
            **settings_dict,
            "OPTIONS": {**settings_dict["OPTIONS"], "pool": pool_options},
        }
        try:
            return super().pool
        finally:
            self.settings_dict = settings_dict

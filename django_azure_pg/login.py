"""Log in to PostgreSQL with an access token, retrying once if it is refused.

Shared by the plain connection path (``DatabaseWrapper.get_new_connection``)
and the pool's connection class. No Django import here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from . import claims, credentials, options, tls, tokens
from .redaction import redact

logger = logging.getLogger("django_azure_pg.login")

C = TypeVar("C")

_REFUSED = re.compile(
    r"password authentication failed|access token (has )?expired|token.*(invalid|expired)"
    r"|LDAP authentication failed|authentication failed for user",
    re.IGNORECASE,
)


class TokenAcquisitionError(psycopg.OperationalError):
    """No access token could be obtained for a login (the cause is chained)."""


class RoleNameUnknown(psycopg.OperationalError):
    """USER is not set and the token names no principal."""


def is_refused_login(exc: BaseException) -> bool:
    """Whether the server refused the password (as opposed to the role, host or TLS)."""
    if getattr(exc, "sqlstate", None) == "28P01":
        return True
    return bool(_REFUSED.search(str(exc)))


@dataclass(frozen=True)
class TokenLogin:
    """How one database alias logs in: which credential, scope and role."""

    alias: str
    choice: credentials.CredentialChoice
    scope: str
    user: str | None
    source: tokens.TokenSource
    allow_plaintext: bool = False  # OPTIONS["allow_plaintext_token"]: see tls.py

    @classmethod
    def from_settings(
        cls,
        alias: str,
        opts: Mapping[str, Any],
        user: str | None,
        environ: Mapping[str, str] = os.environ,
        host: str | None = None,
    ) -> TokenLogin:
        options.check(opts)
        scope = credentials.scope_for(opts.get("token_scope"), host)
        choice = credentials.choose(opts, environ, scope)
        source = tokens.get_source(
            choice.key(),
            choice.factory(),
            scope,
            label=choice.name,
            refresh_margin=options.number(
                opts, "token_refresh_margin", tokens.DEFAULT_REFRESH_MARGIN
            ),
            timeout=options.number(opts, "token_timeout", tokens.DEFAULT_TIMEOUT),
            rebuild_after_fork=choice.rebuilds,
        )
        return cls(
            alias, choice, scope, user or None, source, options.flag(opts, tls.OPT_IN)
        )

    def token(self) -> str:
        try:
            return self.source.get()
        except tokens.TokenError as exc:
            raise TokenAcquisitionError(
                f"Database alias {self.alias!r}: could not get an Entra access token "
                f"from {self.choice.name} for scope {self.scope!r}. {exc}"
            ) from exc

    def role_for(self, token: str) -> str:
        if self.user:
            return self.user
        found = claims.decode(token)
        role = claims.role_name(found)
        if not role:
            raise RoleNameUnknown(
                f"Database alias {self.alias!r}: USER is not set and the access token from "
                f"{self.choice.name} names no PostgreSQL role. {claims.missing_role_hint(found)} "
                f"{claims.SERVICE_CONNECTOR_NOTE} Set DATABASES[...]['USER'] to the role name."
            )
        return role

    def connect(self, connect: Callable[..., C], params: Mapping[str, Any]) -> C:
        """Call ``connect(**params)`` with a token as the password; retry once if refused.

        Nothing is fetched or sent over a path TLS does not protect (tls.guard),
        and a refused token is followed by a fresh one only to a verified (or
        local) server.
        """
        route = tls.guard(self.alias, params, allow_plaintext=self.allow_plaintext)
        token = self.token()
        try:
            return connect(**self._with_token(params, token))
        except psycopg.OperationalError as exc:
            if (
                not is_refused_login(exc)
                or isinstance(exc, TokenAcquisitionError)
                or not route.retry_safe
            ):
                raise
            self.source.invalidate(token)
            logger.warning(
                "Login to alias %r (%s, sslmode=%s) as %r with a token from %s was refused "
                "(%s); retrying once with a fresh token",
                self.alias,
                route.describe(),
                route.sslmode,
                self.role_for(token),
                self.choice.name,
                redact(
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                ),
            )
        token = self.token()
        return connect(**self._with_token(params, token))

    def _with_token(self, params: Mapping[str, Any], token: str) -> dict[str, Any]:
        merged = options.strip(dict(params))
        merged["user"] = self.role_for(token)
        merged["password"] = token
        return merged

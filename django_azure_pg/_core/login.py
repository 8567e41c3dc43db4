"""One physical login with an access token, end to end: the route, the token, the
driver, and what to do when the server refuses.

Each alias has one :class:`TokenLogin` (built from its settings), through which the
plain connection path (``DatabaseWrapper.get_new_connection``), the pool's connection
class, dbshell and the doctor log in. A reader asking "why was this login refused"
starts at :meth:`TokenLogin.connect`; it calls only tls.py (the alias's pinned route),
token_source.py (the token), diagnosis.py (what the server's answer means) and, as a sink,
telemetry.py. No Django import here.

A refused token is one of three things:

* **out of time** — the server said it expired, or by our clock it was in
  its last moments (``Token.ran_out_during_login``) when the login reached
  the server (a slow login, a server clock ahead of ours): one fresh token
  and one retry; refused as expired again, it is reported as an expiry
  (``TokenExpiredAtServer``), never as a wrong USER, and it spends nothing of
  the refusal budget;
* **stale** — revoked server-side: one refresh and one retry cure it;
* **the wrong token for this role** — USER is not the role mapped to the
  identity: no number of fetches helps, and each one costs a call to a
  throttled identity endpoint. A token fetched for this very login cannot be
  stale, so its refusal is reported at once as a configuration error; so is
  the refusal of a token that a refusal-forced refresh fetched moments ago
  (``TokenSource.refresh_after_refusal``).

A forced refresh that fails is reported as what it is — no token could be had
(``TokenAcquisitionError``) — never as a wrong USER.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from .. import errors
from ..errors import (
    LoginRefused,
    RoleNameUnknown,
    ServerTimeout,
    TokenAcquisitionError,
    UnverifiedServer,
)
from ..redaction import detach_connections, redact, remember
from . import (
    claims,
    clouds,
    credentials,
    diagnosis,
    options,
    sources,
    telemetry,
    tls,
    token_source,
)

__all__ = ["LoginRefused", "RoleNameUnknown", "TokenAcquisitionError", "TokenLogin"]

logger = logging.getLogger(__name__)

C = TypeVar("C")
T = TypeVar("T")


@dataclass(frozen=True)
class TokenLogin:
    """How one database alias logs in: which credential, scope and role."""

    alias: str
    choice: credentials.CredentialChoice
    scope: str
    user: str | None
    source: token_source.TokenSource
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
        scope = clouds.scope_for(opts.get("token_scope"), host)
        choice = credentials.choose(opts, environ, scope)
        timeout = options.number(opts, "token_timeout", token_source.DEFAULT_TIMEOUT)
        source = sources.get_source(
            choice.key(),
            choice.factory(timeout),
            scope,
            label=choice.name,
            refresh_margin=options.number(
                opts, "token_refresh_margin", token_source.DEFAULT_REFRESH_MARGIN
            ),
            timeout=timeout,
            rebuild_after_fork=choice.rebuilds,
        )
        return cls(alias, choice, scope, user or None, source, options.flag(opts, tls.OPT_IN))

    def token(self) -> str:
        value = self._token().value
        remember(value)  # error trackers never receive it (redaction.scrub)
        return value

    def _token(self) -> token_source.Token:
        return self._acquired(self.source.get_token)

    def _refreshed(self, refused: token_source.Token, timed: bool) -> token_source.Token | None:
        return self._acquired(lambda: self.source.refresh_after_refusal(refused, timed=timed))

    def _acquired(self, fetch: Callable[[], T]) -> T:
        """``fetch()``; a token that could not be had becomes a login error naming the alias."""
        try:
            return fetch()
        except token_source.TokenError as exc:
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

    def routed(self, params: Mapping[str, Any]) -> tls.Routed:
        """``params`` with the alias's pinned route written in, and the route (tls.py)."""
        return tls.routed(params, token=True, alias=self.alias)

    def guard(self, params: Mapping[str, Any]) -> tuple[tls.Routed, tls.Route]:
        """The parameters to send a token with, and their route, checked.

        :raises InsecureTransport: the path is not one TLS protects (before any token
            is fetched).
        """
        ready = params if isinstance(params, tls.Routed) else None
        route = ready.current_route() if ready is not None else None
        if ready is None or route is None:
            ready = self.routed(params)
            route = ready.route
        return ready, tls.check(self.alias, route, allow_plaintext=self.allow_plaintext)

    def connect(self, connect: Callable[..., C], params: Mapping[str, Any]) -> C:
        """``connect(**params)`` with a token as the password, along the alias's route.

        The one physical login of every path (the plain connection and
        ``CONN_MAX_AGE``, the pool's connection class, the doctor), end to end: the
        pinned route guarded, a token, the driver called by :meth:`_dial`, and one
        retry with a fresh token where the refused one may have been stale (see the
        module docstring). The login is observed (``telemetry.LoginSeen``), and no
        exception of its chain keeps psycopg's ``pgconn``, which holds the token.

        :raises InsecureTransport: the route is not protected (no token fetched).
        :raises TokenAcquisitionError: no token could be had.
        :raises LoginRefused: the server refused the token and a fresh one would fare
            no better (a subclass names the cause).
        :raises LoginError: another failure explained (an unverified certificate, a
            silent host, a server out of connection slots).
        :raises psycopg.OperationalError: any other failure, as the driver raised it.
        """
        ready, route = self.guard(params)
        try:
            with telemetry.LoginSeen(self.alias, self.source.label, ready) as seen:
                return self._login(connect, ready, route, seen)
        except BaseException as exc:
            detach_connections(exc)
            raise

    def _login(
        self,
        connect: Callable[..., C],
        params: tls.Routed,
        route: tls.Route,
        seen: telemetry.LoginSeen,
    ) -> C:
        clock = self.source.clock
        asked = clock()
        token = self._token()
        try:
            return self._dial(connect, params, token, route, seen)
        except psycopg.OperationalError as exc:
            refusal = diagnosis.login_refusal(exc)
            if refusal is None:
                raise
            late = token.ran_out_during_login(clock())
            timed = late or refusal is errors.TokenExpiredAtServer
            fresh_for_this_login = token.obtained_at >= asked
            if timed and fresh_for_this_login and not late:
                # The server calls a token we just fetched, with time to spare by our
                # clock, expired: its clock is ahead. A fresh one would fare no better.
                raise self._refused(errors.TokenExpiredAtServer, token, exc) from exc
            if not timed and (refusal is not diagnosis.RefusedUnspecified or fresh_for_this_login):
                # Not about the token's age, or the token was fetched for this very
                # login and cannot be stale: a fresh one would be refused too.
                raise self._refused(refusal, token, exc) from exc
            if not route.retry_safe:
                raise
            fresh = self._refreshed(token, timed)
            if fresh is None:
                raise self._refused(errors.TokenNotForRole, token, exc) from exc
            logger.warning(
                "Login to alias %r (%s, sslmode=%s) as %r with a token from %s was refused "
                "(%s); retrying once with a fresh token",
                self.alias,
                route.describe(),
                route.sslmode,
                self.role_for(token.value),
                self.choice.name,
                redact(diagnosis.server_message(exc)),
            )
        try:
            return self._dial(connect, params, fresh, route, seen)
        except psycopg.OperationalError as exc:
            refusal = diagnosis.login_refusal(exc)
            if refusal is None:
                raise
            if fresh.ran_out_during_login(clock()):
                refusal = errors.TokenExpiredAtServer  # out of time twice: an expiry
            raise self._refused(refusal, fresh, exc) from exc

    def _dial(
        self,
        connect: Callable[..., C],
        params: tls.Routed,
        token: token_source.Token,
        route: tls.Route,
        seen: telemetry.LoginSeen,
    ) -> C:
        """The one call to the driver. A refusal goes back to :meth:`_login`'s verdict
        (counted first); any other failure that has a fix is raised as the error that
        says it: a certificate that did not verify, no answer in time, no slot left."""
        given = self._with_token(params, token.value)
        seen.attempt()
        try:
            return connect(**given)
        except psycopg.OperationalError as exc:
            refusal = diagnosis.login_refusal(exc)
            if refusal is not None:
                seen.refused(refusal.__name__)
                raise
            if diagnosis.classify(exc) is diagnosis.TlsVerify:
                raise UnverifiedServer(tls.unverified_message(self.alias, route, exc)) from exc
            if tls.CONNECT_TIMED_OUT is not None and isinstance(exc, tls.CONNECT_TIMED_OUT):
                raise ServerTimeout(tls.timeout_message(self.alias, route, params)) from exc
            failure = diagnosis.login_failure(self.alias, exc)
            if failure is not None:
                raise failure from exc
            raise

    def _refused(
        self,
        refusal: type[LoginRefused] | type[diagnosis.RefusedUnspecified],
        token: token_source.Token,
        exc: BaseException,
    ) -> LoginRefused:
        """The error for a refusal no fresh token cures: who tried, as whom, and what to do.

        A refusal without a reason that no fresh token cures means the token is not
        for this role (:class:`TokenNotForRole`).
        """
        cause = errors.TokenNotForRole if refusal is diagnosis.RefusedUnspecified else refusal
        assert issubclass(cause, LoginRefused)
        found = claims.decode(token.value)
        principal = claims.role_name(found) or "(no name claim)"
        oid = found.get("oid")
        said = redact(diagnosis.server_message(exc))
        role = self.user or claims.role_name(found)
        # USER empty: the role came from the token, and the fix names the real role and id.
        as_whom = (
            f"USER {role!r}"
            if self.user
            else f"role {role!r} (taken from the token's claims: USER is empty)"
        )
        advice = diagnosis.ADVICE[cause].filled(role, oid if isinstance(oid, str) else None)
        verdict = "a fresh token would be refused too"
        if cause is errors.TokenExpiredAtServer:
            left = token.expires_on - self.source.clock()
            verdict = f"by this machine's clock the token ({token.lifetime:.0f} s long) " + (
                f"had {left:.1f} s left" if left >= 0 else f"had expired {-left:.1f} s before"
            )
        return cause(
            f"Database alias {self.alias!r}: the server refused the login as {as_whom} "
            f"with an access token from {self.choice.name} for principal {principal!r} "
            f"(object id {oid or '(no oid claim)'}); {verdict}. The server said: {said}. "
            f"Likely cause: {advice.cause} Fix: {advice.fix}",
            said,
        )

    def _with_token(self, params: Mapping[str, Any], token: str) -> dict[str, Any]:
        merged = options.strip(dict(params))
        merged["user"] = self.role_for(token)
        remember(token)  # error trackers never receive it (redaction.scrub)
        merged["password"] = token
        return merged

"""One connector per database alias: the route, the token login and the role, and one ``connect``.

Built once from the alias's validated settings (:meth:`Connector.from_settings`),
it is what every path that sends a token goes through: the plain connection and
``CONN_MAX_AGE`` (``mixin.get_new_connection``), the pool's connection class
(``pool.py``), ``dbshell`` (``client.py``) and the doctor. ``manage.py check``,
which builds no login, judges its route with :func:`routed` too.

The route (``tls.py``: where libpq sends the login, and how) is worked out
**once per physical connection**: :func:`routed` writes the TLS defaults into
the parameters and keeps the route it found beside them (a :class:`Routed`
dict), and :meth:`Connector.connect` guards with that same route instead of
asking libpq again. Parameters that no longer match what was judged (a
subclass changed them, or they were copied) are judged afresh: the guard never
trusts a route for parameters it was not worked out for.

No Django import here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from . import telemetry, tls
from .login import TokenLogin

__all__ = ["Connector", "Routed", "route_of", "routed"]

C = TypeVar("C")


class Routed(dict[str, Any]):
    """Connection parameters with the TLS defaults written in, and the route they take.

    A plain ``dict`` to everything else (Django, psycopg, a wrapped backend). The
    parameters as judged are kept, so that a route is reused only for the very
    parameters it was worked out for: any change at all, even one libpq ignores,
    has them judged again.
    """

    route: tls.Route
    judged: dict[str, Any]

    def current_route(self) -> tls.Route | None:
        """The route, if the parameters are still the ones it was worked out for."""
        return self.route if self == self.judged else None


def routed(
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
) -> Routed:
    """``params`` with the route policy's defaults (``tls.settle``), and the route: one resolution.

    ``token``: a token login (stricter defaults; see tls.py). ``dial=False``: offline
    (``manage.py check``), private-link names are renamed but not looked up.
    """
    result = Routed(params)
    result.route = tls.settle(result, environ, token=token, dial=dial)
    result.judged = dict(result)
    return result


def route_of(params: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> tls.Route:
    """The route ``params`` take: the one :func:`routed` found with them, else resolved now."""
    if isinstance(params, Routed) and environ is os.environ:
        found = params.current_route()
        if found is not None:
            return found
    return tls.resolve(params, environ)


@dataclass(frozen=True)
class Connector:
    """How one alias connects: its token login (credential, scope, role, token source)
    and the route policy, around one :meth:`connect` per physical connection."""

    login: TokenLogin

    @classmethod
    def from_settings(
        cls,
        alias: str,
        opts: Mapping[str, Any],
        user: str | None,
        environ: Mapping[str, str] = os.environ,
        host: str | None = None,
    ) -> Connector:
        """From validated settings (``OPTIONS``, ``USER``, ``HOST``); raises what
        ``TokenLogin.from_settings`` raises for settings that cannot work."""
        return cls(TokenLogin.from_settings(alias, opts, user, environ, host))

    @property
    def alias(self) -> str:
        return self.login.alias

    def routed(self, params: Mapping[str, Any]) -> Routed:
        """``params`` with a token login's TLS defaults, and their route (one resolution)."""
        return routed(params, token=True)

    def guard(self, params: Mapping[str, Any]) -> tuple[Routed, tls.Route]:
        """The parameters to send a token with, and their route, checked (``tls.check``).

        Raises :class:`~django_azure_pg.errors.InsecureTransport` before any token is
        fetched for a path TLS does not protect.
        """
        ready = params if isinstance(params, Routed) else None
        route = ready.current_route() if ready is not None else None
        if ready is None or route is None:
            ready = self.routed(params)
            route = ready.route
        return ready, tls.check(self.alias, route, allow_plaintext=self.login.allow_plaintext)

    def connect(self, connect: Callable[..., C], params: Mapping[str, Any]) -> C:
        """``connect(**params)`` with a token as the password, along a guarded route.

        The route is worked out once for this physical connection (or taken from
        :meth:`routed`, which worked it out for these very parameters) and serves
        both the TLS defaults and the guard. The login (one retry with a fresh token
        for a stale one) is ``TokenLogin.connect``; telemetry observes it and
        ``tls.explained`` says how to fix a certificate that did not verify.
        """
        ready, route = self.guard(params)
        return telemetry.login(
            self.login, tls.explained(self.alias, connect, route), ready, route=route
        )

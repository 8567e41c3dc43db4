"""One connector per database alias: the route, the token login and the role, and one ``connect``.

Built once from the alias's validated settings (:meth:`Connector.from_settings`),
it is what every path that sends a token goes through: the plain connection and
``CONN_MAX_AGE`` (``mixin.get_new_connection``), the pool's connection class
(``_pool.py``), ``dbshell`` (``_client.py``) and the doctor. ``manage.py check``,
which builds no login, judges its route with :func:`routed` too.

**The route is decided once per alias** (:func:`routed` with an alias): the first
connection works it out from the settings, the service file and the environment
(``tls.decide``) and every later one writes the same explicit host, hostaddr,
port, sslmode and sslrootcert into its parameters. Explicit parameters beat the
service file and the ``PG*`` variables in libpq, so nothing outside the settings
can move where the token goes; changing the environment or the service file
needs a restart, like a change of settings. Only private-link names are looked
up again for each connection (a failover moves their address). The decision is
kept per alias *and* parameters (without the password): a settings override
gets its own.

No Django import here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..redaction import detach_connections
from . import telemetry, tls
from .login import TokenLogin

__all__ = ["Connector", "Routed", "route_of", "routed"]

C = TypeVar("C")


class Routed(dict[str, Any]):
    """Connection parameters with the route's keys written in, and the route they take.

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


_PINNED: dict[tuple[Any, ...], tls.Decision] = {}
_PINNED_MAX = 256
_pin_lock = threading.Lock()


def _pin_key(alias: str, token: bool, params: Mapping[str, Any]) -> tuple[Any, ...]:
    given = tls.libpq_params(params)
    return (alias, token, tuple(sorted((k, str(v)) for k, v in given.items() if k != "password")))


def decision(
    alias: str | None,
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
) -> tls.Decision:
    """The alias's decision for ``params``: the pinned one, else decided now (and pinned
    when it is this process's own environment, online, and libpq could use it)."""
    if alias is None or environ is not os.environ or not dial:
        return tls.decide(params, environ, token=token, dial=dial)
    key = _pin_key(alias, token, params)
    found = _PINNED.get(key)
    if found is None:
        found = tls.decide(params, environ, token=token, dial=dial)
        if found.pinnable:
            with _pin_lock:
                if len(_PINNED) >= _PINNED_MAX:
                    _PINNED.clear()
                found = _PINNED.setdefault(key, found)
    return found


def forget_routes() -> None:
    """Drop every pinned route (tests; a process that changed its environment on purpose)."""
    with _pin_lock:
        _PINNED.clear()


def routed(
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
    alias: str | None = None,
) -> Routed:
    """``params`` with the route's keys written in (``tls.Decision``), and the route.

    ``alias``: pin the decision for this alias (see the module docstring); without one,
    decided afresh (``manage.py check``, what-ifs). ``token``: a token login (stricter
    defaults; see tls.py). ``dial=False``: offline (``manage.py check``), private-link
    names are renamed but not looked up.
    """
    result = Routed(params)
    result.route = decision(alias, params, environ, token=token, dial=dial).apply(result)
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
        """``params`` with the alias's pinned route written in, and the route."""
        return routed(params, token=True, alias=self.alias)

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

        The route is the alias's pinned one (taken from :meth:`routed`'s result when
        ``params`` is one, unchanged). The login (one retry with a fresh token
        for a stale one) is ``TokenLogin.connect``; telemetry observes it and
        ``tls.explained`` says how to fix a certificate that did not verify.
        """
        ready, route = self.guard(params)
        try:
            return telemetry.login(
                self.login, tls.explained(self.alias, connect, route), ready, route=route
            )
        except BaseException as exc:
            detach_connections(exc)  # psycopg's pgconn holds the token
            raise

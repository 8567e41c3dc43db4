"""Django's native pool, with a connection class that logs in with a fresh token.

Django builds its pool once, from one call to ``get_connection_params()``;
handing the pool a password would freeze the first token into it and every
physical connection opened after that token expires would fail. Instead the
pool gets a connection class: psycopg_pool calls ``connection_class.connect()``
for each new physical connection (in its worker threads), and that is where
the token is fetched. Works with every psycopg_pool version Django supports.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict

from ._core.login import TokenLogin


def token_connection_class(
    base: type[psycopg.Connection[Any]], login: TokenLogin
) -> type[psycopg.Connection[Any]]:
    class TokenConnection(base):  # type: ignore[valid-type,misc]
        azure_login = login

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            # psycopg merges conninfo under the keyword arguments: the route guarded
            # must be the merged one (token_pool already folds OPTIONS["pool"]["conninfo"]
            # in; this catches any other caller).
            params = {**conninfo_to_dict(conninfo), **kwargs} if conninfo else kwargs

            def connect_base(**merged: Any) -> Any:
                return super(TokenConnection, cls).connect("", **merged)

            # The alias's pinned route, the same the plain path takes (a private-link
            # name is looked up again for this connection).
            return cls.azure_login.connect(connect_base, params)

    TokenConnection.__name__ = TokenConnection.__qualname__ = f"{base.__name__}WithToken"
    return TokenConnection


def token_pool(wrapper: Any, login: TokenLogin, pool_options: Mapping[str, Any] | bool) -> Any:
    """The ``psycopg_pool.ConnectionPool`` Django's ``pool`` property would build
    for ``wrapper``, with a token connection class around the user's (or psycopg's).

    Built here rather than by Django because Django passes no connection class
    of its own; the settings (and the user's ``OPTIONS["pool"]``) are only read.
    Same rules and defaults as Django 5.1 to 6.1: no ``CONN_MAX_AGE``, not opened
    here, autocommit, ``configure`` = the wrapper's, ``check`` from
    ``CONN_HEALTH_CHECKS`` unless the pool options name one (as Django 6.1 allows).
    """
    settings_dict = wrapper.settings_dict
    if settings_dict.get("CONN_MAX_AGE", 0) != 0:
        raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
    try:
        from psycopg_pool import ConnectionPool
    except ImportError as err:
        raise ImproperlyConfigured(
            "Error loading psycopg_pool module.\nDid you install psycopg[pool]?"
        ) from err
    kwargs = dict(pool_options) if isinstance(pool_options, Mapping) else {}
    base = kwargs.get("connection_class", psycopg.Connection)
    kwargs["connection_class"] = token_connection_class(base, login)
    kwargs.setdefault(
        "check", ConnectionPool.check_connection if settings_dict["CONN_HEALTH_CHECKS"] else None
    )
    # psycopg merges the pool's conninfo under its kwargs: fold it in before the
    # route policy's defaults, so the route judged is the one libpq takes.
    conninfo = kwargs.pop("conninfo", "") or ""
    connect_kwargs = {**conninfo_to_dict(conninfo), **wrapper.raw_connection_params()}
    # Refused here, at first use, rather than in the pool's worker threads, where the
    # refusal would reach the caller only as "couldn't get a connection after N sec".
    # This also pins the alias's route; every pooled connection takes it (the kwargs
    # stay the settings' own, so that nothing the decision wrote is mistaken for the
    # user's choice).
    login.guard(connect_kwargs)
    connect_kwargs["autocommit"] = True  # as Django: it sets the real mode per checkout
    pool = ConnectionPool(
        kwargs=connect_kwargs,
        open=False,
        configure=wrapper._configure_connection,
        **kwargs,
    )
    close_at_exit(pool)
    return pool


EXIT_TIMEOUT = 1.0
"""Seconds :func:`close_at_exit` waits for each of a pool's threads at interpreter exit."""

_at_exit: weakref.WeakSet[Any] = weakref.WeakSet()
_at_exit_lock = threading.Lock()
_registered = False


def close_at_exit(pool: Any) -> None:
    """Close ``pool`` when the interpreter exits, before its workers can log in again.

    A pool's workers are daemon threads: at exit they keep opening and retrying
    connections (to fill ``min_size``, after a failure) until the interpreter stops
    them. A token login may need a token fetch, which runs in a thread of its own,
    and from Python 3.12 no thread may start once the main thread has finished: the
    pool then logs ``error connecting in 'pool-1': can't create new thread at
    interpreter shutdown``. The stock pool's password logins start no thread, so it
    says nothing. A closed pool opens nothing more (psycopg_pool ``close()``).
    """
    global _registered
    with _at_exit_lock:
        if not _registered:
            atexit.register(_close_all)
            _registered = True
        _at_exit.add(pool)


def _close_all() -> None:
    """At exit: close the pools still open. An idle worker stops at once; one still inside
    a login gets :data:`EXIT_TIMEOUT` (psycopg_pool says so if it does not stop in time)."""
    with _at_exit_lock:
        pools = list(_at_exit)
        _at_exit.clear()
    for pool in pools:
        try:
            pool.close(timeout=EXIT_TIMEOUT)
        except Exception:  # noqa: S112 — at exit, one pool must not keep another open
            continue

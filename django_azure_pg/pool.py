"""A psycopg connection class that logs in with a fresh token.

Django builds its pool once, from one call to ``get_connection_params()``;
handing the pool a password would freeze the first token into it and every
physical connection opened after that token expires would fail. Instead the
pool gets this class: psycopg_pool calls ``connection_class.connect()`` for
each new physical connection (in its worker threads), and that is where the
token is fetched. Works with every psycopg_pool version Django supports.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .login import TokenLogin


def token_connection_class(
    base: type[psycopg.Connection[Any]], login: TokenLogin
) -> type[psycopg.Connection[Any]]:
    class TokenConnection(base):  # type: ignore[valid-type,misc]
        azure_login = login

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            def connect_base(**params: Any) -> Any:
                return super(TokenConnection, cls).connect(conninfo, **params)

            return cls.azure_login.connect(connect_base, kwargs)

    TokenConnection.__name__ = TokenConnection.__qualname__ = f"{base.__name__}WithToken"
    return TokenConnection

"""The errors this package raises: each carries its cause as its type.

Catch them by type (``except LoginRefused``), never by their wording. What an
error from elsewhere means — the server's, libpq's, azure-identity's — and what
to do about any of them is :mod:`._core.diagnosis`. No Django import.
"""

from __future__ import annotations

import psycopg

__all__ = [
    "InsecureTransport",
    "LoginError",
    "LoginRefused",
    "PasswordRefused",
    "RoleMissing",
    "RoleNameUnknown",
    "RoleTypeMismatch",
    "ServerTimeout",
    "TokenAcquisitionError",
    "TokenError",
    "TokenExpiredAtServer",
    "TokenNotForRole",
    "TokenThrottled",
    "TokenTimeout",
    "TooManyConnections",
    "UnverifiedServer",
]

# -- errors this package raises ------------------------------------------------


class TokenError(Exception):
    """No token could be obtained. The message never contains a token."""


class TokenTimeout(TokenError):
    """The credential did not answer within the configured bound."""


class TokenThrottled(TokenError):
    """The identity endpoint answered HTTP 429 and no valid token is cached."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoginError(psycopg.OperationalError):
    """A login with an access token failed; the subclass says why."""


class InsecureTransport(LoginError):
    """A token login would send the token over a path TLS does not protect (nothing was sent)."""


class UnverifiedServer(LoginError):
    """The server's certificate did not prove the name a token login verifies (nothing was sent)."""


class ServerTimeout(LoginError):
    """No server answered within ``connect_timeout`` (per address tried); no token was
    sent. The message names the host and port and what to check."""


class TokenAcquisitionError(LoginError):
    """No access token could be obtained for a login (the cause is chained)."""


class RoleNameUnknown(LoginError):
    """USER is not set and the token names no principal."""


class LoginRefused(LoginError):
    """The server refused a token login, and a refreshed token would not help."""

    def __init__(self, message: str, server_message: str = "") -> None:
        super().__init__(message)
        self.server_message = server_message


class TokenNotForRole(LoginRefused):
    """The server refused a token fetched moments ago: USER is not this identity's role."""


class RoleTypeMismatch(LoginRefused):
    """The role was created for another kind of principal (user vs service)."""


class TokenExpiredAtServer(LoginRefused):
    """The token ran out of time at login, again with a fresh token or a token just fetched."""


class RoleMissing(LoginRefused):
    """The role named by USER does not exist on the server."""


class PasswordRefused(LoginError):
    """The server refused the PASSWORD of an alias whose ENGINE would log in with tokens
    (a PASSWORD turns the token login off)."""

    def __init__(self, message: str, server_message: str = "") -> None:
        super().__init__(message)
        self.server_message = server_message


class TooManyConnections(LoginError):
    """The server had no connection slot left for the login (SQLSTATE 53300)."""

    def __init__(self, message: str, server_message: str = "") -> None:
        super().__init__(message)
        self.server_message = server_message

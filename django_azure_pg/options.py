"""The OPTIONS keys this backend reads; they never reach libpq."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CREDENTIAL_KEYS = ("credential", "client_id", "client_secret", "tenant_id")
TOKEN_KEYS = ("token_scope", "token_refresh_margin", "token_timeout")
OUR_KEYS = frozenset(CREDENTIAL_KEYS + TOKEN_KEYS)
"""Removed from the connection parameters before psycopg sees them."""


DEFAULT_SSLMODE = "require"


def default_sslmode(params: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """The sslmode we add when the settings name none: ``require``, unless libpq gets one
    from a service file or ``PGSSLMODE`` (then ``None``: leave it to libpq)."""
    if "sslmode" in params or "service" in params or "PGSSLMODE" in environ:
        return None
    return DEFAULT_SSLMODE


def strip(params: dict[str, Any]) -> dict[str, Any]:
    """Remove our keys from connection parameters, in place."""
    for key in OUR_KEYS:
        params.pop(key, None)
    return params


def number(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"OPTIONS[{key!r}] must be a number of seconds, got {value!r}") from None
    if result <= 0:
        raise ValueError(f"OPTIONS[{key!r}] must be positive, got {value!r}")
    return result


def one_off(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a DATABASES entry for a single, unpooled connection (commands, diagnostics)."""
    opts = {k: v for k, v in (entry.get("OPTIONS") or {}).items() if k != "pool"}
    return {**entry, "OPTIONS": opts, "CONN_MAX_AGE": 0}

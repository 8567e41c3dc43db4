"""Helpers shared by the management commands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def one_off(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a DATABASES entry for a single, unpooled connection (commands, diagnostics)."""
    opts = {k: v for k, v in (entry.get("OPTIONS") or {}).items() if k != "pool"}
    return {**entry, "OPTIONS": opts, "CONN_MAX_AGE": 0}

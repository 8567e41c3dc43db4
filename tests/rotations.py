"""Drive work across several token lifetimes and one database restart (workers, ASGI tests)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django_azure_pg_testing import LocalPostgres

LIFETIME = 2.0
"""Token lifetime for these runs: they last 3.5 of them, the restart comes after 2."""


def across_rotations_and_a_restart(
    postgres: LocalPostgres, step: Callable[[], None], restarted: Callable[[], None]
) -> float:
    """Call ``step`` back to back for 3.5 token lifetimes, restarting the server after 2;
    ``restarted`` is called once the server is back. Returns the seconds it all took."""
    start = time.monotonic()
    while time.monotonic() < start + 2 * LIFETIME:
        step()
    postgres.restart()  # every session dropped; the server is back when this returns
    restarted()
    while time.monotonic() < start + 3.5 * LIFETIME:
        step()
    return time.monotonic() - start

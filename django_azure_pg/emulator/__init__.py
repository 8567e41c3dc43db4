"""Local stand-ins for Azure: a managed-identity endpoint and an Entra-enabled PostgreSQL.

Used by the test suite, ``make demo``, the benchmarks and the soak suite; also
handy for developing against a laptop database without an Azure account.
"""

from .identity import Identity, IdentityEmulator
from .postgres import LocalPostgres

__all__ = ["Identity", "IdentityEmulator", "LocalPostgres"]

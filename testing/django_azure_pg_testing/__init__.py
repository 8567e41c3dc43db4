"""A testing kit for django-azure-pg: Azure's identity endpoint and an Entra-style PostgreSQL, locally.

Run a Django test suite (or a laptop) through real Entra-token logins, token
rotations and identity-endpoint faults without an Azure account:

* :class:`IdentityEmulator` speaks the App Service and IMDS managed-identity
  protocols to real azure-identity credentials, mints JWT-shaped tokens and
  answers the LDAP binds that make a local PostgreSQL accept exactly those tokens;
* :class:`LocalPostgres` starts a throwaway PostgreSQL that checks tokens that way;
* the pytest plugin (``django_azure_pg_testing.pytest_plugin``) gives fixtures.

Never imported by ``django_azure_pg`` itself. Loopback only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .identity import Identity, IdentityEmulator
    from .postgres import LocalPostgres

__version__ = "0.1.0"
__all__ = ["Identity", "IdentityEmulator", "LocalPostgres", "__version__"]

_WHERE = {"Identity": "identity", "IdentityEmulator": "identity", "LocalPostgres": "postgres"}


def __getattr__(name: str) -> Any:
    # Lazy: the PostgreSQL launcher needs POSIX (pwd) and cryptography; the
    # identity endpoint and token minting need neither.
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Passwordless Django on Azure Database for PostgreSQL with Microsoft Entra ID."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

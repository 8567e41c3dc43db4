from __future__ import annotations

from django.apps import AppConfig


class DjangoAzurePgConfig(AppConfig):
    """Adds the management commands and system checks; the ENGINE works without it."""

    name = "django_azure_pg"
    verbose_name = "Azure Database for PostgreSQL (Entra ID)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            _checks,  # noqa: F401 — registers the checks
            _warm,
        )

        _warm.on_ready()  # a thread, where this process will log in (see _warm.py)

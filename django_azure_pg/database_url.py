"""dj-database-url support: ``azure-postgres://role@host:5432/db?sslmode=verify-full``.

Registered when the package is imported; query parameters land in OPTIONS as
dj-database-url does for every scheme (our own keys such as ``client_id`` or
``token_scope`` included).
"""

from __future__ import annotations

from typing import Any

ENGINE = "django_azure_pg"
URL_SCHEMES = ("azure-postgres", "azure-postgresql")


def register_url_schemes() -> None:
    import dj_database_url

    for scheme in URL_SCHEMES:
        if dj_database_url.ENGINE_SCHEMES.get(scheme) is None:
            # Post-processed like dj-database-url's own postgres schemes
            # (?currentSchema=x → search_path).
            dj_database_url.register(scheme, ENGINE)(dj_database_url.apply_current_schema)


def parse(url: str) -> dict[str, Any]:
    import dj_database_url

    register_url_schemes()
    return dict(dj_database_url.parse(url))

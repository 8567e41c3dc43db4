"""System checks for ``django_azure_pg`` aliases: cheap, offline, run by ``manage.py check``."""

from __future__ import annotations

import difflib
import os
import shutil
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from . import credentials, options

AZURE_HOST_SUFFIXES = (
    ".postgres.database.azure.com",
    ".postgres.database.chinacloudapi.cn",
    ".postgres.database.usgovcloudapi.net",
)
WEAK_SSLMODES = {"disable", "allow", "prefer"}
_DJANGO_KEYS = {"pool", "isolation_level", "assume_role", "server_side_binding"}
_PSYCOPG_KEYS = {"autocommit", "prepare_threshold", "cursor_factory", "context", "row_factory"}
_IDENTITY_HINTS = (
    "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST", "WEBSITE_SITE_NAME", "AZURE_TOKEN_CREDENTIALS",
)  # fmt: skip


def _libpq_keywords() -> set[str]:
    import psycopg

    return {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}


@register()
def check_databases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings

    messages: list[CheckMessage] = []
    for alias, entry in settings.DATABASES.items():
        if entry.get("ENGINE") == "django_azure_pg":
            messages += check_alias(alias, entry, os.environ)
    return messages


def check_alias(alias: str, entry: dict[str, Any], environ: Any) -> list[CheckMessage]:
    opts: dict[str, Any] = entry.get("OPTIONS") or {}
    where = f"DATABASES[{alias!r}]"
    out: list[CheckMessage] = []

    known = _libpq_keywords() | _DJANGO_KEYS | _PSYCOPG_KEYS | options.OUR_KEYS
    for key in sorted(set(opts) - known):
        close = difflib.get_close_matches(key, sorted(options.OUR_KEYS | _DJANGO_KEYS), n=1)
        out.append(
            Error(
                f"{where}['OPTIONS'] has an unknown key {key!r}.",
                hint=f"Did you mean {close[0]!r}?"
                if close
                else "It is neither a django_azure_pg option, a Django option nor a libpq keyword.",
                id="django_azure_pg.E004",
            )
        )

    host = str(entry.get("HOST") or "")
    sslmode = str(
        opts.get("sslmode") or environ.get("PGSSLMODE") or options.default_sslmode(opts, environ)
    )
    if host.lower().endswith(AZURE_HOST_SUFFIXES) and sslmode in WEAK_SSLMODES:
        out.append(
            Warning(
                f"{where} connects to Azure with sslmode={sslmode!r}.",
                hint="Azure requires TLS: use 'require' (the default) or 'verify-full' with sslrootcert.",
                id="django_azure_pg.W002",
            )
        )

    if opts.get("pool") and entry.get("CONN_MAX_AGE", 0) != 0:
        out.append(
            Error(
                f"{where} combines OPTIONS['pool'] with CONN_MAX_AGE={entry.get('CONN_MAX_AGE')!r}.",
                hint="Django's pool does not support persistent connections: set CONN_MAX_AGE = 0.",
                id="django_azure_pg.E003",
            )
        )

    if entry.get("PASSWORD"):
        return out  # password authentication: nothing more to check
    try:
        choice = credentials.choose(opts, environ)
    except credentials.CredentialConfigError as exc:
        out.append(
            Error(
                f"{where} has no usable credential: {exc}",
                hint="Set a complete set of variables, OPTIONS['credential'], or PASSWORD.",
                id="django_azure_pg.E001",
            )
        )
        return out
    if (
        choice.kind == "default"
        and not any(environ.get(v) for v in _IDENTITY_HINTS)
        and shutil.which("az") is None
    ):
        out.append(
            Warning(
                f"{where}: DefaultAzureCredential will probably find no identity here "
                "(no managed-identity endpoint, workload identity or az CLI in sight).",
                hint="On a laptop run 'az login'; in Azure enable a managed identity on the app.",
                id="django_azure_pg.W001",
            )
        )
    if not entry.get("USER") and choice.kind == "service_principal":
        out.append(
            Error(
                f"{where} has no USER, and a service principal's token names no PostgreSQL role.",
                hint="Set USER to the role created for the service principal (e.g. aad_<connection>).",
                id="django_azure_pg.E005",
            )
        )
    return out

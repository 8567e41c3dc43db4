"""System checks for ``django_azure_pg`` aliases: cheap, offline, run by ``manage.py check``.

Imported by the app's ``ready()``, so by every ``django.setup()``: what the checks need of
azure-identity and psycopg (``credentials``, ``tls``) is imported when
they run, not here — a command that runs no checks, or a worker that has not connected
yet, does not load them.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
from typing import Any

import django
from django.core.checks import CheckMessage, Error, Warning, register

from ._core import claims, options

_DJANGO_KEYS = {"pool", "isolation_level", "assume_role", "server_side_binding"}
"""Keys Django's postgresql backend reads itself (not introspectable)."""


def _may_have_imds(environ: Any) -> bool:
    """W001 must stay quiet where the Instance Metadata Service answers; the signs of such
    a host live in _core/credentials.py, which also builds ManagedIdentityCredential there."""
    from ._core import credentials

    return credentials.may_have_imds(environ)


def _pool_installed() -> bool:
    """Whether psycopg_pool can be imported: looked up, not imported (checks stay cheap)."""
    import importlib.util

    try:
        return importlib.util.find_spec("psycopg_pool") is not None
    except (ImportError, ValueError):
        return False


POOL_DJANGO = (5, 1)
"""Django's postgresql backend has had OPTIONS["pool"] since 5.1."""

HOST_SOURCES = ("AZURE_POSTGRESQL_HOST", "AZURE_POSTGRESQL_CONNECTIONSTRING (host=…)")
"""Where Service Connector puts the server's name (django/none client types; python)."""

_LIBPQ_HOST_KEYS = ("host", "hostaddr", "service")
_LIBPQ_HOST_VARS = ("PGHOST", "PGHOSTADDR", "PGSERVICE")


def _libpq_keywords() -> set[str]:
    """Connection keywords the installed libpq knows (newer libpq, more keywords)."""
    import psycopg

    return {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}


def _psycopg_keywords() -> set[str]:
    """Keyword arguments of the installed psycopg's ``Connection.connect``."""
    import inspect

    import psycopg

    params = inspect.signature(psycopg.Connection.connect).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


@register()
def check_databases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings

    from .mixin import has_token_login

    messages: list[CheckMessage] = []
    for alias, entry in settings.DATABASES.items():
        if has_token_login(str(entry.get("ENGINE") or "")):  # any ENGINE with our login
            messages += check_alias(alias, entry, os.environ)
    return messages


def check_alias(alias: str, entry: dict[str, Any], environ: Any) -> list[CheckMessage]:
    opts: dict[str, Any] = entry.get("OPTIONS") or {}
    where = f"DATABASES[{alias!r}]"
    out: list[CheckMessage] = []

    known = _libpq_keywords() | _psycopg_keywords() | _DJANGO_KEYS | options.OUR_KEYS
    for key in sorted(set(opts) - known):
        close = difflib.get_close_matches(key, sorted(options.OUR_KEYS | _DJANGO_KEYS), n=1)
        # A Warning, as Django does for likely typos: a keyword of a newer libpq
        # or Django than this check knows must not block migrate.
        out.append(
            Warning(
                f"{where}['OPTIONS'] has an unknown key {key!r}.",
                hint=f"Did you mean {close[0]!r}?"
                if close
                else "It is neither a django_azure_pg option, a Django option, a psycopg "
                "argument nor a keyword of the installed libpq.",
                id="django_azure_pg.W004",
            )
        )

    for problem in options.problems(opts):
        out.append(
            Error(
                f"{where}: {problem}",
                hint="Fix the value in OPTIONS; see the settings reference (docs/settings.md).",
                id="django_azure_pg.E007",
            )
        )

    out += _transport(alias, entry, opts, environ)
    out += _password(alias, entry)
    out += _host(alias, entry, opts, environ)

    if opts.get("pool") and django.VERSION[:2] < POOL_DJANGO:
        out.append(
            Error(
                f"{where} sets OPTIONS['pool'], but Django {django.get_version()} has no "
                "connection pool (Django 5.1 added it); the first connection would fail.",
                hint="Remove OPTIONS['pool'] (CONN_MAX_AGE keeps connections open), or "
                "upgrade to Django 5.2 LTS.",
                id="django_azure_pg.E012",
            )
        )

    if opts.get("pool") and django.VERSION[:2] >= POOL_DJANGO and not _pool_installed():
        out.append(
            Error(
                f"{where} sets OPTIONS['pool'], but psycopg_pool is not installed; the first "
                "query would fail with Django's 'Error loading psycopg_pool module'.",
                hint="pip install 'psycopg[pool]' (psycopg_pool), or remove OPTIONS['pool'].",
                id="django_azure_pg.E013",
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
    from ._core import credentials

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
        and not any(environ.get(v) for v in credentials.IDENTITY_HINTS)
        and shutil.which("az") is None
        and not _may_have_imds(environ)
    ):
        out.append(
            Warning(
                f"{where}: DefaultAzureCredential will probably find no identity here "
                "(no managed-identity endpoint, workload identity, az CLI or Azure VM in sight).",
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


def looks_like_access_token(value: Any) -> bool:
    """A JWT whose payload carries the claims of an Entra access token."""
    if not isinstance(value, str):
        return False
    found = claims.decode(value.strip())
    return bool(found.keys() & {"aud", "iss", "exp", "oid", "tid"})


def _password(alias: str, entry: dict[str, Any]) -> list[CheckMessage]:
    """A PASSWORD turns the token login off for its alias (DESIGN: Service Connector's
    "secret" type); one left over from before the switch, or a token pasted "to try",
    must not do so silently. The value itself is never printed."""
    where = f"DATABASES[{alias!r}]"
    password = entry.get("PASSWORD")
    if not password:
        return []
    if looks_like_access_token(password):
        return [
            Error(
                f"{where}['PASSWORD'] holds an Entra access token (a JWT). It logs in until "
                "it expires (about 1 h for a user, up to 24 h for a managed identity); after "
                "that every new connection fails.",
                hint="Remove PASSWORD: the ENGINE then fetches a fresh token for every new "
                "connection. Never keep a token in settings or the environment.",
                id="django_azure_pg.E010",
            )
        ]
    return [
        Warning(
            f"{where} has a PASSWORD, so Entra token login is OFF for this alias: it "
            "logs in with that password.",
            hint="Remove PASSWORD to log in with tokens. If a password login is deliberate "
            "(Service Connector's secret type, a local database), silence this with "
            "SILENCED_SYSTEM_CHECKS = ['django_azure_pg.W010'].",
            id="django_azure_pg.W010",
        )
    ]


def _host(
    alias: str, entry: dict[str, Any], opts: dict[str, Any], environ: Any
) -> list[CheckMessage]:
    """Without HOST libpq dials the local Unix socket, and the error names a socket file."""
    if entry.get("PASSWORD") or str(entry.get("HOST") or "").strip():
        return []
    if any(opts.get(k) for k in _LIBPQ_HOST_KEYS) or any(environ.get(v) for v in _LIBPQ_HOST_VARS):
        return []  # libpq finds the host elsewhere (OPTIONS, PGHOST, a service file)
    return [
        Error(
            f"DATABASES[{alias!r}] has no HOST: libpq would try a local Unix socket instead "
            "of the Azure server.",
            hint="Set HOST to <server>.postgres.database.azure.com. With from_env() it comes "
            f"from Service Connector's {' or '.join(HOST_SOURCES)}: check that the "
            "connection exists and the app was restarted since.",
            id="django_azure_pg.E011",
        )
    ]


def _transport(
    alias: str, entry: dict[str, Any], opts: dict[str, Any], environ: Any
) -> list[CheckMessage]:
    """Where the login's secret would go: the same rules as at connect time (_core/tls.py)."""
    from ._core import tls
    from ._core.tls import routed

    where = f"DATABASES[{alias!r}]"
    params: dict[str, Any] = {}
    pool_options = opts.get("pool")
    if isinstance(pool_options, dict) and isinstance(pool_options.get("conninfo"), str):
        # psycopg merges the pool's conninfo under the other parameters (_pool.py).
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        with contextlib.suppress(ProgrammingError):  # the pool reports it
            params.update(conninfo_to_dict(pool_options["conninfo"]))
    params.update(
        {k: v for k, v in opts.items() if k not in options.OUR_KEYS and isinstance(v, str)}
    )
    for key, setting in (("host", "HOST"), ("port", "PORT")):
        if entry.get(setting):
            params[key] = str(entry[setting])
    try:
        allowed = options.flag(opts, tls.OPT_IN)
    except options.OptionError:
        allowed = False  # reported above
    token_login = not entry.get("PASSWORD")
    # dial=False: offline, a private-link name is judged by the own name it is verified as.
    # One route resolution gives the defaults and the route they take (_core/tls.py).
    route = routed(params, environ, token=token_login, dial=False).route
    refused = tls.refusal(route, alias)
    if token_login and refused and (not allowed or route.unresolved_service):
        return [
            Error(
                refused,
                hint="Azure requires TLS; libpq sends the token as a cleartext password "
                "inside it. See 'TLS' in the documentation (docs/security.md).",
                id="django_azure_pg.E006",
            )
        ]
    if token_login and not allowed and not route.azure and not route.local and not route.verified:
        return [
            Warning(
                f"{where}: a token login to {route.describe()}, which is not an Azure name, "
                f"with sslmode={route.sslmode!r}: the server is not verified, so any server "
                "on that path (a man-in-the-middle with a self-signed certificate) receives "
                "the token, which is good on every Azure server this identity can reach.",
                hint="Remove sslmode (token logins get 'verify-full') and set HOST to the "
                "server's Azure name <server>.postgres.database.azure.com with "
                "OPTIONS['hostaddr'] = the address to dial, or set OPTIONS['sslrootcert'] to "
                "the CA that signs this server.",
                id="django_azure_pg.W002",
            )
        ]
    if route.azure and not route.verified:
        if route.sslmode == "verify-ca":
            risk = (
                "the issuer is checked but not the name, so any certificate a public CA "
                "issued passes and a man-in-the-middle receives the password or token."
            )
        elif route.sslmode in tls.ENCRYPTED:
            risk = (
                "encrypted, but the server is not verified, so a man-in-the-middle "
                "receives the password or token."
            )
        else:
            risk = "the password may travel unencrypted."
        return [
            Warning(
                f"{where} connects to Azure with sslmode={route.sslmode!r}: {risk}",
                hint="Remove sslmode: Azure hosts then get 'verify-full' with Azure's root "
                "certificates (Microsoft recommends verify-full). Behind a private endpoint "
                "too: a <server>.privatelink.postgres.database.azure.com HOST is dialled at "
                "its address and verified as <server>.postgres.database.azure.com, the name "
                "the certificate carries.",
                id="django_azure_pg.W002",
            )
        ]
    return []

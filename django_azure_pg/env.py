"""Service Connector's environment variables → a complete ``DATABASES`` entry.

Service Connector writes a different set of app settings per client type:

* ``django``: ``AZURE_POSTGRESQL_HOST``, ``_USER``, ``_NAME`` (+ ``_PASSWORD``);
* ``none`` (and most other runtimes): ``_HOST``, ``_USERNAME``, ``_DATABASE``,
  ``_PORT``, ``_SSL``;
* ``python``: ``AZURE_POSTGRESQL_CONNECTIONSTRING``, a libpq keyword string;

each with ``_CLIENTID`` (+ ``_CLIENTSECRET``, ``_TENANTID``) for user-assigned
identities and service principals. A second connection is prefixed
``AZURE_POSTGRESQL_<NAME>_``. :func:`from_env` reads any of them.

URLs work too: ``azure-postgres://role@host:5432/db?sslmode=verify-full`` is
registered with dj-database-url — and with django-environ (``env.db()``) when
that is installed — when the package is imported; query parameters land in
OPTIONS as both libraries do for every scheme (our own keys such as
``client_id`` or ``token_scope`` included).

Django is imported only to raise ``ImproperlyConfigured``, so that importing
the package (which registers the URL schemes) does not import it — unless
django-environ is installed, which imports Django itself. Nor does importing this
module load azure-identity, MSAL or psycopg (``tests/test_imports.py``): settings.py
runs it for every ``manage.py`` command, connecting or not.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from ._core.names import SERVICE_CONNECTOR_PREFIX, SERVICE_CONNECTOR_SUFFIXES
from ._core.options import FALSE_WORDS, TRUE_WORDS

__all__ = ["ENGINE", "URL_SCHEMES", "from_env"]

ENGINE = "django_azure_pg"
URL_SCHEMES = ("azure-postgres", "azure-postgresql")

_CONNINFO_SETTINGS = {
    "dbname": "NAME",
    "host": "HOST",
    "port": "PORT",
    "user": "USER",
    "password": "PASSWORD",
}


def from_env(
    prefix: str | None = None,
    *,
    connection: str | None = None,
    environ: Mapping[str, str] | None = None,
    default_url: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``django_azure_pg`` built from the environment.

    ``prefix`` defaults to ``AZURE_POSTGRESQL_``; ``connection="RESTAURANT"``
    reads ``AZURE_POSTGRESQL_RESTAURANT_*``. When no variable with the prefix
    exists, ``DATABASE_URL`` (or ``default_url``) is parsed with dj-database-url
    instead — handy on a laptop. Keyword arguments (``CONN_MAX_AGE``,
    ``OPTIONS``, ``TEST`` …) are merged into the result; dicts are merged key by
    key, not replaced.

    :raises django.core.exceptions.ImproperlyConfigured: nothing to build from (no
        variable with the prefix and no URL), a partial set (the message names the
        missing variables), two variables that disagree, a value that is not what it
        must be (``_SSL`` not true/false, an unparsable connection string). The
        message names variables, never a secret's value.
    """
    env = os.environ if environ is None else environ
    prefix = _prefix(prefix, connection)
    found = sorted(k for k in env if k.startswith(prefix) and _suffix_ok(k[len(prefix) :]))
    if not found:
        url = env.get("DATABASE_URL") or default_url
        if url:
            variable = "DATABASE_URL" if env.get("DATABASE_URL") else "default_url"
            return merge(parse_url(url, name=variable), overrides)
        raise _improperly(_missing_message(prefix, found))

    def get(suffix: str) -> str | None:
        value = env.get(prefix + suffix)
        return value if value not in (None, "") else None

    entry: dict[str, Any] = {"ENGINE": ENGINE, "OPTIONS": {}}
    conninfo = get("CONNECTIONSTRING")
    if conninfo is not None:
        entry.update(_from_conninfo(conninfo, prefix + "CONNECTIONSTRING"))
    host = get("HOST")
    name = _one_of(prefix, get, "NAME", "DATABASE")
    user = _one_of(prefix, get, "USER", "USERNAME")
    for key, value in (("HOST", host), ("NAME", name), ("USER", user), ("PORT", get("PORT"))):
        if value is None:
            continue
        if entry.get(key) not in (None, "", value):
            raise _improperly(
                f"{prefix}CONNECTIONSTRING and the separate variables disagree about {key}"
            )
        entry[key] = value
    password = get("PASSWORD")
    if password is not None:
        entry["PASSWORD"] = password
    ssl = get("SSL")
    sslmode = _sslmode(prefix + "SSL", ssl) if ssl is not None else None
    if sslmode is not None:
        entry["OPTIONS"].setdefault("sslmode", sslmode)
    for option, suffix in SERVICE_CONNECTOR_SUFFIXES.items():
        value = get(suffix)
        if value is not None:
            entry["OPTIONS"][option] = value

    if not entry.get("HOST") or not entry.get("NAME"):
        raise _improperly(_incomplete_message(prefix, found, entry, conninfo is not None))
    return merge(entry, overrides)


def register_url_schemes() -> None:
    """Teach dj-database-url and django-environ ``azure-postgres://`` and ``azure-postgresql://``."""
    import dj_database_url

    for scheme in URL_SCHEMES:
        if dj_database_url.ENGINE_SCHEMES.get(scheme) is None:
            # Post-processed like dj-database-url's own postgres schemes
            # (?currentSchema=x → search_path).
            dj_database_url.register(scheme, ENGINE)(dj_database_url.apply_current_schema)
    register_environ_schemes()


def register_environ_schemes() -> bool:
    """Add our schemes to django-environ's ``Env.DB_SCHEMES``, if django-environ is installed.

    django-environ has no registration function: its scheme table is the class
    attribute ``Env.DB_SCHEMES`` (scheme → ENGINE), and ``Env.POSTGRES_FAMILY``
    lists the schemes parsed the PostgreSQL way (several hosts, socket paths).
    """
    if importlib.util.find_spec("environ") is None:
        return False
    try:
        module = importlib.import_module("environ")
    except ImportError:  # django-environ looks for Django itself; without it, nothing to teach
        return False
    env_class = getattr(module, "Env", None)
    schemes = getattr(env_class, "DB_SCHEMES", None)
    if not isinstance(schemes, dict):  # another package named "environ"
        return False
    family = getattr(env_class, "POSTGRES_FAMILY", None)
    for scheme in URL_SCHEMES:
        schemes.setdefault(scheme, ENGINE)
        if isinstance(family, list) and scheme not in family:
            family.append(scheme)
    return True


def parse_url(url: str, *, name: str = "DATABASE_URL") -> dict[str, Any]:
    """dj-database-url's parse; its errors become ``ImproperlyConfigured`` naming ``name``.

    The message never quotes the URL (it may carry a password).
    """
    import dj_database_url

    register_url_schemes()
    try:
        return dict(dj_database_url.parse(url))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        secrets = [url, *(p for p in (_url_password(url),) if p)]
        if not reason or any(secret in reason for secret in secrets):
            reason = "it could not be parsed"
        raise _improperly(
            f"{name} is not a usable database URL ({type(exc).__name__}: {reason})"
        ) from None


def _url_password(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


def merge(entry: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` updated with ``overrides``; nested dicts (OPTIONS, TEST) merged key by key."""
    result = dict(entry)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(dict(result[key]), value)
        else:
            result[key] = value
    return result


def _prefix(prefix: str | None, connection: str | None) -> str:
    base = prefix if prefix is not None else SERVICE_CONNECTOR_PREFIX
    if connection:
        base = f"{base}{connection.upper()}_"
    return base


def _suffix_ok(suffix: str) -> bool:
    """A variable of this connection, not of a named one sharing the prefix."""
    return suffix in {
        "HOST", "NAME", "DATABASE", "USER", "USERNAME", "PORT", "SSL", "PASSWORD",
        "CONNECTIONSTRING", *SERVICE_CONNECTOR_SUFFIXES.values(),
    }  # fmt: skip


def _one_of(prefix: str, get: Any, first: str, second: str) -> str | None:
    a, b = get(first), get(second)
    if a is not None and b is not None and a != b:
        raise _improperly(f"{prefix}{first} and {prefix}{second} are both set and differ; keep one")
    return a if a is not None else b  # type: ignore[no-any-return]


def _sslmode(name: str, value: str) -> str | None:
    """``_SSL=true`` asks for TLS: leave sslmode to the backend's default, which is
    ``verify-full`` for token logins off this machine; ``false`` is ``disable``."""
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return None
    if lowered in FALSE_WORDS:
        return "disable"
    raise _improperly(f"{name} must be true or false, got {value!r}")


def _from_conninfo(conninfo: str, name: str) -> dict[str, Any]:
    """Parse a libpq keyword string with libpq's own rules (quotes, escapes, spaces)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params: dict[str, Any] = conninfo_to_dict(conninfo)
    except ProgrammingError:
        # libpq's message may quote the string, password included: do not chain it.
        raise _improperly(f"{name} is not a valid libpq connection string") from None
    if isinstance(params.get("sslmode"), str):
        # libpq reads sslmode case-sensitively; the string may not be written as it wants.
        params["sslmode"] = params["sslmode"].strip().lower()
    if params.get("sslmode") == "require":
        # Service Connector writes sslmode=require into every connection string: it asks
        # for TLS, like _SSL=true, so the backend's default applies (verify-full for token
        # logins: require alone does not check the certificate). Any other mode is kept.
        del params["sslmode"]
    entry: dict[str, Any] = {"OPTIONS": {}}
    for key, setting in _CONNINFO_SETTINGS.items():
        if key in params:
            entry[setting] = str(params.pop(key))
    entry["OPTIONS"].update({k: str(v) for k, v in params.items()})
    return entry


def _improperly(message: str) -> Exception:
    from django.core.exceptions import ImproperlyConfigured

    return ImproperlyConfigured(message)


def _missing_message(prefix: str, found: list[str]) -> str:
    looked = [
        f"{prefix}HOST + {prefix}NAME + {prefix}USER (client type django)",
        f"{prefix}HOST + {prefix}DATABASE + {prefix}USERNAME (client type none)",
        f"{prefix}CONNECTIONSTRING (client type python)",
        "DATABASE_URL",
    ]
    shown = ", ".join(found) if found else "none"
    return "No Azure PostgreSQL settings in the environment. Looked for " + (
        "; or ".join(looked) + f". Found: {shown}."
    )


def _incomplete_message(
    prefix: str, found: list[str], entry: Mapping[str, Any], conninfo: bool
) -> str:
    """Some of a connection's variables are set, not all: name the missing ones (never values)."""
    missing = []
    also = f" (or {{}}= in {prefix}CONNECTIONSTRING)" if conninfo else ""
    if not entry.get("HOST"):
        missing.append(f"{prefix}HOST" + also.format("host"))
    if not entry.get("NAME"):
        missing.append(f"{prefix}NAME or {prefix}DATABASE" + also.format("dbname"))
    return (
        f"Azure PostgreSQL settings in the environment are incomplete: found "
        f"{', '.join(found)}, but {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing (the server's name and the database "
        "are required). Service Connector sets them all for a connection: check that it "
        "exists, that no variable was renamed or removed, and that the app was restarted since."
    )

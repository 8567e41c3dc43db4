"""Connect to an alias's server as somebody else: the objects' owner or an Entra admin.

Grants must run as the owner of the tables, not as the app role; Service
Connector's role functions must run as an Entra admin in the ``postgres``
database. Host, port and TLS settings always come from the alias.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser
from django.db import connections
from django.db.utils import load_backend

from .._core.options import CREDENTIAL_KEYS
from ..env import ENGINE
from . import one_off

DEFAULT_PASSWORD_ENV = "AZURE_PG_OWNER_PASSWORD"  # noqa: S105 — a variable name
MAX_NAME_BYTES = 63
"""PostgreSQL's NAMEDATALEN - 1: a longer name is silently truncated to another name."""


def check_name(option: str, value: str | None) -> str | None:
    """A role, schema or variable name from the command line, or a CommandError saying why not."""
    if value is None:
        return None
    if "\x00" in value:
        raise CommandError(f"{option} contains a NUL byte, which no PostgreSQL name can hold")
    if not value.strip():
        raise CommandError(f"{option} is empty")
    size = len(value.encode())
    if size > MAX_NAME_BYTES:
        raise CommandError(
            f"{option} is {size} bytes long; PostgreSQL names are at most {MAX_NAME_BYTES} "
            "bytes (a longer one would be truncated to a different name)"
        )
    return value


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--database",
        default="default",
        help="Alias whose server and database to use (and whose credentials, "
        "unless --owner-user is given). Default: 'default'.",
    )
    parser.add_argument(
        "--owner-user",
        metavar="NAME",
        help="Connect as this role instead of the alias's USER (the objects' owner or an "
        "Entra admin). Its password comes from --owner-password-env or a prompt.",
    )
    parser.add_argument(
        "--owner-password-env",
        metavar="VAR",
        default=DEFAULT_PASSWORD_ENV,
        help="Environment variable holding --owner-user's password "
        f"(default {DEFAULT_PASSWORD_ENV}).",
    )
    parser.add_argument(
        "--owner-entra",
        action="store_true",
        help="Log in as --owner-user with your own Entra token (az login / DefaultAzureCredential) "
        "instead of a password.",
    )


def settings_for(options: dict[str, Any], *, dbname: str | None = None) -> dict[str, Any]:
    alias = options["database"]
    try:
        base = connections.settings[alias]
    except KeyError:
        raise CommandError(f"No database alias {alias!r} in settings.DATABASES") from None
    entry = one_off(base)
    if dbname is not None:
        entry["NAME"] = dbname
    owner = check_name("--owner-user", options.get("owner_user"))
    check_name("--owner-password-env", options.get("owner_password_env"))
    if options.get("owner_entra") and not owner:
        raise CommandError("--owner-entra needs --owner-user (the Entra admin's role name)")
    if owner:
        entry["USER"] = owner
        if options.get("owner_entra"):
            entry["PASSWORD"] = ""
            entry["ENGINE"] = ENGINE
            entry["OPTIONS"] = {
                k: v for k, v in entry["OPTIONS"].items() if k not in CREDENTIAL_KEYS
            }
            entry["OPTIONS"]["credential"] = "azure.identity.DefaultAzureCredential"
        else:
            entry["PASSWORD"] = _owner_password(owner, options["owner_password_env"])
    return entry


def _owner_password(owner: str, env_var: str) -> str:
    password = os.environ.get(env_var)
    if password:
        return password
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"Password for {owner}: ")
    raise CommandError(
        f"No password for --owner-user {owner}: set {env_var} (or --owner-password-env) "
        "or run interactively to be prompted. Passwords are never taken on the command line."
    )


def connect(entry: dict[str, Any], alias: str) -> Any:
    """A raw psycopg connection (autocommit) through the alias's ENGINE."""
    try:
        wrapper = load_backend(entry["ENGINE"]).DatabaseWrapper(entry, f"{alias}:admin")
        wrapper.ensure_connection()
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    except Exception as exc:
        raise CommandError(
            f"Could not connect to {entry.get('HOST')!r} as {entry.get('USER')!r}: {exc}"
        ) from exc
    return wrapper

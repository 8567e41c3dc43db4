"""Where an access token may go: TLS defaults and the plaintext refusal.

A token is a bearer credential: for up to a day it logs in to every Azure
PostgreSQL server where the identity has a role. So:

* **Azure hosts** (every cloud's ``*.postgres.database.*`` name, private-link
  and private-DNS names included, and Cosmos DB for PostgreSQL) get
  ``sslmode=verify-full`` with ``sslrootcert`` pointing at the Azure roots
  shipped in this package, unless the settings, ``PGSSLMODE`` or a service
  file name an sslmode (and ``PGSSLROOTCERT``, ``~/.postgresql/root.crt`` or
  the settings a root file). An explicit file, because the psycopg binary
  wheel's OpenSSL does not find the system store (``sslrootcert=system``
  fails unless ``SSL_CERT_FILE`` is set).
* **Other hosts** keep ``require``: we cannot know which CA signs a
  self-managed server, so verification is the user's to configure.
* A token login refuses, **before fetching a token**, any path that is not
  ``require``/``verify-ca``/``verify-full`` unless every host (and
  ``hostaddr``) is on this machine — a loopback address or a Unix socket —
  or ``OPTIONS["allow_plaintext_token"]`` says the path is protected another
  way (a TLS-terminating sidecar, say).

The effective settings are worked out as libpq does: explicit parameters,
then the service file, then ``PG*`` variables, then libpq's defaults (an
empty HOST means ``PGHOST`` or the local socket). Every host of a multi-host
HOST must pass; ``hostaddr`` is what is dialled, and verification checks the
certificate against the host *name*. No Django import here.
"""

from __future__ import annotations

import configparser
import functools
import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import clouds
from .errors import InsecureTransport

logger = logging.getLogger("django_azure_pg.tls")

AZURE_HOST_SUFFIXES = (
    # Flexible Server in every cloud (clouds.py). Private-link
    # (<server>.privatelink.postgres.database.azure.com) and private-DNS zones,
    # which "must end with postgres.database.azure.com", share the suffix
    # (azure-databases-docs: flexible-server/concepts-networking-private-link.md,
    # concepts-networking-private.md).
    *clouds.HOST_SUFFIXES,
    # Azure Cosmos DB for PostgreSQL documents Entra token logins (preview;
    # MicrosoftDocs/azure-docs, articles/cosmos-db/postgresql/how-to-configure-authentication.md).
    # UNVERIFIED: that page contradicts itself on the token resource and nothing here
    # has been tried against a cluster; treated as Azure for TLS only.
    ".postgres.cosmos.azure.com",
)
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ENCRYPTED = frozenset({"require", "verify-ca", "verify-full"})
VERIFIED = frozenset({"verify-ca", "verify-full"})
AZURE_DEFAULT = "verify-full"
OTHER_DEFAULT = "require"
OPT_IN = "allow_plaintext_token"
"""OPTIONS key: send the token even where TLS does not protect it (you protect the path)."""

_ROOTS = Path(__file__).with_name("certs") / "azure-roots.pem"


def azure_roots() -> str:
    """The bundled root certificates of the CAs Azure uses (a PEM file)."""
    return str(_ROOTS)


def is_azure_host(host: str) -> bool:
    return host.strip().rstrip(".").lower().endswith(AZURE_HOST_SUFFIXES)


def _is_loopback_ip(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _is_local_host(host: str) -> bool:
    host = host.strip()
    return (
        host == ""  # libpq's default: the Unix socket (localhost on Windows)
        or host.startswith(("/", "@"))  # a Unix socket directory / abstract socket
        or host.lower().rstrip(".") == "localhost"
        or _is_loopback_ip(host)
    )


@dataclass(frozen=True)
class Route:
    """Where libpq will send the login, and how, for one set of parameters."""

    hosts: tuple[str, ...]
    host_from: str
    hostaddrs: tuple[str, ...]
    sslmode: str
    sslmode_from: str
    sslrootcert: str | None
    unresolved_service: bool = False

    @property
    def azure(self) -> bool:
        return any(is_azure_host(h) for h in self.hosts)

    @property
    def local(self) -> bool:
        """Every host and hostaddr is on this machine (loopback or a Unix socket)."""
        return (
            not self.unresolved_service
            and all(_is_local_host(h) for h in self.hosts)
            and all(_is_loopback_ip(a) for a in self.hostaddrs if a.strip())
        )

    @property
    def verified(self) -> bool:
        """The server proved who it is.

        ``verify-ca`` checks the issuer, not the name: fine with a private CA of your
        own, but with Azure's public roots any certificate those CAs issued, for any
        name, would pass. So an Azure host counts as verified only with ``verify-full``.
        """
        return self.sslmode == "verify-full" or (self.sslmode == "verify-ca" and not self.azure)

    @property
    def retry_safe(self) -> bool:
        """A second, fresh token may follow a refused one: the server was verified (or is local)."""
        return self.verified or self.local

    @property
    def protected(self) -> bool:
        return self.sslmode in ENCRYPTED or self.local

    def describe(self) -> str:
        names = ", ".join(repr(h) for h in self.hosts if h) or "the local socket"
        where = f"host {names}" + (
            "" if self.host_from == "settings" else f" (from {self.host_from})"
        )
        addrs = [a for a in self.hostaddrs if a.strip()]
        if addrs:
            where += f" dialled at {', '.join(addrs)}"
        return where


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ("",)


def service_values(
    params: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, str], bool]:
    """The service file's values for the service in use, and whether one was named but not found.

    libpq looks in ``servicefile``/``PGSERVICEFILE``/``~/.pg_service.conf``,
    then ``PGSYSCONFDIR/pg_service.conf``; the first file with the section wins.
    """
    name = params.get("service") or environ.get("PGSERVICE")
    if not name:
        return {}, False
    candidates = [
        params.get("servicefile")
        or environ.get("PGSERVICEFILE")
        or os.path.join(os.path.expanduser("~"), ".pg_service.conf")
    ]
    if environ.get("PGSYSCONFDIR"):
        candidates.append(os.path.join(environ["PGSYSCONFDIR"], "pg_service.conf"))
    for candidate in candidates:
        try:
            mtime = os.stat(candidate).st_mtime_ns
        except OSError:
            continue
        sections = _read_service_file(candidate, mtime)
        if str(name) in sections:
            return dict(sections[str(name)]), False
    return {}, True


@functools.lru_cache(maxsize=8)
def _read_service_file(path: str, mtime: int) -> dict[str, dict[str, str]]:
    """Sections of a service file (cached per path and mtime: the pool asks on every checkout)."""
    parser = configparser.RawConfigParser(
        delimiters=("=",), comment_prefixes=("#",), strict=False, interpolation=None
    )
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error, UnicodeError):
        return {}
    return {
        section: {k.lower(): v.strip() for k, v in parser.items(section)}
        for section in parser.sections()
    }


def resolve(params: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Route:
    """The host(s), hostaddr(s), sslmode and root file libpq will use for ``params``."""
    service, unresolved = service_values(params, environ)

    def lookup(key: str, env: str) -> tuple[str | None, str]:
        value = params.get(key)
        if value not in (None, ""):
            return str(value), "settings"
        if key in service and service[key] != "":
            return service[key], "service file"
        if environ.get(env):
            return environ[env], env
        return None, "libpq default"

    host, host_from = lookup("host", "PGHOST")
    hostaddr, _ = lookup("hostaddr", "PGHOSTADDR")
    sslmode, sslmode_from = lookup("sslmode", "PGSSLMODE")
    rootcert, _ = lookup("sslrootcert", "PGSSLROOTCERT")
    return Route(
        hosts=_split(host),
        host_from=host_from,
        hostaddrs=_split(hostaddr) if hostaddr else (),
        sslmode=(sslmode or "prefer").strip().lower(),
        sslmode_from=sslmode_from,
        sslrootcert=rootcert,
        unresolved_service=unresolved,
    )


def _default_root_file_exists() -> bool:
    return os.path.exists(os.path.join(os.path.expanduser("~"), ".postgresql", "root.crt"))


def apply_defaults(
    params: dict[str, Any], environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """``params`` with an explicit sslmode (and, for Azure hosts, sslrootcert), in place.

    Explicit values beat the service file and ``PG*`` variables in libpq, so
    what is checked is what libpq does.
    """
    route = resolve(params, environ)
    if route.sslmode_from == "libpq default":
        params["sslmode"] = AZURE_DEFAULT if route.azure else OTHER_DEFAULT
    else:
        params["sslmode"] = route.sslmode
    if (
        params["sslmode"] in VERIFIED
        and route.azure
        and route.sslrootcert is None
        and not _default_root_file_exists()
    ):
        params["sslrootcert"] = azure_roots()
    return params


def problem(route: Route, alias: str) -> str | None:
    """Why sending a token along ``route`` is refused, or ``None``."""
    if route.protected:
        return None
    source = "" if route.sslmode_from == "settings" else f" (from {route.sslmode_from})"
    return (
        f"Database alias {alias!r}: refusing to send an access token to {route.describe()} "
        f"with sslmode={route.sslmode!r}{source}: the token is a bearer credential and "
        "would travel unencrypted, or an attacker could downgrade the connection to plaintext. "
        "Remove sslmode (Azure hosts then get 'verify-full') or use 'verify-full' or 'require'. "
        f"Only if the path is protected another way (e.g. a TLS-terminating sidecar), set "
        f"OPTIONS[{OPT_IN!r}] = True."
    )


def guard(
    alias: str,
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    allow_plaintext: bool = False,
) -> Route:
    """Check the path before a token is fetched for it; raise :class:`InsecureTransport`."""
    route = resolve(params, environ)
    refused = problem(route, alias)
    if refused:
        if not allow_plaintext:
            raise InsecureTransport(refused)
        logger.debug("alias %r: %s is allowed by OPTIONS[%r]", alias, route.describe(), OPT_IN)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "alias %r: token login to %s, sslmode=%s (%s), root certificates %s",
            alias,
            route.describe(),
            route.sslmode,
            route.sslmode_from,
            route.sslrootcert or "libpq default",
        )
    return route

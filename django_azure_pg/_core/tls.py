"""Where an access token may go: one route policy for every path that sends one.

A token is a bearer credential: for up to a day it logs in to every Azure
PostgreSQL server where the identity has a role. The plain connection, the
pool (its ``conninfo`` included), ``dbshell``, the doctor and ``manage.py
check`` all judge the route here, the same way:

* **The route judged is the one libpq takes.** libpq itself is asked
  (:func:`libpq_view`): the parameters go to ``PQconnectStart`` with a
  ``target_session_attrs`` value libpq rejects, so it reads the service file
  (wherever *it* finds it — ``servicefile``, ``PGSERVICEFILE``,
  ``~/.pg_service.conf``, ``PGSYSCONFDIR`` or its compiled-in sysconfdir,
  ``/etc/postgresql-common`` in the psycopg binary wheel), the ``PG*``
  variables and its defaults, then stops before any name lookup or socket.
  What libpq cannot use (an unknown service, a broken service file) is
  refused. A model of the same rules (:func:`service_values`: libpq's search
  order, first of a repeated key or section wins) names where each value
  came from, for messages.
* **Azure hosts** (every cloud's ``*.postgres.database.*`` name and Cosmos DB
  for PostgreSQL) get ``sslmode=verify-full`` with ``sslrootcert`` pointing
  at the Azure roots shipped in this package, unless the settings,
  ``PGSSLMODE`` or a service file name an sslmode (and ``PGSSLROOTCERT``,
  ``~/.postgresql/root.crt`` or the settings a root file). An explicit file,
  because the psycopg binary wheel's OpenSSL does not find the system store.
* **Private-link names** (``<server>.privatelink.postgres.database.azure.com``)
  in HOST are dialled at their address (libpq ``hostaddr``) while the
  certificate is checked against the server's own name,
  ``<server>.postgres.database.azure.com``, which is what the server's
  certificate carries (the own name is a CNAME of the private-link name:
  azure-databases-docs, articles/postgresql/network/concepts-networking-private-link.md,
  "Private Link and DNS"; no custom server certificates: security-tls.md).
  Microsoft's TLS page says verify-full ("verify-all" there) "might not be
  possible" with private endpoints and offers verify-ca (azure-databases-docs,
  articles/postgresql/security/security-tls.md, "Best configuration"); with
  public roots verify-ca accepts any certificate those CAs issued, for any
  name, so it does not protect a token. Verifying the own name while dialling
  the private address does.
* **Other hosts** — a custom DNS name, a private IP — get ``verify-full`` too
  for a token login: the token is good on every Azure server this identity
  can reach, so a server that cannot prove its name gets none. Use HOST = the
  server's Azure name (with ``hostaddr`` = the address to dial), or name the
  CA in ``sslrootcert``. An explicit weaker sslmode is kept (``manage.py
  check`` warns, W002). Password logins to such hosts keep ``require``.
* **This machine** (loopback addresses, Unix sockets, and names the hosts file maps to
  loopback only: never a name DNS may answer, such as ``localhost.``) gets ``require``
  by default, and any sslmode.
* **Decided once:** :func:`decide` works all this out once per alias (:func:`routed`
  keeps it) and writes every key of the route explicitly into the parameters, so that
  nothing outside the settings — an environment variable, a service file edited on
  disk — can move it later.
* A token login refuses, **before fetching a token**, any path that is not
  ``require``/``verify-ca``/``verify-full`` unless every host (and
  ``hostaddr``) is on this machine, or ``OPTIONS["allow_plaintext_token"]``
  says the path is protected another way (a TLS-terminating sidecar, say).

No Django import here.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from ..errors import InsecureTransport
from . import clouds

logger = logging.getLogger(__name__)


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
TOKEN_DEFAULT = "verify-full"  # noqa: S105 - an sslmode, not a password
"""A token login to a host that is neither Azure's nor on this machine."""
OTHER_DEFAULT = "require"
"""A password login to such a host, and any login on this machine."""
OPT_IN = "allow_plaintext_token"
"""OPTIONS key: send the token even where TLS does not protect it (you protect the path)."""
PRIVATE_LINK = ".privatelink"

_ROOTS = Path(__file__).parent.parent / "certs" / "azure-roots.pem"
_PROBE_STOP = "!django-azure-pg-probe"
"""A target_session_attrs value libpq rejects after reading every option, before dialling."""
_ROUTE_KEYS = ("host", "hostaddr", "port", "sslmode", "sslrootcert")
_VIEW_KEYS = frozenset((*_ROUTE_KEYS, "connect_timeout"))
CONNECT_TIMEOUT = 10
"""Seconds a token login waits for a server, per address tried, when nothing sets
``connect_timeout``. psycopg's own default is 130 s; a silent host would hold a web
worker past gunicorn's worker timeout (30 s by default: ``gunicorn.config.Timeout``)
and App Service's health check. 10 s per address keeps even a two-address host under
it, and is far above a healthy login (milliseconds to a second); raise it (OPTIONS,
``PGCONNECT_TIMEOUT`` or the service file) for a path that is slow by design."""
_NOT_PROBED = frozenset({"password", "target_session_attrs"})


def azure_roots() -> str:
    """The bundled root certificates of the CAs Azure uses (a PEM file)."""
    return str(_ROOTS)


def is_azure_host(host: str) -> bool:
    return host.strip().rstrip(".").lower().endswith(AZURE_HOST_SUFFIXES)


def own_name(host: str) -> str | None:
    """``<server>.postgres.database.azure.com`` for ``<server>.privatelink.postgres.database.azure.com``
    (any cloud's suffix), else ``None``."""
    name = host.strip().rstrip(".").lower()
    for suffix in clouds.HOST_SUFFIXES:
        linked = PRIVATE_LINK + suffix
        if name.endswith(linked) and len(name) > len(linked):
            return name[: -len(linked)] + suffix
    return None


def _is_loopback_ip(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip().strip("[]")).is_loopback
    except ValueError:
        return False


HOSTS_FILE = "/etc/hosts"
"""Where a name is looked up before DNS (glibc's ``files`` source, first in the usual
``/etc/nsswitch.conf``)."""


def _is_local_host(host: str) -> bool:
    """On this machine: a Unix socket, a loopback address, or a name that the hosts
    file maps to loopback addresses only.

    A name is never judged by its spelling: ``localhost.`` (glibc does not match it in
    the hosts file) or ``localhost`` on an image whose hosts file lacks the line is
    answered by DNS, which may name any machine.
    """
    host = host.strip()
    return (
        host == ""  # libpq's default: the Unix socket (localhost on Windows)
        or host.startswith(("/", "@"))  # a Unix socket directory / abstract socket
        or _is_loopback_ip(host)
        or _hosts_file_loopback(host)
    )


def _hosts_file_loopback(name: str) -> bool:
    try:
        mtime = os.stat(HOSTS_FILE).st_mtime_ns
    except OSError:
        return False
    found = _read_hosts_file(HOSTS_FILE, mtime).get(name.lower(), ())
    return bool(found) and all(_is_loopback_ip(a) for a in found)


def _lines(path: str) -> list[str]:
    """The lines of a text file; none where it cannot be read (as libpq and glibc treat it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


@functools.lru_cache(maxsize=2)
def _read_hosts_file(path: str, mtime: int) -> dict[str, tuple[str, ...]]:
    """Name → addresses, as glibc reads the hosts file (cached per path and mtime)."""
    names: dict[str, tuple[str, ...]] = {}
    for raw in _lines(path):
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        for name in fields[1:]:
            names[name.lower()] = (*names.get(name.lower(), ()), fields[0])
    return names


@dataclass(frozen=True)
class Route:
    """Where libpq will send the login, and how, for one set of parameters."""

    hosts: tuple[str, ...]
    host_from: str
    hostaddrs: tuple[str, ...]
    sslmode: str
    sslmode_from: str
    sslrootcert: str | None
    port: str = ""
    connect_timeout: str = ""
    unresolved_service: bool = False
    """libpq cannot use these settings (an unknown service, a broken service file):
    nothing may be sent, and nothing is known about where it would go."""
    libpq_error: str = ""

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
    def private_link(self) -> bool:
        return any(own_name(h) for h in self.hosts)

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
        return not self.unresolved_service and (self.sslmode in ENCRYPTED or self.local)

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


# -- libpq's own view -------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _libpq_keywords() -> frozenset[str]:
    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


def libpq_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The libpq keywords among connection parameters (psycopg's own arguments dropped)."""
    keywords = _libpq_keywords()
    return {k: v for k, v in params.items() if k in keywords and v is not None}


def libpq_view(params: Mapping[str, Any]) -> tuple[dict[str, str] | None, str]:
    """``(host, hostaddr, port, sslmode, sslrootcert)`` as libpq will use them for
    ``params``, with the service file and ``PG*`` variables of this process applied;
    ``(None, libpq's error)`` when libpq cannot use the settings at all.

    libpq is stopped by an invalid ``target_session_attrs`` (validated after every
    option is read, before any host name lookup or socket), so nothing is dialled.
    The password is never passed. Asked once per alias (:func:`decide`), not per
    connection: the decision is written into the parameters.
    """
    return _ask_libpq({k: v for k, v in libpq_params(params).items() if k not in _NOT_PROBED})


def _ask_libpq(given: dict[str, Any]) -> tuple[dict[str, str] | None, str]:
    given = {**given, "target_session_attrs": _PROBE_STOP}
    try:
        conninfo = make_conninfo("", **given)
    except psycopg.ProgrammingError as exc:
        return None, str(exc)
    conn = pq.PGconn.connect_start(conninfo.encode())
    try:
        message = conn.error_message.decode("utf-8", "replace")
        values = {
            o.keyword.decode(): o.val.decode("utf-8", "replace")
            for o in conn.info
            if o.keyword.decode() in _VIEW_KEYS and o.val is not None
        }
    finally:
        conn.finish()
    if "sslmode" not in values:  # libpq stopped while reading the options
        return None, message.strip()
    return values, ""


# -- the same rules, modelled (where each value came from) ----------------------------


def service_files(params: Mapping[str, Any], environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The service files libpq reads, in order, as ``(path, label)``.

    libpq (fe-connect.c, parseServiceInfo): ``servicefile`` (libpq 18), else
    ``PGSERVICEFILE``, else ``~/.pg_service.conf``; then
    ``PGSYSCONFDIR/pg_service.conf`` — or, without ``PGSYSCONFDIR``, the same
    file in libpq's compiled-in sysconfdir, which only libpq knows (see
    :func:`libpq_view`).
    """
    first = (
        params.get("servicefile")
        or environ.get("PGSERVICEFILE")
        or os.path.join(os.path.expanduser("~"), ".pg_service.conf")
    )
    files = [(str(first), "service file")]
    if environ.get("PGSYSCONFDIR"):
        files.append((os.path.join(environ["PGSYSCONFDIR"], "pg_service.conf"), "service file"))
    return files


def service_name(params: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """The service libpq reads, or ``None``. An empty name is a name: libpq then reads
    the file's ``[]`` section (fe-connect.c tests the value against NULL, not "")."""
    name = params.get("service")
    if name is None:
        name = environ.get("PGSERVICE")
    return None if name is None else str(name)


def service_values(
    params: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, str], bool]:
    """The service file's values for the service in use, and whether one was named but
    not found in the files this model knows (libpq may still find it in its sysconfdir)."""
    name = service_name(params, environ)
    if name is None:
        return {}, False
    for path, _ in service_files(params, environ):
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue
        section = _read_service_file(path, mtime).get(str(name))
        if section is not None:
            return dict(section), False
    return {}, True


@functools.lru_cache(maxsize=8)
def _read_service_file(path: str, mtime: int) -> dict[str, dict[str, str]]:
    """Sections of a service file, read as libpq reads them (cached per path and mtime).

    libpq strips leading and trailing blanks of each line, skips ``#`` comments,
    keeps the FIRST section of a repeated name (it stops at the next ``[``) and the
    FIRST value of a repeated key (it never overwrites a value it has). Python's
    configparser keeps the last, hence this reader.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in _lines(path):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name = line[1:].split("]", 1)[0]
            current = None if name in sections else sections.setdefault(name, {})
            continue
        if current is None or "=" not in line:
            continue
        key, value = line.split("=", 1)
        current.setdefault(key, value)
    return sections


def _model(params: Mapping[str, Any], environ: Mapping[str, str]) -> Route:
    service, missing = service_values(params, environ)

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
    port, _ = lookup("port", "PGPORT")
    timeout, _ = lookup("connect_timeout", "PGCONNECT_TIMEOUT")
    return Route(
        hosts=_split(host),
        host_from=host_from,
        hostaddrs=_split(hostaddr) if hostaddr else (),
        sslmode=(sslmode or "prefer").strip().lower(),
        sslmode_from=sslmode_from,
        sslrootcert=rootcert,
        port=port or "",
        connect_timeout=timeout or "",
        unresolved_service=missing,
    )


def resolve(params: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Route:
    """The host(s), hostaddr(s), sslmode and root file libpq will use for ``params``.

    For this process's environment the values are libpq's own (:func:`libpq_view`);
    a different ``environ`` (a what-if, in tests) is judged by the model alone.
    """
    model = _model(params, environ)
    if environ is not os.environ:
        return model
    view, error = libpq_view(params)
    if view is None:
        return Route(
            hosts=model.hosts,
            host_from=model.host_from,
            hostaddrs=model.hostaddrs,
            sslmode=model.sslmode,
            sslmode_from=model.sslmode_from,
            sslrootcert=model.sslrootcert,
            port=model.port,
            connect_timeout=model.connect_timeout,
            unresolved_service=True,
            libpq_error=error,
        )
    sslmode = view["sslmode"].strip().lower()
    sslmode_from = model.sslmode_from
    host_from = model.host_from
    if model.unresolved_service:
        # The service is in a file only libpq knows (its compiled-in sysconfdir).
        if params.get("host") in (None, "") and view.get("host"):
            host_from = "service file in libpq's sysconfdir"
        if sslmode_from == "libpq default" and sslmode != "prefer":
            # "prefer" may be the file's or libpq's default: it is treated as unset,
            # which only ever makes the route stricter.
            sslmode_from = "service file in libpq's sysconfdir"
    return Route(
        hosts=_split(view.get("host")),
        host_from=host_from,
        hostaddrs=_split(view["hostaddr"]) if view.get("hostaddr") else (),
        sslmode=sslmode,
        sslmode_from=sslmode_from,
        sslrootcert=view.get("sslrootcert") or None,
        port=view.get("port") or "",
        connect_timeout=view.get("connect_timeout") or "",
    )


def _default_root_file_exists() -> bool:
    return os.path.exists(os.path.join(os.path.expanduser("~"), ".postgresql", "root.crt"))


def _address(host: str, port: Any) -> str | None:
    """The first address ``host`` resolves to (what libpq would dial first), or None."""
    try:
        found = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return str(found[0][4][0]) if found else None


def _rename_private_link(params: dict[str, Any]) -> None:
    """HOST's private-link names replaced by the servers' own names, in place: libpq then
    checks the certificate against the own name (``verify-full``). Their addresses are
    looked up by :meth:`Decision.apply`, for each connection."""
    host = params.get("host")
    if isinstance(host, str) and any(own_name(h) for h in host.split(",")):
        params["host"] = ",".join(own_name(h) or h for h in host.split(","))


_DEFAULT_ROOT_FILE = os.path.join(".postgresql", "root.crt")


@dataclass(frozen=True)
class Decision:
    """Where and how one alias's logins go, decided once and written out explicitly.

    ``written`` holds every key that decides the route — host, hostaddr, port,
    sslmode, sslrootcert — with an explicit empty value where none applies. libpq
    ranks explicit parameters above the service file and the ``PG*`` variables
    (fe-connect.c, conninfo_add_defaults fills only options that are still NULL), so
    once written, nothing outside the settings moves the route: not a changed
    environment (Python's or C's), not a service file edited on disk, not ``HOME``.

    ``linked``: HOST's private-link names, when their addresses are looked up for
    every connection (a failover moves them); everything else is fixed.
    """

    written: Mapping[str, str]
    route: Route
    linked: str = ""
    pinnable: bool = True
    """Worth keeping for later connections: libpq could use the settings."""

    def apply(self, params: dict[str, Any]) -> Route:
        """Write the decision into ``params`` (in place); the route this connection takes."""
        params.update(self.written)
        if not self.linked:
            return self.route
        own = self.written["host"]  # the own names, as decided
        addresses = _addresses(self.linked, params.get("port"))
        if addresses is None:
            # libpq reports the name that does not resolve (and would verify the
            # private-link name, which no Azure certificate carries).
            params["host"], params["hostaddr"] = self.linked, ""
            return dataclasses.replace(self.route, hosts=_split(self.linked), hostaddrs=())
        params["host"], params["hostaddr"] = own, addresses
        return dataclasses.replace(self.route, hosts=_split(own), hostaddrs=_split(addresses))


def decide(
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
) -> Decision:
    """The route ``params`` take, with the policy's defaults, as a :class:`Decision`.

    ``token``: a token login (non-Azure hosts then default to verify-full).
    ``dial=False`` (``manage.py check``: offline) renames private-link names without
    looking them up. Works out everything from libpq's own view of this process's
    settings, service file and environment (a what-if ``environ`` is judged by the
    model alone); :func:`routed` keeps the result per alias.
    """
    work = dict(params)
    route, linked = _settle(work, environ, token=token)
    if route.unresolved_service:
        return Decision({}, route, pinnable=False)
    rootcert = route.sslrootcert
    if not rootcert:
        # libpq's default root file, under HOME as it is now: HOME may change later.
        rootcert = os.path.join(os.path.expanduser("~"), _DEFAULT_ROOT_FILE)
    route = dataclasses.replace(route, sslrootcert=rootcert)
    written = {
        "host": ",".join(route.hosts),
        "hostaddr": ",".join(route.hostaddrs),
        "port": route.port,
        "sslmode": route.sslmode,
        "sslrootcert": rootcert,
    }
    # Written too, where it is set: psycopg (which drives the connection attempt) reads
    # the parameters and PGCONNECT_TIMEOUT, never the service file.
    timeout = route.connect_timeout or (str(CONNECT_TIMEOUT) if token else "")
    if timeout:
        route = dataclasses.replace(route, connect_timeout=timeout)
        written["connect_timeout"] = timeout
    return Decision(written, route, linked if dial else "")


def _addresses(hosts: str, port: Any) -> str | None:
    """``hostaddr`` for ``hosts``: each private-link name's first address ("" for other
    hosts), or ``None`` when one does not resolve."""
    single_port = not (isinstance(port, str) and "," in port)
    found = [
        _address(h, port if single_port else None) if own_name(h) else "" for h in hosts.split(",")
    ]
    return None if any(a is None for a in found) else ",".join(a or "" for a in found)


def _settle(
    params: dict[str, Any], environ: Mapping[str, str], *, token: bool
) -> tuple[Route, str]:
    """The policy's defaults written into ``params`` (in place), and the route of the
    result; also HOST's private-link names where their addresses are looked up per
    connection (else "")."""
    linked = _linked(params)
    _rename_private_link(params)
    route = resolve(params, environ)
    if route.private_link and not params.get("host"):
        # A private-link name from a service file or PGHOST: written out explicitly
        # (explicit beats both in libpq) so that it too is verified as the own name.
        params["host"] = ",".join(route.hosts)
        if route.hostaddrs:
            params["hostaddr"] = ",".join(route.hostaddrs)
        linked = _linked(params)
        _rename_private_link(params)
        route = resolve(params, environ)
    if route.unresolved_service and environ is os.environ:
        return route, ""  # libpq refuses these settings itself; check() says so before a token
    if route.sslmode_from == "libpq default" and route.sslrootcert == "system":
        # libpq's own default with sslrootcert=system is verify-full (libpq 16+), and it
        # refuses any weaker sslmode with it: never write one.
        params["sslmode"] = "verify-full"
    elif route.sslmode_from == "libpq default":
        if route.azure:
            params["sslmode"] = AZURE_DEFAULT
        elif route.local or not token:
            params["sslmode"] = OTHER_DEFAULT
        else:
            params["sslmode"] = TOKEN_DEFAULT
    else:
        params["sslmode"] = route.sslmode
    rootcert = route.sslrootcert
    if (
        params["sslmode"] in VERIFIED
        and route.azure
        and route.sslrootcert is None
        and not _default_root_file_exists()
    ):
        rootcert = params["sslrootcert"] = azure_roots()
    # What resolve() reports for the parameters as written: the sslmode is explicit now.
    route = dataclasses.replace(
        route, sslmode=params["sslmode"], sslmode_from="settings", sslrootcert=rootcert
    )
    return route, linked


def _linked(params: Mapping[str, Any]) -> str:
    """HOST, when it has private-link names whose addresses are to be looked up."""
    host = params.get("host")
    if params.get("hostaddr") or not isinstance(host, str):
        return ""
    return host if any(own_name(h) for h in host.split(",")) else ""


def refusal(route: Route, alias: str) -> str | None:
    """Why sending a token along ``route`` is refused, or ``None``."""
    if route.unresolved_service:
        said = f" libpq says: {route.libpq_error.rstrip('.')}." if route.libpq_error else ""
        return (
            f"Database alias {alias!r}: refusing to send an access token: libpq cannot use "
            f"these connection settings, so where the token would go is unknown.{said} "
            "Fix the service name or service file (libpq looks in OPTIONS['servicefile'], "
            "PGSERVICEFILE, ~/.pg_service.conf, then PGSYSCONFDIR or its own sysconfdir)."
        )
    if route.protected:
        return None
    source = "" if route.sslmode_from == "settings" else f" (from {route.sslmode_from})"
    return (
        f"Database alias {alias!r}: refusing to send an access token to {route.describe()} "
        f"with sslmode={route.sslmode!r}{source}: the token is a bearer credential and "
        "would travel unencrypted, or an attacker could downgrade the connection to plaintext. "
        "Remove sslmode (token logins then get 'verify-full') or use 'verify-full'. "
        f"Only if the path is protected another way (e.g. a TLS-terminating sidecar), set "
        f"OPTIONS[{OPT_IN!r}] = True."
    )


def check(alias: str, route: Route, *, allow_plaintext: bool = False) -> Route:
    """``route`` itself, if a token may be sent along it; else :class:`InsecureTransport`
    (raised before any token is fetched)."""
    refused = refusal(route, alias)
    if refused:
        if not allow_plaintext or route.unresolved_service:
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


def unverified_message(alias: str, route: Route, exc: BaseException) -> str:
    """What to do when the server's certificate did not prove its name (no token was sent)."""
    said = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    names = ", ".join(repr(h) for h in route.hosts if h) or "the local socket"
    if route.azure:
        fix = (
            "Use the server's own name, <server>.postgres.database.azure.com, as HOST (for a "
            "private endpoint set OPTIONS['hostaddr'] to its address, or leave the private-link "
            "name in HOST: it is dialled at its address and verified as the own name) and "
            "leave sslrootcert unset (the bundled Azure roots are used)."
        )
    else:
        fix = (
            f"HOST {names} is not an Azure name, and a token login needs a server that proves "
            "its name (sslmode=verify-full). Set HOST to the server's Azure name "
            "(<server>.postgres.database.azure.com) and OPTIONS['hostaddr'] to the address "
            "to dial, or point OPTIONS['sslrootcert'] at the CA that signs this server's "
            "certificate. An explicit OPTIONS['sslmode'] = 'require' sends the token to any "
            "server on that path (manage.py check warns, W002)."
        )
    return (
        f"Database alias {alias!r}: the server at {route.describe()} did not prove it is "
        f"{names} (sslmode={route.sslmode}); no access token was sent. libpq said: {said} "
        f"Fix: {fix}"
    )


CONNECT_TIMED_OUT: type[BaseException] | None = getattr(psycopg.errors, "ConnectionTimeout", None)
"""psycopg's error for ``connect_timeout`` running out (3.2 and later)."""


def timeout_message(alias: str, route: Route, params: Mapping[str, Any]) -> str:
    """What to check when no server answered in time (no token was sent)."""
    waited = params.get("connect_timeout") or route.connect_timeout or "psycopg's default, 130"
    port = params.get("port") or route.port or "5432"
    return (
        f"Database alias {alias!r}: no answer from {route.describe()}, port {port}, within "
        f"{waited} s (connect_timeout, per address tried); no access token was sent. Check "
        "that the server is running and reachable from here: the server's firewall rules or "
        "private networking (the app's outbound addresses, a VNet integration, a private "
        "DNS zone), the host name and the port (5432; 6432 for the built-in PgBouncer). A "
        "server that takes longer by design (a failover): raise OPTIONS['connect_timeout']."
    )


# -- the route of each alias, decided once (the pin) ------------------------------------


class Routed(dict[str, Any]):
    """Connection parameters with the route's keys written in, and the route they take.

    A plain ``dict`` to everything else (Django, psycopg, a wrapped backend). The
    parameters as judged are kept, so that a route is reused only for the very
    parameters it was worked out for: any change at all, even one libpq ignores,
    has them judged again.
    """

    route: Route
    judged: dict[str, Any]

    def current_route(self) -> Route | None:
        """The route, if the parameters are still the ones it was worked out for."""
        return self.route if self == self.judged else None


_PINNED: dict[tuple[Any, ...], Decision] = {}
_PINNED_MAX = 256
_pin_lock = threading.Lock()


def _pin_key(alias: str, token: bool, params: Mapping[str, Any]) -> tuple[Any, ...]:
    given = libpq_params(params)
    return (alias, token, tuple(sorted((k, str(v)) for k, v in given.items() if k != "password")))


def _decision(
    alias: str | None,
    params: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    token: bool,
    dial: bool,
) -> Decision:
    """The alias's pinned decision for ``params``, else one decided now (and pinned when
    it is this process's own environment, online, and libpq could use it)."""
    if alias is None or environ is not os.environ or not dial:
        return decide(params, environ, token=token, dial=dial)
    key = _pin_key(alias, token, params)
    found = _PINNED.get(key)
    if found is None:
        found = decide(params, environ, token=token, dial=dial)
        if found.pinnable:
            with _pin_lock:
                while len(_PINNED) >= _PINNED_MAX:  # the oldest goes; the others stay pinned
                    _PINNED.pop(next(iter(_PINNED)))
                found = _PINNED.setdefault(key, found)
    return found


def forget_routes() -> None:
    """Drop every pinned route (tests; a process that changed its environment on purpose)."""
    with _pin_lock:
        _PINNED.clear()


def routed(
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
    alias: str | None = None,
) -> Routed:
    """``params`` with the route's keys written in (a :class:`Decision`), and the route.

    ``alias``: the route is decided at the alias's first connection, then pinned — kept
    per alias *and* parameters (without the password), so a settings override gets its
    own. Without one, decided afresh (``manage.py check``, what-ifs). ``token``: a token
    login (stricter defaults). ``dial=False``: offline (``manage.py check``),
    private-link names are renamed but not looked up.
    """
    result = Routed(params)
    result.route = _decision(alias, params, environ, token=token, dial=dial).apply(result)
    result.judged = dict(result)
    return result


def route_of(params: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Route:
    """The route ``params`` take: the one :func:`routed` found with them, else resolved now."""
    if isinstance(params, Routed) and environ is os.environ:
        found = params.current_route()
        if found is not None:
            return found
    return resolve(params, environ)

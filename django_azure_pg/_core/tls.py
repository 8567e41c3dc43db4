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
* **This machine** (loopback, Unix sockets) gets ``require`` by default, and
  any sslmode.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from .. import errors
from ..errors import InsecureTransport, UnverifiedServer
from . import clouds, diagnosis

logger = logging.getLogger(__name__)

C = TypeVar("C")

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


@functools.lru_cache(maxsize=1)
def _route_variables() -> tuple[str, ...]:
    """The environment variables behind a route: those libpq reads for the route's
    keywords (``PGHOST``, ``PGHOSTADDR``, ``PGPORT``, ``PGSSLMODE``,
    ``PGSSLROOTCERT``), ``PGREQUIRESSL`` (the old spelling of ``sslmode=require``,
    which older libpq builds still read) and ``HOME`` (libpq's default files); first
    of all ``PGSERVICE``."""
    names = {
        o.envvar.decode()
        for o in pq.Conninfo.get_defaults()
        if o.envvar and o.keyword.decode() in _ROUTE_KEYS
    }
    return ("PGSERVICE", *sorted(names | {"PGREQUIRESSL", "HOME"}))


def _route_environment() -> tuple[str | None, ...] | None:
    """This process's values of :func:`_route_variables`; ``None`` when a service is
    named there (its file on disk counts too, so nothing may be kept)."""
    values = tuple(map(os.environ.get, _route_variables()))
    return None if values[0] else values


def _kept_key(params: Mapping[str, Any], *extra: Any) -> tuple[Any, ...] | None:
    """What a kept answer about ``params`` depends on, or ``None`` when it may not be kept
    (a service is named: the service file may change on disk)."""
    given = libpq_params(params)
    environment = _route_environment()
    if given.get("service") or environment is None:
        return None
    probed = tuple(sorted((k, str(v)) for k, v in given.items() if k not in _NOT_PROBED))
    return (probed, environment, *extra)


_KEPT_MAX = 64
_VIEWS: dict[tuple[Any, ...], tuple[dict[str, str], str]] = {}


def libpq_view(params: Mapping[str, Any]) -> tuple[dict[str, str] | None, str]:
    """``(host, hostaddr, port, sslmode, sslrootcert)`` as libpq will use them for
    ``params``, with the service file and ``PG*`` variables of this process applied;
    ``(None, libpq's error)`` when libpq cannot use the settings at all.

    libpq is stopped by an invalid ``target_session_attrs`` (validated after every
    option is read, before any host name lookup or socket), so nothing is dialled.
    The password is never passed.

    Asking libpq holds the GIL for about 90 µs, on every new physical connection.
    Without a service, libpq's route values depend only on the parameters and the
    variables of :func:`_route_variables`, so an answer is kept, keyed on exactly
    those — never on the password, which is not among them. With a service, files
    on disk count too: libpq is asked every time. A refusal is not kept (it may
    come from any other variable; asking again costs only the rare failure).
    """
    key = _kept_key(params)
    view = _VIEWS.get(key) if key is not None else None
    if view is None:
        values, message = _ask_libpq(
            {k: v for k, v in libpq_params(params).items() if k not in _NOT_PROBED}
        )
        if values is None or key is None:
            return values, message
        view = (values, message)
        _keep(_VIEWS, key, view)
    values, message = view
    return dict(values), message  # callers may change theirs


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
            if o.keyword.decode() in _ROUTE_KEYS and o.val is not None
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


def service_values(
    params: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, str], bool]:
    """The service file's values for the service in use, and whether one was named but
    not found in the files this model knows (libpq may still find it in its sysconfdir)."""
    name = params.get("service") or environ.get("PGSERVICE")
    if not name:
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
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for raw in lines:
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
    return Route(
        hosts=_split(host),
        host_from=host_from,
        hostaddrs=_split(hostaddr) if hostaddr else (),
        sslmode=(sslmode or "prefer").strip().lower(),
        sslmode_from=sslmode_from,
        sslrootcert=rootcert,
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


def dial_private_link(params: dict[str, Any], *, dial: bool = True) -> dict[str, Any]:
    """HOST's private-link names replaced by the servers' own names, in place; unless
    ``hostaddr`` is set, each is dialled at the address its private-link name resolves
    to. libpq then checks the certificate against the own name (``verify-full``).

    ``dial=False`` (``manage.py check``: offline) renames without resolving.
    """
    host = params.get("host")
    if not isinstance(host, str) or not any(own_name(h) for h in host.split(",")):
        return params
    hosts = host.split(",")
    if not params.get("hostaddr") and dial:
        port = params.get("port")
        single_port = not (isinstance(port, str) and "," in port)
        addresses = [
            _address(h, port if single_port else None) if own_name(h) else "" for h in hosts
        ]
        if any(a is None for a in addresses):
            return params  # libpq reports the name that does not resolve
        params["hostaddr"] = ",".join(a or "" for a in addresses)
    params["host"] = ",".join(own_name(h) or h for h in hosts)
    return params


def apply_defaults(
    params: dict[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
) -> dict[str, Any]:
    """``params`` with an explicit sslmode (and, for Azure hosts, sslrootcert), in place.

    Explicit values beat the service file and ``PG*`` variables in libpq; the value
    written is libpq's own where something set one, so what is checked is what
    libpq does. ``token``: a token login (non-Azure hosts then default to
    verify-full). ``dial``: resolve private-link names (see :func:`dial_private_link`).
    """
    settle(params, environ, token=token, dial=dial)
    return params


_SETTLED: dict[tuple[Any, ...], tuple[dict[str, Any], Route, bool | None]] = {}
_WRITTEN = ("sslmode", "sslrootcert")


def settle(
    params: dict[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    token: bool = True,
    dial: bool = True,
) -> Route:
    """:func:`apply_defaults` on ``params`` (in place), and the route of the result.

    The route is worked out once, before the defaults are written, and the defaults
    are then written into it: an explicit sslmode (and root file) is exactly what
    libpq would report for the final parameters, so a second :func:`resolve` of them
    would only repeat the first. The connector (connector.py) guards with this route.

    Every new physical connection settles its parameters, which are the same each
    time but for the password. So the outcome is kept, keyed on everything it
    depends on — the parameters without the password, the route's environment
    variables (:func:`_kept_key`), ``token`` and ``dial``, and whether
    ``~/.postgresql/root.crt`` exists where that decided the root file — and only
    where nothing else counts: no service, and HOST neither renamed nor dialled
    (a private-link name is looked up in DNS every time).
    """
    key = _kept_key(params, token, dial) if environ is os.environ else None
    kept = _SETTLED.get(key) if key is not None else None
    if kept is not None:
        written, route, root_file = kept
        if root_file is None or root_file == _default_root_file_exists():
            params.update(written)
            return route
    host, hostaddr = params.get("host"), params.get("hostaddr")
    route, root_file = _settle(params, environ, token=token, dial=dial)
    if (
        key is not None
        and not route.unresolved_service
        # A private-link name is looked up for every connection: one in HOST (also when
        # its lookup failed and HOST was left as it was, to be tried again once DNS
        # answers), or one from PGHOST or a service file, which settling writes into HOST.
        and not _has_private_link_name(host)
        and (params.get("host"), params.get("hostaddr")) == (host, hostaddr)
    ):
        _keep(_SETTLED, key, ({k: params[k] for k in _WRITTEN if k in params}, route, root_file))
    return route


def _has_private_link_name(host: Any) -> bool:
    return isinstance(host, str) and any(own_name(h) for h in host.split(","))


def _keep(store: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    """``store[key] = value``, unless the environment changed while ``value`` was worked
    out (another thread's ``os.environ`` change: ``value`` may be the new one's)."""
    if _route_environment() != key[1]:
        return
    if len(store) >= _KEPT_MAX:
        store.clear()
    store[key] = value


def _settle(
    params: dict[str, Any], environ: Mapping[str, str], *, token: bool, dial: bool
) -> tuple[Route, bool | None]:
    """:func:`settle` itself; also whether ``~/.postgresql/root.crt`` existed, where
    that decided the root file (else ``None``)."""
    dial_private_link(params, dial=dial)
    route = resolve(params, environ)
    if route.private_link and not params.get("host"):
        # A private-link name from a service file or PGHOST: written out explicitly
        # (explicit beats both in libpq) so that it too is verified as the own name.
        params["host"] = ",".join(route.hosts)
        if route.hostaddrs:
            params["hostaddr"] = ",".join(route.hostaddrs)
        dial_private_link(params, dial=dial)
        route = resolve(params, environ)
    if route.unresolved_service and environ is os.environ:
        return route, None  # libpq refuses these settings itself; guard() says so before a token
    if route.sslmode_from == "libpq default":
        if route.azure:
            params["sslmode"] = AZURE_DEFAULT
        elif route.local or not token:
            params["sslmode"] = OTHER_DEFAULT
        else:
            params["sslmode"] = TOKEN_DEFAULT
    else:
        params["sslmode"] = route.sslmode
    rootcert = route.sslrootcert
    root_file = None
    if params["sslmode"] in VERIFIED and route.azure and route.sslrootcert is None:
        root_file = _default_root_file_exists()
        if not root_file:
            rootcert = params["sslrootcert"] = azure_roots()
    # What resolve() reports for the parameters as written: the sslmode is explicit now.
    route = dataclasses.replace(
        route, sslmode=params["sslmode"], sslmode_from="settings", sslrootcert=rootcert
    )
    return route, root_file


def problem(route: Route, alias: str) -> str | None:
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


def guard(
    alias: str,
    params: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    allow_plaintext: bool = False,
) -> Route:
    """Check the path before a token is fetched for it; raise :class:`InsecureTransport`."""
    return check(alias, resolve(params, environ), allow_plaintext=allow_plaintext)


def check(alias: str, route: Route, *, allow_plaintext: bool = False) -> Route:
    """:func:`guard` for a route already worked out (:func:`settle`); ``route`` itself."""
    refused = problem(route, alias)
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


def explained(
    alias: str, connect: Callable[..., C], route: Route | None = None
) -> Callable[..., C]:
    """``connect`` whose certificate-verification failures say how to fix them.

    ``route``: the one already worked out for these parameters (else resolved on failure).
    """

    def run(**params: Any) -> C:
        try:
            return connect(**params)
        except psycopg.OperationalError as exc:
            if (
                isinstance(exc, errors.LoginError)
                or diagnosis.classify(exc) is not diagnosis.TlsVerify
            ):
                raise
            seen = route if route is not None else resolve(params)
            raise UnverifiedServer(unverified_message(alias, seen, exc)) from exc

    return run

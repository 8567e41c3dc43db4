"""What an error means and what to do about it: the one place texts are matched.

Errors raised by this package carry their cause as their type (:mod:`.errors`).
Errors from elsewhere (the server, libpq, azure-identity) are classified here,
by type and SQLSTATE first and by the text the server or libpq sent only where
nothing else tells them apart. psycopg exposes no SQLSTATE for a failed *login*
(libpq hands it only the message, no result to read a SQLSTATE from), so the
login texts PostgreSQL and Azure Database for PostgreSQL send are matched here,
and only here: a refusal by PostgreSQL's meaning (any ``<method> authentication
failed for user``, SQLSTATE 28P01/28000 where one is given), refined by Azure's
own texts. Server and libpq texts are read from psycopg errors only, identity
failures from azure-core/azure-identity types. Nothing matches the wording of
this package's own messages.

``ADVICE`` maps each cause type to its likely cause and fix; the error text
users see (login failures), ``manage.py azure_pg_doctor`` and the table in
docs/troubleshooting.md (checked by tests/test_errors.py) all come from it.
No Django import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.identity import CredentialUnavailableError

from ..errors import (
    InsecureTransport,
    LoginError,
    LoginRefused,
    PasswordRefused,
    RoleMissing,
    RoleNameUnknown,
    RoleTypeMismatch,
    ServerTimeout,
    TokenAcquisitionError,
    TokenError,
    TokenExpiredAtServer,
    TokenNotForRole,
    TokenThrottled,
    TokenTimeout,
    TooManyConnections,
    UnverifiedServer,
)
from ..redaction import redact
from .endpoint import THROTTLE_FALLBACK, CredentialFailure, retry_after_seconds

C = TypeVar("C")

# -- causes read from errors raised elsewhere (classified, never raised) ------


class ServerCause(Exception):
    """A cause read from a server, libpq or azure-identity error."""


class SchemaPrivileges(ServerCause):
    pass


class ObjectPrivileges(ServerCause):
    pass


class DatabaseMissing(ServerCause):
    pass


class TlsRequired(ServerCause):
    pass


class TlsVerify(ServerCause):
    pass


class HostUnknown(ServerCause):
    pass


class Unreachable(ServerCause):
    pass


class NoIdentity(ServerCause):
    pass


class RefusedUnspecified(ServerCause):
    """The server refused the login and said no more: ``<method> authentication failed
    for user "…"`` or SQLSTATE 28P01/28000 — a token it stopped accepting, a role mapped
    to another principal, a wrong password. The login tells them apart (login.py)."""


class IdentityEndpointUnreachable(ServerCause):
    """The identity endpoint refused the connection, or did not answer in time."""


class IdentityEndpointFailed(ServerCause):
    """The identity endpoint answered with an error of its own (HTTP 5xx)."""


# -- server texts: the one place they are matched -----------------------------

# Azure Database for PostgreSQL's login refusals. Sources:
# - "The access token has expired. Please acquire a new token and retry." — the
#   server's text for an expired token at login, as users quote it (darold/ora2pg
#   issue #1851, a token from `az account get-access-token` outliving its hour;
#   also quoted as "... Acquire a new token and try again.");
# - 'password authentication failed for user "…"' for a token that is invalid or
#   not for this role, and 'role "…" does not exist' for a role never created —
#   microsoft/GitHub-Copilot-for-Azure plugin/skills/azure-postgres/references/
#   TROUBLESHOOTING.md;
# - "Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for
#   role[…]" — a managed identity logging in as a role created as a user
#   (MicrosoftDocs/azure-docs issue #120133);
# - "Service Principal oid mismatch for role[…]" — the role is mapped to another
#   principal's object id (cyrilgdn/terraform-provider-postgresql issue #423).
# Microsoft documents no SQLSTATE for these, and psycopg shows none for a failed
# login. PostgreSQL's own refusal reads '<method> authentication failed for user
# "…"' whatever the method (password, LDAP — what the testing kit's server sends
# without its front —, SCRAM, cert; src/backend/libpq/auth.c auth_failed()), with
# SQLSTATE 28P01 (invalid_password) or 28000 (invalid_authorization_specification);
# PgBouncer, Azure's built-in one included, ends a refused login with "password
# authentication failed" or "SASL authentication failed". 28000 also covers
# pg_hba.conf's rules (no entry, rejected), which no credential changes.
_EXPIRED = re.compile(r"access token has expired", re.I)
_TOKEN_TYPE = re.compile(r"cannot generate \w+ tokens for role", re.I)
_OID_MISMATCH = re.compile(r"oid mismatch for role", re.I)
_AUTH_FAILED = re.compile(r"\bauthentication failed\b", re.I)
_ROLE_MISSING = re.compile(r'role "[^"]*" does not exist', re.I)
_HBA = re.compile(r"pg_hba\.conf", re.I)
_REFUSED_STATES = ("28P01", "28000")

# A server out of connection slots: SQLSTATE 53300 (too_many_connections), which
# libpq does not pass on for a failed login. PostgreSQL's texts (src/backend/utils/
# init/postinit.c): "sorry, too many clients already", and "remaining connection
# slots are reserved for …" (non-replication superuser connections up to 15; roles
# with the SUPERUSER attribute / privileges of pg_use_reserved_connections from 16);
# "too many connections for role/database …" for a role's or database's own limit.
_TOO_MANY = re.compile(
    r"too many clients already|remaining connection slots are reserved"
    r"|too many connections for (?:role|database)",
    re.I,
)

# PostgreSQL and libpq texts that carry no SQLSTATE on a failed connection.
_LIBPQ: list[tuple[re.Pattern[str], type[ServerCause]]] = [
    (re.compile(r'database "[^"]*" does not exist', re.I), DatabaseMissing),
    (
        re.compile(
            r"no pg_hba\.conf entry.*no encryption|SSL off|server does not support SSL"
            r"|SSL is required|SSL connection is required",
            re.I,
        ),
        TlsRequired,
    ),
    (
        re.compile(
            r"certificate verify failed|root certificate file|does not match host name", re.I
        ),
        TlsVerify,
    ),
    (
        re.compile(
            r"could not translate host name|Name or service not known|nodename nor servname",
            re.I,
        ),
        HostUnknown,
    ),
    (
        re.compile(
            r"Connection refused|timeout expired|timed out|No route to host"
            r"|Network is unreachable",
            re.I,
        ),
        Unreachable,
    ),
]

# SQLSTATEs of errors raised after login (queries, migrate).
_SQLSTATES: Mapping[str, type[ServerCause]] = {
    "42501": ObjectPrivileges,  # insufficient_privilege (schema: see below)
    "3D000": DatabaseMissing,  # invalid_catalog_name
}


def login_refusal(exc: BaseException) -> type[LoginRefused] | type[RefusedUnspecified] | None:
    """What a failed login's server message means, or ``None`` if it is no refusal.

    A refusal is PostgreSQL's meaning (``… authentication failed …``, SQLSTATE
    28P01/28000); Azure's texts refine it into a :class:`LoginRefused` subclass.
    :class:`RefusedUnspecified` means "refused, reason not given": a token the
    server stopped accepting (revoked, expired server-side), a role mapped to
    another principal, a wrong password — the caller tells them apart by the
    token's age. Only psycopg's errors are read.
    """
    if not isinstance(exc, psycopg.Error) or isinstance(exc, LoginError):
        return None
    text = str(exc)
    if _EXPIRED.search(text):
        return TokenExpiredAtServer
    if _TOKEN_TYPE.search(text):
        return RoleTypeMismatch
    if _OID_MISMATCH.search(text):
        return TokenNotForRole
    if _ROLE_MISSING.search(text):
        return RoleMissing
    if _HBA.search(text):
        return None  # the server's host rules: no credential changes them
    if getattr(exc, "sqlstate", None) in _REFUSED_STATES or _AUTH_FAILED.search(text):
        return RefusedUnspecified
    return None


def out_of_slots(exc: BaseException) -> bool:
    """Whether a psycopg error says the server has no connection slot left (53300)."""
    if not isinstance(exc, psycopg.Error) or isinstance(exc, LoginError):
        return False
    return getattr(exc, "sqlstate", None) == "53300" or bool(_TOO_MANY.search(str(exc)))


def login_failure(alias: str, exc: BaseException, *, password: bool = False) -> LoginError | None:
    """The error to raise instead of ``exc`` from a failed login, or ``None`` to re-raise it.

    A server out of connection slots becomes :class:`TooManyConnections`; with
    ``password`` (a PASSWORD in the settings), a refusal becomes
    :class:`PasswordRefused`, which says that PASSWORD turned the token login off.
    Token refusals are the login's own business (login.py).
    """
    said = redact(server_message(exc))
    if out_of_slots(exc):
        advice = ADVICE[TooManyConnections]
        return TooManyConnections(
            f"Database alias {alias!r}: the server has no connection slot left for this "
            f"login. The server said: {said}. Likely cause: {advice.cause} Fix: {advice.fix}",
            said,
        )
    if password and login_refusal(exc) is not None:
        advice = ADVICE[PasswordRefused]
        return PasswordRefused(
            f"Database alias {alias!r}: the server refused the PASSWORD from the settings. "
            f"The server said: {said}. Likely cause: {advice.cause} Fix: {advice.fix}",
            said,
        )
    return None


def password_login(alias: str, connect: Callable[[], C]) -> C:
    """``connect()`` for an alias with a PASSWORD, its failures explained (:func:`login_failure`)."""
    try:
        return connect()
    except psycopg.OperationalError as exc:
        failure = login_failure(alias, exc, password=True)
        if failure is None:
            raise
        raise failure from exc


def server_message(exc: BaseException) -> str:
    """The server's own line from a psycopg error (after libpq's "connection failed" prefix)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[-1]
    return line[line.find("FATAL:") :] if "FATAL:" in line else line


# -- identity endpoint ----------------------------------------------------------

# azure-identity's errors after HTTP 429 keep no response object for managed
# identity; IMDS's text keeps the endpoint's error code.
_THROTTLED = re.compile(r"too_many_requests|Too Many Requests", re.I)


def throttled_retry_after(exc: BaseException) -> float | None:
    """Seconds to leave the identity endpoint alone if ``exc`` says it throttled (HTTP 429)."""
    for err in chain(exc):
        response = getattr(err, "response", None)
        status = getattr(err, "status_code", None) or getattr(response, "status_code", None)
        if status == 429:
            return retry_after_seconds(getattr(response, "headers", None)) or THROTTLE_FALLBACK
        if not _is_ours(err) and _THROTTLED.search(str(err)):
            return THROTTLE_FALLBACK
    return None


# -- the table ------------------------------------------------------------------


@dataclass(frozen=True)
class Advice:
    seen: str
    """What users see (for the docs)."""
    cause: str
    fix: str

    def filled(self, role: str | None, oid: str | None) -> Advice:
        """This advice with its fix's placeholders (``<USER>``, ``<name>``, ``<object id>``)
        filled in with the role and the principal's object id the login used."""
        fix = self.fix
        if role:
            fix = fix.replace("<USER>", role).replace("<name>", role)
        if oid:
            fix = fix.replace("<object id>", oid)
        return Advice(self.seen, self.cause, fix)


ADVICE: dict[type[BaseException], Advice] = {}
"""Cause type → advice. Most specific types first; lookups follow the MRO."""


def _advice(cause: type[BaseException], seen: str, why: str, fix: str) -> None:
    ADVICE[cause] = Advice(seen, why, fix)


_advice(
    TokenNotForRole,
    '`FATAL: password authentication failed for user "aad_x"` (or `Service Principal oid '
    "mismatch for role[aad_x]`) for a token fetched moments ago",
    "USER is not the PostgreSQL role mapped to this identity: a typo, another app's "
    "`aad_*` role, or a role created for a different principal.",
    "Set USER to the role created for this identity's object id, or create it as an Entra "
    "admin: `manage.py create_aad_principal <name> --oid <object id> --type service`. "
    "Service Connector names the role `aad_<connection name>`.",
)
_advice(
    RoleTypeMismatch,
    "`FATAL: Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for "
    "role[aad_x]`",
    "The role was created for a user, but a managed identity or service principal logs in as it.",
    "Drop the role and create it again with `--type service` "
    "(`pgaadauth_create_principal_with_oid(..., 'service', ...)`).",
)
_advice(
    TokenExpiredAtServer,
    "`FATAL: The access token has expired. Please acquire a new token and retry.`",
    "The token had run out of time when the server checked it, and a fresh token did no "
    "better: the app's clock and the server's disagree, logins take longer than the "
    "hand-out margin (a tenth of the token's lifetime, at most 60 s), or the token was "
    "computed outside django-azure-pg (a PASSWORD set in settings.py).",
    "Check the machine's clock (NTP) and what slows logins; remove a hand-made PASSWORD and "
    "let the ENGINE fetch tokens.",
)
_advice(
    RoleMissing,
    '`FATAL: role "aad_x" does not exist`',
    "The server has no role with this name: the identity was never registered (Bicep/ARM "
    "links create none), or USER is misspelt.",
    "Create it as an Entra admin: `manage.py create_aad_principal <USER> --oid <object id> "
    "--type service` (Service Connector does this when it creates the connection).",
)
_advice(
    RefusedUnspecified,
    '`FATAL: password authentication failed for user "aad_x"` (or `LDAP authentication '
    "failed …`, a pooler's `SASL authentication failed`)",
    "The server refused the password or token for this role: the role is mapped to another "
    "principal, USER names another identity's role, or the token is for another tenant or "
    "cloud.",
    "USER must be the role created for THIS identity (its object id); check `token_scope` "
    "for sovereign clouds and that Entra authentication is enabled on the server.",
)
_advice(
    PasswordRefused,
    "`… the server refused the PASSWORD from the settings …` (ENGINE `django_azure_pg` "
    "with a PASSWORD)",
    "PASSWORD is set, so this alias logs in with that password and fetches no token: a "
    "PASSWORD left over from before the switch to Entra, or a wrong password.",
    "Remove PASSWORD (and AZURE_POSTGRESQL_PASSWORD with `from_env()`) to log in with "
    "tokens; or, for a deliberate password login, fix the password. `manage.py check` "
    "reports a PASSWORD as W010.",
)
_advice(
    TooManyConnections,
    "`FATAL: sorry, too many clients already` / `remaining connection slots are reserved "
    "for …` (SQLSTATE 53300)",
    "Every connection slot is taken: the server's (`max_connections`, less the slots Azure "
    "reserves), or a role's or database's own CONNECTION LIMIT. Burstable tiers have few: "
    "B1ms allows 50, of which 35 for users. Each "
    "process keeps its own connections: workers x threads x (pool max_size, or 1 with "
    "CONN_MAX_AGE), plus migrations, cron jobs and other apps.",
    "Count the connections (`SELECT count(*), usename, application_name FROM "
    "pg_stat_activity GROUP BY 2, 3`); bound them with a pool (`OPTIONS['pool']` with a "
    "small max_size) or fewer workers; use the built-in PgBouncer on port 6432 (General "
    "Purpose and Memory Optimized tiers; not on Burstable); or a bigger tier, or raise "
    "`max_connections` within the tier's limit (Microsoft's \"Limits in Azure Database for "
    'PostgreSQL flexible server").',
)
_advice(
    RoleNameUnknown,
    "`… USER is not set and the access token from … names no PostgreSQL role`",
    "No claim holds the role name: a service principal's display name, a guest user's "
    "`#EXT#` UPN and Service Connector's `aad_<connection>` are in no token (the message says "
    "which case it saw).",
    "Set USER — with Service Connector, its AZURE_POSTGRESQL_USER (`manage.py check` reports "
    "the service-principal case as E005).",
)


_advice(
    InsecureTransport,
    "`refusing to send an access token to host '…' with sslmode='prefer'` (or `allow`, "
    "`disable`), or `… libpq cannot use these connection settings`",
    "A token login would go over a path TLS does not protect: an explicit weak sslmode, "
    "`PGSSLMODE`, or a service file's sslmode, to a host that is not on this machine; or "
    "libpq itself cannot use the settings (an unknown service, a broken service file), so "
    "where the token would go is unknown. Nothing was fetched or sent.",
    "Remove `sslmode` (token logins get `verify-full`) or use `verify-full`. Fix the service "
    "name or file (libpq reads `servicefile`, `PGSERVICEFILE`, `~/.pg_service.conf`, then "
    "`PGSYSCONFDIR` or its compiled-in sysconfdir — `/etc/postgresql-common` in the psycopg "
    "binary wheel). Only if something else protects the path (a TLS-terminating sidecar), set "
    '`OPTIONS["allow_plaintext_token"] = True`. `manage.py check` reports it as E006.',
)
_advice(
    UnverifiedServer,
    "`… did not prove it is '…' (sslmode=verify-full); no access token was sent. libpq said: "
    "… certificate verify failed` (or `does not match host name`)",
    "A token login verifies the server's name (verify-full), and this server's certificate "
    "does not carry HOST or is signed by a CA libpq was not given: HOST is a custom DNS name or "
    "an IP address, a private-link name given through a service file or PGHOST, or something "
    "in between presents its own certificate.",
    "Set HOST to the server's Azure name `<server>.postgres.database.azure.com` and "
    '`OPTIONS["hostaddr"]` to the address to dial (a private endpoint\'s IP), or point '
    '`OPTIONS["sslrootcert"]` at the CA that signs a self-managed server. An explicit '
    "`sslmode=require` sends the token unverified (`manage.py check` warns, W002).",
)
_advice(
    TokenThrottled,
    "`… the identity endpoint throttled the requests (HTTP 429) …`",
    "The identity endpoint is throttling this machine (too many token requests) and no "
    "valid token is cached.",
    "Find what requests tokens in a loop (a new credential per request, another app on the "
    "machine); django-azure-pg asks again only after the endpoint's Retry-After.",
)
_advice(
    TokenTimeout,
    "`… returned no token … within 10 s (the identity endpoint is slow or not answering)` "
    "(10 s is the default `token_timeout`)",
    "The identity endpoint did not answer in time and no valid token is cached.",
    "Check that the app has a managed identity and that IDENTITY_ENDPOINT / IMDS is "
    "reachable; raise OPTIONS['token_timeout'] only if the endpoint is merely slow.",
)
_advice(
    IdentityEndpointUnreachable,
    "`… could not get an Entra access token …` with `ServiceRequestError: … Connection "
    "refused` (or a timeout) from the identity endpoint",
    "The identity endpoint (IDENTITY_ENDPOINT on App Service, Container Apps and Functions; "
    "IMDS at 169.254.169.254 on VMs and AKS) refused the connection or did not answer: the "
    "platform's identity service is down or restarting, or something on the machine (a "
    "proxy in HTTP(S)_PROXY, a network policy) blocks it. Not the database.",
    "Check the endpoint shown (`manage.py azure_pg_doctor`) from the app's own shell; keep "
    "IDENTITY_ENDPOINT as the platform set it, add 169.254.169.254 and localhost to "
    "NO_PROXY; restart the app if the platform's endpoint stays down.",
)
_advice(
    IdentityEndpointFailed,
    "`… could not get an Entra access token …` after the identity endpoint answered HTTP "
    "500 (or another 5xx)",
    "The identity endpoint answered with an error of its own: the platform's identity "
    "service failed this request. The managed identity itself may well be fine.",
    "Retry later; if it lasts, check Azure's service health for the region and restart "
    "the app. Meanwhile requests fail at once with this error while the package asks the "
    "endpoint again in the background (every 0.125 s at first, then at most twice a "
    "second); a cached token keeps serving until it runs out.",
)
_advice(
    NoIdentity,
    "`… CredentialUnavailableError …`",
    "No identity is available to this process: no managed identity, no `az login`, no "
    "service principal variables.",
    "Enable a managed identity on the app (or set AZURE_POSTGRESQL_CLIENTID for a "
    "user-assigned one); on a laptop run `az login`.",
)
_advice(
    TokenAcquisitionError,
    "`… could not get an Entra access token from …`",
    "The credential failed to return a token.",
    "Read the chained cause; `manage.py azure_pg_doctor` shows which credential was used and why.",
)
_advice(
    SchemaPrivileges,
    "`permission denied for schema public` (usually during `migrate`)",
    "The role may not use or create objects in the schema (PostgreSQL 15+ gives non-owners "
    "no CREATE on public; Service Connector grants nothing on schemas).",
    "Run `migrate` as the tables' owner (the documented setup: the app's role only reads "
    "and writes; docs: Granting privileges). Only if this role must create objects itself "
    "(django-tenants): `manage.py grant_aad_privileges --migrate`, as the schema's owner.",
)
_advice(
    ObjectPrivileges,
    "`permission denied for table …` / `for sequence …`",
    "The role lacks privileges on objects owned by another role.",
    "Run `manage.py grant_aad_privileges` as the objects' owner.",
)
_advice(
    DatabaseMissing,
    '`FATAL: database "x" does not exist`',
    "NAME names a database that does not exist on this server.",
    "Create it (`az postgres flexible-server db create`) or fix NAME.",
)
_advice(
    TlsRequired,
    "`no pg_hba.conf entry for host … no encryption` / `SSL connection is required`",
    "TLS is off on one side: a password login with `sslmode=disable`, or a server (or "
    "something in between) that does not offer TLS; Azure always offers TLS 1.2+.",
    "Leave sslmode unset (Azure hosts get `verify-full`) or use `verify-full`/`require`.",
)
_advice(
    TlsVerify,
    "`certificate verify failed` / `root certificate file … does not exist`",
    "The server certificate could not be verified: a name outside the certificate, a "
    "TLS-inspecting proxy or a man-in-the-middle, or a root file libpq cannot read.",
    "Connect with the server's own name; for Azure hosts leave `sslrootcert` unset (the "
    "bundled Azure roots are used), else point it at a real CA file (the psycopg binary wheel "
    "does not read /etc/ssl by itself). Never pin intermediates.",
)
_advice(
    HostUnknown,
    '`could not translate host name "…" to address`',
    "The host name does not resolve.",
    "Check HOST (`<server>.postgres.database.azure.com`) and, for private access, the private "
    "DNS zone linked to the app's virtual network.",
)
_advice(
    ServerTimeout,
    "`… no answer from host '…', port …, within 10 s (connect_timeout, per address tried); "
    "no access token was sent …`",
    "The server accepted no login in time: a firewall that drops packets instead of "
    "refusing, a stopped or failing-over server, a private endpoint the app's network "
    "cannot route to, or the wrong port. A token login waits 10 s per address when "
    "nothing sets `connect_timeout` (psycopg's own default is 130 s).",
    "Check the server's networking (the app's outbound addresses, VNet integration, the "
    "private DNS zone), that it is running, and PORT (5432; 6432 for PgBouncer). A path "
    "slow by design: raise `OPTIONS['connect_timeout']` (or `PGCONNECT_TIMEOUT`).",
)
_advice(
    Unreachable,
    "`Connection refused` / `timeout expired`",
    "The server cannot be reached: firewall rule, network access mode, wrong port, or the "
    "server is stopped.",
    "Allow the app's outbound IPs (or 'Allow Azure services') in the server's networking "
    "settings, or use VNet integration; check PORT (5432, or 6432 for PgBouncer).",
)


# -- issue 23: an empty HOST ----------------------------------------------------------


class NoHost(ServerCause):
    """libpq dialled a local Unix socket: HOST is empty (``manage.py check``: E011)."""


# libpq's text when it tries a socket file ('connection to server on socket
# "/var/run/postgresql/.s.PGSQL.5432" failed: No such file or directory').
_LIBPQ.append((re.compile(r'connection to server on socket "[^"]*" failed', re.I), NoHost))
_advice(
    NoHost,
    '`connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: No such '
    "file or directory`",
    "HOST is empty or missing, so libpq tried a PostgreSQL on this machine's Unix socket "
    "instead of the Azure server — often a Service Connector variable that is not set.",
    "Set HOST to `<server>.postgres.database.azure.com`; with `from_env()` it comes from "
    "AZURE_POSTGRESQL_HOST (or `host=` in AZURE_POSTGRESQL_CONNECTIONSTRING). `manage.py "
    "check` reports it as E011.",
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_ours(exc: BaseException) -> bool:
    return isinstance(exc, (LoginError, TokenError))


def classify(exc: BaseException) -> type[BaseException] | None:
    """The cause type of ``exc``: our own error types first, then what others' errors say.

    "No token could be had" (:class:`TokenAcquisitionError`) gives way to what the
    credential's own error says (the identity endpoint unreachable, failing, absent).
    """
    errors = list(chain(exc))
    ours = None
    for err in errors:
        if ours is None and _is_ours(err):
            ours = next((k for k in type(err).__mro__ if k in ADVICE), None)
    if ours is not None and ours is not TokenAcquisitionError:
        return ours
    for err in errors:
        if _is_ours(err):
            continue
        cause = _foreign_cause(err)
        if cause is not None:
            return cause
    return ours


def _foreign_cause(err: BaseException) -> type[BaseException] | None:
    # The token thread passes on only a frameless copy of what a credential raised,
    # which keeps the original type as exc_type.
    kind = err.exc_type if isinstance(err, CredentialFailure) else type(err)
    if issubclass(kind, (ServiceRequestError, ServiceResponseError)):
        return IdentityEndpointUnreachable  # azure-core: no connection, or no answer
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return IdentityEndpointFailed
    if issubclass(kind, CredentialUnavailableError):
        return NoIdentity
    if not isinstance(err, psycopg.Error):
        return None  # server and libpq texts come only in psycopg's errors
    if out_of_slots(err):
        return TooManyConnections
    refusal = login_refusal(err)
    if refusal is not None:
        return refusal
    state = getattr(err, "sqlstate", None)
    if isinstance(state, str) and state in _SQLSTATES:
        cause = _SQLSTATES[state]
        if cause is ObjectPrivileges and "schema" in str(err):
            return SchemaPrivileges
        return cause
    for pattern, found in _LIBPQ:
        if pattern.search(str(err)):
            return found
    return None


def identity_failure(exc: BaseException, status: int | None) -> type[BaseException] | None:
    """The cause of a failed token fetch, given the HTTP status the identity endpoint
    last answered with during it (``None``: no answer seen).

    azure-identity reports an App Service endpoint's HTTP 500 as
    ``CredentialUnavailableError`` ("… configuration not found in environment"):
    the status the endpoint really sent tells an outage from a missing identity.
    """
    cause = classify(exc)
    vague = (None, NoIdentity, TokenAcquisitionError, TokenTimeout)  # 5xx retried until then
    if status is not None and status >= 500 and cause in vague:
        return IdentityEndpointFailed
    return cause


def diagnose(exc: BaseException) -> Advice | None:
    cause = classify(exc)
    return ADVICE.get(cause) if cause is not None else None


def markdown_table() -> str:
    """The "Errors you may see" table of docs/troubleshooting.md."""
    rows = ["| What you see | Likely cause | Fix |", "|---|---|---|"]
    rows += [f"| {a.seen} | {a.cause} | {a.fix} |" for a in ADVICE.values()]
    return "\n".join(rows)

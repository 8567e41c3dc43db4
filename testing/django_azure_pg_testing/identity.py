"""A local stand-in for Azure's managed-identity endpoints.

Real azure-identity credentials talk HTTP to it — the App Service protocol
(``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``, also used by Container Apps and
Functions) and the IMDS protocol (``AZURE_POD_IDENTITY_AUTHORITY_HOST``) — so
tests and the demo run the same code paths as production. It also runs the
LDAP responder that makes a local PostgreSQL accept exactly the tokens it
issued, for the roles they were issued to, until they expire.

Fault switches (latency, HTTP 500s, hangs, malformed JSON, HTTP 429 with
``Retry-After``) and counters exist for tests and benchmarks. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import jwt
from .ldap import LdapServer

logger = logging.getLogger("django_azure_pg_testing")

TENANT_ID = "72f988bf-0000-4000-8000-00000000e1d0"
SUBSCRIPTION = "00000000-0000-4000-8000-00000000cafe"
DEFAULT_RESOURCE = "https://ossrdbms-aad.database.windows.net"
FAULT_MODES = ("error", "hang", "malformed", "throttle")


@dataclass(frozen=True)
class Identity:
    """An Entra principal the emulator can issue tokens for."""

    name: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    kind: str = "user"

    @property
    def resource_id(self) -> str:
        rg = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-emulator/providers"
        if self.kind == "system":
            return f"{rg}/Microsoft.Web/sites/{self.name}"
        return f"{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"


@dataclass
class Stats:
    token_requests: int = 0
    tokens_issued: int = 0
    faulted_requests: int = 0
    logins_accepted: int = 0
    logins_refused: int = 0
    peak_concurrent_requests: int = 0
    """Most token requests in flight at once (reset it to measure a period)."""

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Issued:
    identity: Identity
    expires_on: float
    revoked: bool = False


class IdentityEmulator:
    """Managed-identity endpoint + LDAP token check, in background threads."""

    def __init__(
        self,
        *,
        lifetime: float = 3600.0,
        system_identity: str = "app-django-azure-pg",
        identities: Iterable[Identity] = (),
        clock: Callable[[], float] = time.time,
        hang_limit: float = 120.0,
        port: int = 0,
        ldap_port: int = 0,
    ) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self.hang_limit = hang_limit
        self.identity_header = secrets.token_hex(16)
        self.system = Identity(system_identity, kind="system")
        self.identities: dict[str, Identity] = {i.client_id: i for i in identities}
        self.stats = Stats()
        self.latency = 0.0
        self.login_latency = 0.0
        """Seconds a login takes before the server checks its token (a slow login path)."""
        self.fault: str | None = None
        self.retry_after = 5
        """Seconds the ``throttle`` fault asks for in ``Retry-After``."""
        self.request_times: list[float] = []
        """When each token request arrived (``clock()``; the last 10,000)."""
        self._in_flight = 0
        self._unhang = threading.Event()
        self._lock = threading.Lock()
        self._issued: dict[str, _Issued] = {}
        self._roles: dict[str, set[str]] = {}
        self._http = _HttpServer(("127.0.0.1", port), _Handler)
        self._http.daemon_threads = True
        self._http.emulator = self  # type: ignore[attr-defined]
        self._ldap = LdapServer(self.check_login, ldap_port, why=self.refusal)
        self.principal_of: Callable[[str], str | None] | None = None
        """For a role not mapped with :meth:`allow_role`: the object id it was created for
        (``LocalPostgres.principal_object_id``, what the ``pgaadauth`` stand-in recorded)."""

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> IdentityEmulator:
        thread = threading.Thread(
            target=self._http.serve_forever, name="emulator-http", daemon=True
        )
        thread.start()
        self._ldap.start()
        return self

    def stop(self) -> None:
        self._unhang.set()
        self._http.shutdown()
        self._http.server_close()
        self._ldap.stop()

    def __enter__(self) -> IdentityEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def ldap_port(self) -> int:
        return self._ldap.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app_service_env(self) -> dict[str, str]:
        """What App Service / Container Apps / Functions set for a managed identity."""
        return {
            "IDENTITY_ENDPOINT": f"{self.url}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
        }

    def imds_env(self) -> dict[str, str]:
        """Points azure-identity's IMDS protocol (VMs, AKS pod identity) here."""
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.url}

    # -- identities and roles -------------------------------------------------

    def add_identity(self, name: str) -> Identity:
        """A user-assigned managed identity."""
        identity = Identity(name)
        with self._lock:
            self.identities[identity.client_id] = identity
        return identity

    def allow_role(self, role: str, identity: Identity | None = None) -> None:
        """Map a PostgreSQL role to a principal, as ``pgaadauth_create_principal_with_oid`` does."""
        identity = identity or self.system
        with self._lock:
            self._roles.setdefault(role, set()).add(identity.object_id)

    def identity_for(self, client_id: str | None) -> Identity | None:
        if not client_id:
            return self.system
        return self.identities.get(client_id)

    # -- tokens ---------------------------------------------------------------

    def issue(self, identity: Identity, resource: str = DEFAULT_RESOURCE) -> tuple[str, int]:
        now = self.clock()
        expires_on = int(now + self.lifetime)
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": expires_on,
            "aio": secrets.token_urlsafe(12),
            "appid": identity.client_id,
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{TENANT_ID}/",
            "idtyp": "app",
            "oid": identity.object_id,
            "sub": identity.object_id,
            "tid": TENANT_ID,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_mirid": identity.resource_id,
        }
        token = jwt.mint(claims)
        with self._lock:
            if len(self._issued) > 5000:
                self._issued = {t: i for t, i in self._issued.items() if i.expires_on > now}
            self._issued[token] = _Issued(identity, expires_on)
            self.stats.tokens_issued += 1
        return token, expires_on

    def refusal(self, role: str, token: str) -> str | None:
        """Why Azure would refuse this login: ``None`` (it would not), ``"expired"`` or
        ``"refused"`` (unknown or revoked token, or a principal not mapped to the role)."""
        with self._lock:
            issued = self._issued.get(token)
            if issued is None or issued.revoked:
                return "refused"
            mapped = role == issued.identity.name or issued.identity.object_id in self._roles.get(
                role, ()
            )
        if not mapped and self.principal_of is not None:  # asks the server: not under the lock
            mapped = self.principal_of(role) == issued.identity.object_id
        if not mapped:
            return "refused"
        if self.clock() >= issued.expires_on:
            return "expired"
        return None

    def check_login(self, role: str, token: str) -> bool:
        """The LDAP bind decision: an issued, unrevoked, unexpired token for this role."""
        if self.login_latency:
            time.sleep(self.login_latency)
        ok = self.refusal(role, token) is None
        with self._lock:
            if ok:
                self.stats.logins_accepted += 1
            else:
                self.stats.logins_refused += 1
        return ok

    def issued_tokens(self) -> list[str]:
        """Every token issued so far (tests scan logs and reports for them)."""
        with self._lock:
            return list(self._issued)

    def revoke_all(self) -> int:
        """Make the server refuse every token issued so far (an early rotation)."""
        with self._lock:
            live = [i for i in self._issued.values() if not i.revoked]
            for issued in live:
                issued.revoked = True
        return len(live)

    # -- faults ---------------------------------------------------------------

    def set_fault(
        self,
        mode: str | None = None,
        *,
        latency: float | None = None,
        login_latency: float | None = None,
    ) -> None:
        """Make the identity endpoint fail (``mode``) or slow (``latency``, seconds per token
        request), or logins slow (``login_latency``: seconds before the server checks the
        token, so one handed out near its expiry reaches the check expired)."""
        if mode is not None and mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES} or None")
        if latency is not None:
            self.latency = latency
        if login_latency is not None:
            self.login_latency = login_latency
        self.fault = mode
        if mode == "hang":
            self._unhang.clear()
        else:
            self._unhang.set()

    def clear_faults(self) -> None:
        self.set_fault(None, latency=0.0, login_latency=0.0)

    # -- HTTP -------------------------------------------------------------------

    def _token_response(
        self, handler: _Handler, protocol: str, query: dict[str, str]
    ) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            self.stats.token_requests += 1
            self._in_flight += 1
            self.stats.peak_concurrent_requests = max(
                self.stats.peak_concurrent_requests, self._in_flight
            )
            self.request_times.append(self.clock())
            del self.request_times[:-10000]
        try:
            return self._answer(protocol, query)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, protocol: str, query: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        if self.latency:
            time.sleep(self.latency)
        if self.fault:
            with self._lock:
                self.stats.faulted_requests += 1
            if self.fault == "hang":
                self._unhang.wait(self.hang_limit)
                return 0, ""
            if self.fault == "malformed":
                return 200, '{"access_token": "'
            if self.fault == "throttle":
                return 429, {
                    "error": "too_many_requests",
                    "error_description": "Too many requests. Retry after the interval given.",
                }
            return 500, {"error": "internal_error", "error_description": "emulated outage"}
        resource = query.get("resource", "")
        if not resource:
            return 400, {"error": "invalid_request", "error_description": "resource is required"}
        client_id = query.get("client_id") or query.get("clientid")
        identity = self.identity_for(client_id)
        if identity is None:
            return 400, {
                "error": "invalid_request",
                "error_description": f"Identity not found for client_id {client_id}",
            }
        token, expires_on = self.issue(identity, resource)
        now = int(self.clock())
        body: dict[str, Any] = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
            "not_before": str(now),
        }
        if protocol == "imds":
            body["expires_in"] = str(expires_on - now)
            body["ext_expires_in"] = body["expires_in"]
        return 200, body

    def _admin(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/_emulator/stats":
            return 200, {**self.stats.as_dict(), "lifetime": self.lifetime, "fault": self.fault}
        if path == "/_emulator/faults":
            self.set_fault(payload.get("mode"), latency=payload.get("latency"))
            return 200, {"fault": self.fault, "latency": self.latency}
        if path == "/_emulator/revoke":
            return 200, {"revoked": self.revoke_all()}
        if path == "/_emulator/lifetime":
            self.lifetime = float(payload["lifetime"])
            return 200, {"lifetime": self.lifetime}
        if path == "/_emulator/roles":
            identity = self.identity_for(payload.get("client_id"))
            if identity is None:
                return 404, {"error": "unknown client_id"}
            self.allow_role(payload["role"], identity)
            return 200, {"role": payload["role"], "object_id": identity.object_id}
        return 404, {"error": "not found"}


class _HttpServer(ThreadingHTTPServer):
    """The endpoint's HTTP server, quiet about clients that went away mid-request (a
    worker stopped, a test's timeout): the standard one prints their traceback, which
    reads like a failure of the emulator."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoints
    server: ThreadingHTTPServer

    @property
    def emulator(self) -> IdentityEmulator:
        return self.server.emulator  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: dict[str, Any] | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", str(self.emulator.retry_after))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.startswith("/_emulator/"):
            self._send(*self.emulator._admin(url.path, {}))
            return
        if url.path == "/msi/token":
            if self.headers.get("X-IDENTITY-HEADER") != self.emulator.identity_header:
                self._send(
                    401, {"error": "unauthorized", "error_description": "bad identity header"}
                )
                return
            status, body = self.emulator._token_response(self, "app_service", query)
        elif url.path == "/metadata/identity/oauth2/token":
            if self.headers.get("Metadata", "").lower() != "true":
                self._send(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "Required metadata header not specified",
                    },
                )
                return
            status, body = self.emulator._token_response(self, "imds", query)
        else:
            self._send(404, {"error": "not found"})
            return
        if status == 0:  # hang: drop the connection without an answer
            self.close_connection = True
            return
        self._send(status, body)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}") if length else {}
        self._send(*self.emulator._admin(url.path, payload))

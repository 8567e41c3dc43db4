"""Step-by-step diagnosis of one alias's passwordless login, for ``azure_pg_doctor``.

Each step says what it found; a failed step says the likely cause and fix.
Secrets (tokens, client secrets, passwords, identity headers) are never shown:
only whether they are set. The system checks are steps too (the command runs
none before it: a failing check must not hide the rest of the diagnosis), and a
failed token fetch names the identity endpoint asked, not the database.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .._core import claims, clouds, credentials, diagnosis, endpoint, tls
from .._core.token_source import TokenSource
from ..mixin import TokenLoginMixin
from ..redaction import redact
from . import one_off

_SHOWN_VARS = (*credentials.IDENTITY_HINTS, "AZURE_TENANT_ID", clouds.AUTHORITY_HOST_VAR)
_PRESENCE_ONLY = ("IDENTITY_HEADER", "MSI_SECRET", "AZURE_CLIENT_SECRET", "PGPASSWORD")
_SECRET_SUFFIXES = ("PASSWORD", "CLIENTSECRET", "CONNECTIONSTRING", "SECRET")


@dataclass
class Step:
    name: str
    status: str  # "ok", "warning", "fail", "skipped"
    detail: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None
    fix: str | None = None

    def failed(self, exc: BaseException, cause: type[BaseException] | None = None) -> Step:
        """Failed with ``exc``; its advice, or that of ``cause`` when the caller knows better."""
        self.status = "fail"
        self.detail["error"] = redact(str(exc))
        if cause is None:
            return self.advise(diagnosis.diagnose(exc))
        return self.advise(diagnosis.ADVICE.get(cause))

    def advise(self, advice: diagnosis.Advice | None) -> Step:
        if advice is not None:
            self.cause, self.fix = advice.cause, advice.fix
        return self


@dataclass
class Report:
    alias: str
    steps: list[Step]

    @property
    def ok(self) -> bool:
        return all(s.status != "fail" for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "ok": self.ok, "steps": [asdict(s) for s in self.steps]}


def environment_seen(environ: Any) -> dict[str, str]:
    seen: dict[str, str] = {}
    for name in sorted(environ):
        if name.startswith(credentials.SERVICE_CONNECTOR_PREFIX):
            secret = name.endswith(_SECRET_SUFFIXES)
            seen[name] = "(set)" if secret else environ[name]
    for name in _SHOWN_VARS:
        if environ.get(name):
            seen[name] = environ[name]
    for name in _PRESENCE_ONLY:
        if environ.get(name):
            seen[name] = "(set)"
    return seen


def check_steps(alias: str, entry: dict[str, Any], environ: Any) -> list[Step]:
    """``manage.py check``'s findings for this alias, each as a step with its cause and fix.

    Run on the entry as configured (the doctor itself connects without the pool), so a
    leftover PASSWORD, a token pasted into it, a missing HOST or a pool Django cannot
    build are explained here too, not only as the raw error they lead to.
    """
    from .. import _checks

    steps = []
    for message in _checks.check_alias(alias, entry, environ):
        status = "fail" if message.is_serious() else "warning"
        step = Step(f"check {message.id}", status, {"id": message.id})
        step.cause, step.fix = message.msg, message.hint
        steps.append(step)
    return steps


def system_check_steps() -> list[Step]:
    """The project's other failing system checks (not this package's, which
    :func:`check_steps` explains per alias), each as a warning step: they stop
    ``migrate`` and ``runserver``, not this login."""
    from django.core import checks

    try:
        messages = checks.run_checks(include_deployment_checks=False)
    except Exception as exc:  # a check that crashes is a finding too
        step = Step("system checks", "warning", {"error": redact(str(exc))})
        step.cause = "A system check raised an exception; `manage.py check` fails the same way."
        return [step]
    steps = []
    for message in messages:
        if not message.is_serious() or message.is_silenced():
            continue
        if str(message.id or "").startswith("django_azure_pg."):
            continue
        step = Step(f"check {message.id}", "warning", {"id": message.id})
        step.cause = (
            f"{message.msg} (every command that runs the system checks, migrate and "
            "runserver among them, stops on it; this diagnosis does not)"
        )
        step.fix = message.hint
        steps.append(step)
    return steps


def identity_endpoint(environ: Any) -> str | None:
    """Where ManagedIdentityCredential asks for tokens in this environment (azure-identity
    picks it the same way: IDENTITY_ENDPOINT for App Service, Container Apps and Functions,
    MSI_ENDPOINT for Cloud Shell, else IMDS at 169.254.169.254 or
    AZURE_POD_IDENTITY_AUTHORITY_HOST — azure/identity/_credentials/imds.py). Scheme, host,
    port and path only."""
    for name in ("IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        if environ.get(name):
            return _public_url(environ[name])
    host = environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or "http://169.254.169.254"
    return _public_url(host.strip("/") + "/metadata/identity/oauth2/token")


def _public_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(not a URL)"
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def run(alias: str, entry: dict[str, Any], environ: Any = os.environ) -> Report:
    from django.db.utils import load_backend

    steps: list[Step] = system_check_steps() + check_steps(alias, entry, environ)
    opts = entry.get("OPTIONS") or {}
    entry = one_off(entry)
    # The user's own alias: every message the login writes names it.
    wrapper = load_backend(entry["ENGINE"]).DatabaseWrapper(entry, alias)
    params = wrapper.get_connection_params()
    steps.append(
        Step(
            "settings",
            "ok",
            {
                "engine": entry["ENGINE"],
                "host": entry.get("HOST"),
                "port": entry.get("PORT") or 5432,
                "database": entry.get("NAME"),
                "user": entry.get("USER") or "(from token)",
                "sslmode": params.get("sslmode"),
                "sslrootcert": params.get("sslrootcert") or "(libpq default)",
                # The route the defaults were worked out with (tls.Routed), not again.
                "dials": tls.route_of(params, environ).describe(),
                "pool": bool(opts.get("pool")),
            },
        )
    )

    login = None
    fill: tuple[str | None, str | None] = (entry.get("USER") or None, None)
    if entry.get("PASSWORD"):
        steps.append(Step("credential", "ok", {"kind": "password", "reason": "PASSWORD is set"}))
    elif not isinstance(wrapper, TokenLoginMixin):
        step = Step("credential", "fail", {"engine": entry["ENGINE"], "token_login": False})
        step.cause = "This ENGINE does not log in with Entra tokens, and no PASSWORD is set."
        step.fix = (
            "Use ENGINE 'django_azure_pg' or 'django_azure_pg.postgis', or put "
            "django_azure_pg.mixin.TokenLoginMixin first in your backend's DatabaseWrapper bases."
        )
        steps.append(step)
        steps.append(Step("connect", "skipped"))
        return Report(alias, steps)
    else:
        step = Step("credential", "ok", {"environment": environment_seen(environ)})
        steps.append(step)
        try:
            login = wrapper.azure_login
        except Exception as exc:
            step.failed(exc)
        else:
            assert login is not None
            step.detail |= {"credential": login.choice.name, "reason": login.choice.reason}

    if login is not None:
        step = Step("token", "ok", {"scope": login.scope})
        steps.append(step)
        started = time.monotonic()
        before = endpoint.last_answer
        try:
            token = login.source.get_token()
        except Exception as exc:
            token_failed(step, exc, login.choice.kind, before, environ)
            steps.append(cache_step(login.source))
            steps.append(Step("connect", "skipped"))
            return Report(alias, steps)
        found = claims.decode(token.value)
        expires = datetime.datetime.fromtimestamp(token.expires_on, datetime.timezone.utc)
        step.detail |= {
            "fetched_in_ms": round((time.monotonic() - started) * 1000, 1),
            "expires_in_s": round(token.expires_on - time.time()),
            "expires_at": expires.isoformat(timespec="seconds"),
            "claims": claims.public(found),
        }
        steps.append(cache_step(login.source))
        role_step = Step("role", "ok")
        steps.append(role_step)
        try:
            role = login.role_for(token.value)
        except Exception as exc:
            role_step.failed(exc)
            return Report(alias, steps)
        oid = claims.public(found).get("oid")
        fill = (role, oid if isinstance(oid, str) else None)
        role_step.detail = {
            "role": role,
            "from": "USER" if entry.get("USER") else "the token's claims (USER is empty)",
        }

    steps.append(_connect(wrapper, *fill))
    return Report(alias, steps)


_ASKS_AN_ENDPOINT = ("managed_identity", "default")
"""Credential kinds that ask a managed-identity endpoint (DefaultAzureCredential among others)."""


def token_failed(step: Step, exc: BaseException, kind: str, before: Any, environ: Any) -> Step:
    """The token step failed: name the identity endpoint and what it answered, if it was asked.

    azure-identity reports an App Service endpoint's HTTP 500 as "configuration not
    found" (``CredentialUnavailableError``); the status the endpoint sent, noted by the
    credential's response hook (endpoint.py), tells that outage from a missing identity.
    """
    answer = endpoint.last_answer
    if answer is before:
        answer = None  # nothing answered during this fetch
    if kind in _ASKS_AN_ENDPOINT:
        step.detail["identity_endpoint"] = answer.url if answer else identity_endpoint(environ)
        step.detail["endpoint_answer"] = f"HTTP {answer.status}" if answer else "none"
    return step.failed(exc, diagnosis.identity_failure(exc, answer.status if answer else None))


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def cache_step(source: TokenSource) -> Step:
    """The token cache's state in this process (``TokenSource.status()``): never a token."""
    status = source.status()
    now = time.time()
    detail: dict[str, Any] = {
        "credential": status.label,
        "token_cached": status.cached,
        "token_usable": status.usable,
        "token_age_s": _seconds(status.age_s),
        "token_remaining_s": _seconds(status.remaining_s),
        "next_refresh_in_s": _seconds(status.next_refresh_in_s),
        "next_refresh_at": None
        if status.next_refresh_in_s is None
        else _iso(now + status.next_refresh_in_s),
        "fetch_in_flight_s": _seconds(status.fetch_running_s),
        "last_fetch_error": status.last_error,
        "last_fetch_error_ago_s": _seconds(status.last_error_ago_s),
        "throttled_for_s": _seconds(status.throttled_for_s),
        "refusal_refresh_available_in_s": _seconds(status.refusal_refresh_in_s),
    }
    step = Step("cache", "ok", detail)
    if status.throttled_for_s > 0:
        step.status = "warning"
        step.cause = "The identity endpoint throttled this process (HTTP 429, Retry-After)."
        step.fix = "Wait for the Retry-After; fewer processes or fewer credential objects help."
    elif status.last_error is not None and (
        not status.usable or status.age_s is None or (status.last_error_ago_s or 0.0) < status.age_s
    ):
        # Failed since the cached token was obtained: a refresh is failing.
        step.status = "warning"
        step.cause = "A token fetch failed in this process (see last_fetch_error)."
    elif not status.usable and status.fetch_running_s is not None:
        step.status = "warning"
        step.cause = "No usable token is cached and a fetch is still waiting for an answer."
    return step


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def _connect(wrapper: Any, role: str | None, oid: str | None) -> Step:
    """Connect as the ENGINE does; a failure's fix names the role and object id used."""
    step = Step("connect", "ok")
    try:
        wrapper.ensure_connection()
    except Exception as exc:
        step.failed(exc)
        if step.fix:
            step.fix = diagnosis.Advice("", "", step.fix).filled(role, oid).fix
        return step
    try:
        return _inspect(step, wrapper.connection)
    except Exception as exc:  # the server dropped the session after login, say
        return step.failed(exc)
    finally:
        wrapper.close()


def _inspect(step: Step, conn: Any) -> Step:
    """The session's user, database, TLS and privileges (a dropped session raises)."""
    row = conn.execute(
        "SELECT current_user, current_database(), current_setting('server_version'), "
        "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), "
        "has_schema_privilege('public', 'USAGE'), has_schema_privilege('public', 'CREATE')"
    ).fetchone()
    user, db, version, ssl, usage, create = row
    step.detail = {"current_user": user, "database": db, "server_version": version, "tls": ssl}
    step.detail["server_address"] = f"{conn.info.hostaddr or conn.info.host}:{conn.info.port}"
    unusable = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
        "AND NOT has_table_privilege(format('%I.%I', schemaname, tablename), 'SELECT')"
    ).fetchone()[0]
    step.detail |= {"public_usage": usage, "public_create": create, "unusable_tables": unusable}
    if not usage:
        step.status = "fail"
        step.detail["error"] = "no USAGE on schema public"
        step.advise(diagnosis.ADVICE[diagnosis.SchemaPrivileges])
    elif unusable:
        step.status = "warning"
        step.cause = f"{unusable} table(s) in public cannot be read by this role."
        step.fix = "Run manage.py grant_aad_privileges as the tables' owner."
    if usage and not create:
        # The documented setup (docs: Granting privileges): the owner owns the tables and
        # runs migrate; the app's role reads and writes. Nothing to fix.
        step.detail["migrations"] = (
            "run by the tables' owner: this role cannot create tables in schema public, "
            "as intended. Only if this role must create objects itself (django-tenants): "
            "manage.py grant_aad_privileges --migrate, as the schema's owner."
        )
    if not ssl:
        step.detail["tls_note"] = "connection is not encrypted"
    return step

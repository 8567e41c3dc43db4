"""A health-check view for App Service's Health check path (or any load balancer's probe).

Opt in with one URL::

    # urls.py
    from django_azure_pg import health
    urlpatterns = [..., path("healthz", health.view)]

and set the App Service's Health check path to ``/healthz``. App Service pings
that path on every instance once a minute and takes an instance out of the load
balancer when it does not answer 200-299 (after a configurable number of
failures, 10 by default); it does not follow redirects. Microsoft asks that the
path check the app's critical dependencies and answer with a 500-level code
when one is unreachable ("Monitor App Service instances by using Health check",
learn.microsoft.com/azure/app-service/monitor-instances-health-check).

Per alias checked (``AZURE_PG_HEALTH_DATABASES``, default: every alias whose
ENGINE logs in with tokens) the answer is 200 while

* a usable token is cached, or one can be fetched within the alias's
  ``token_timeout`` (a cached token is served at once: no call to the identity
  endpoint), and
* a login works: the last physical login of the alias in this process
  succeeded, less than ``AZURE_PG_HEALTH_LOGIN_MAX_AGE`` seconds ago (default
  300). Only when there is no such evidence — no login yet, the last one
  failed, or it is older — does the view open one new physical connection
  (``SELECT 1``) and close it. ``AZURE_PG_HEALTH_CONNECT = True`` asks for that
  connection on every call; ``?connect=1`` does only where
  ``AZURE_PG_HEALTH_ALLOW_CONNECT = True`` (the path is usually public: a query
  string must not let anyone on the internet make the app log in at will).

Otherwise 503, with a short reason from :data:`REASONS` (plus an exception
class name where it helps): never a token, a server message or exception text.

The view logs in **at most once per alias per** ``AZURE_PG_HEALTH_CONNECT_INTERVAL``
seconds (default 10): a call within it gets the last login's outcome again. The
body names the aliases only with ``AZURE_PG_HEALTH_DETAILS = True``; otherwise
it lists the results in the order of ``AZURE_PG_HEALTH_DATABASES`` (or of
``DATABASES``), without names.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.utils import load_backend
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from . import errors
from ._core import telemetry

__all__ = ["REASONS", "view"]
from .management import one_off
from .mixin import TokenLoginMixin

DATABASES_SETTING = "AZURE_PG_HEALTH_DATABASES"
CONNECT_SETTING = "AZURE_PG_HEALTH_CONNECT"
ALLOW_CONNECT_SETTING = "AZURE_PG_HEALTH_ALLOW_CONNECT"
CONNECT_INTERVAL_SETTING = "AZURE_PG_HEALTH_CONNECT_INTERVAL"
DETAILS_SETTING = "AZURE_PG_HEALTH_DETAILS"
LOGIN_MAX_AGE_SETTING = "AZURE_PG_HEALTH_LOGIN_MAX_AGE"
DEFAULT_LOGIN_MAX_AGE = 300.0
DEFAULT_CONNECT_INTERVAL = 10.0
"""Seconds: App Service's Health check calls each instance once a minute, a load
balancer's probe every few seconds; a login per alias every 10 s at most is cheap for
the server and still fresh evidence."""

OK = "ok"
CONFIGURATION = "configuration error"
TOKEN_THROTTLED = "token: identity endpoint throttled (HTTP 429)"  # noqa: S105 — a reason, not a secret
TOKEN_TIMEOUT = "token: identity endpoint did not answer in time"  # noqa: S105 — a reason, not a secret
TOKEN_FAILED = "token: identity endpoint failed"  # noqa: S105 — a reason, not a secret
LOGIN_REFUSED = "login: refused by the server"
LOGIN_NO_TOKEN = "login: no token could be had"  # noqa: S105 — a reason, not a secret
LOGIN_INSECURE = "login: refused to send the token over an unprotected path"
LOGIN_FAILED = "login: failed"
REASONS = (
    OK,
    CONFIGURATION,
    TOKEN_THROTTLED,
    TOKEN_TIMEOUT,
    TOKEN_FAILED,
    LOGIN_REFUSED,
    LOGIN_NO_TOKEN,
    LOGIN_INSECURE,
    LOGIN_FAILED,
)
"""Every reason the view gives; a failed login adds its cause's class name in parentheses."""


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str
    connected: bool = False  # this check opened a physical connection


@never_cache
def view(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ok", ...}`` or 503 ``{"status": "unhealthy", ...}``, per alias."""
    asked = request.GET.get("connect") == "1" and bool(
        getattr(settings, ALLOW_CONNECT_SETTING, False)
    )
    connect = asked or bool(getattr(settings, CONNECT_SETTING, False))
    results = {alias: check(alias, connect=connect) for alias in aliases()}
    ok = all(r.ok for r in results.values())
    shown = [{"ok": r.ok, "reason": r.reason, "connected": r.connected} for r in results.values()]
    databases: Any = shown
    if getattr(settings, DETAILS_SETTING, False):
        databases = dict(zip(results, shown, strict=True))
    body = {"status": "ok" if ok else "unhealthy", "databases": databases}
    return JsonResponse(body, status=200 if ok else 503)


def aliases() -> list[str]:
    configured = getattr(settings, DATABASES_SETTING, None)
    if configured is not None:
        return list(configured)
    return [alias for alias in connections.settings if _token_login(alias)]


def _token_login(alias: str) -> bool:
    entry = connections.settings[alias]
    if entry.get("PASSWORD"):
        return False
    try:
        wrapper = load_backend(entry["ENGINE"]).DatabaseWrapper
    except (ImproperlyConfigured, ImportError, AttributeError):
        return False
    return isinstance(wrapper, type) and issubclass(wrapper, TokenLoginMixin)


def check(alias: str, *, connect: bool = False) -> Health:
    """The health of one alias in this process; see the module docstring."""
    try:
        wrapper = connections[alias]
        login = getattr(wrapper, "azure_login", None)
    except (ImproperlyConfigured, KeyError):
        return Health(False, CONFIGURATION)
    if login is not None:
        try:
            login.source.get_token()
        except errors.TokenThrottled:
            return Health(False, TOKEN_THROTTLED)
        except errors.TokenTimeout:
            return Health(False, TOKEN_TIMEOUT)
        except errors.TokenError:
            return Health(False, TOKEN_FAILED)
    last = telemetry.last_login(alias)
    max_age = float(getattr(settings, LOGIN_MAX_AGE_SETTING, DEFAULT_LOGIN_MAX_AGE))
    recent = last is not None and last.ok and time.time() - last.at < max_age
    if recent and login is not None and not connect:
        return Health(True, OK)
    return _connect(alias)


_last_connect: dict[str, tuple[float, Health]] = {}
_alias_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def _connect(alias: str) -> Health:
    """:func:`_login`, at most once per alias per interval; within it, the outcome of the
    login that began it. Callers arriving while a login runs wait for that login (one
    at a time per alias), so nobody gets an outcome older than the interval."""
    interval = float(getattr(settings, CONNECT_INTERVAL_SETTING, DEFAULT_CONNECT_INTERVAL))
    with _locks_lock:
        lock = _alias_locks.setdefault(alias, threading.Lock())
    with lock:
        last = _last_connect.get(alias)
        if last is not None and time.monotonic() - last[0] < interval:
            return dataclasses.replace(last[1], connected=False)
        started = time.monotonic()
        found = _login(alias)
        _last_connect[alias] = (started, found)
        return found


def _login(alias: str) -> Health:
    """One new physical connection with the alias's settings (never from its pool), closed."""
    entry = dict(connections.settings[alias])
    wrapper: Any = load_backend(entry["ENGINE"]).DatabaseWrapper(one_off(entry), alias)
    try:
        wrapper.ensure_connection()
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
    except ImproperlyConfigured:
        return Health(False, CONFIGURATION, True)
    except Exception as exc:
        return Health(False, _login_reason(exc), True)
    finally:
        wrapper.close()
    return Health(True, OK, True)


def _login_reason(exc: BaseException) -> str:
    # Django wraps psycopg's errors in its own OperationalError; ours are the cause.
    cause = exc.__cause__ if isinstance(exc.__cause__, errors.LoginError) else exc
    if isinstance(cause, errors.LoginRefused):
        return f"{LOGIN_REFUSED} ({type(cause).__name__})"
    if isinstance(cause, errors.TokenAcquisitionError):
        return LOGIN_NO_TOKEN
    if isinstance(cause, errors.InsecureTransport):
        return LOGIN_INSECURE
    return f"{LOGIN_FAILED} ({type(cause).__name__})"

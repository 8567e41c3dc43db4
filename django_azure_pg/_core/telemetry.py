"""OpenTelemetry spans and metrics for the token path, when ``opentelemetry-api`` is installed.

The package only *emits* through the OpenTelemetry API (``pip install
"django-azure-pg[otel]"``); it never installs or configures an SDK. The
application owns that — e.g. ``azure-monitor-opentelemetry``'s
``configure_azure_monitor()``, which sends to Application Insights. Without
the API every hook below is a function that returns at once; with the API but
no SDK, the API's no-op tracer and meter make them nearly as cheap.

What is emitted (names and attributes are listed in docs/observability.md):

* a span per token fetch (``azure_pg.token.fetch``): a background refresh is
  its own root span; a fetch a caller waits on is a child of the caller's span
  (the context is captured when the fetch starts and attached in the fetch
  thread);
* a span per physical login (``azure_pg.login``, kind CLIENT) with the
  database client attributes of OpenTelemetry's semantic conventions where
  they apply: ``db.system.name`` = ``postgresql``, ``server.address``,
  ``server.port``, ``db.namespace``, ``error.type`` (Semantic conventions for
  PostgreSQL client operations, opentelemetry.io/docs/specs/semconv/database/
  postgresql; SQL client spans, .../semconv/db/sql);
* metrics: fetches by outcome, fetch duration, 429 responses, refused logins
  by cause, the cached token's remaining lifetime per identity (observable
  gauge), and ``db.client.connection.create_time`` (histogram, seconds, with
  ``db.client.connection.pool.name``: semantic conventions for database client
  metrics, opentelemetry.io/docs/specs/semconv/db/database-metrics).

Nothing that identifies a secret is ever put in a span, event, attribute or
metric: no token, no signature, no client secret, no endpoint response body,
no exception text — only type names, status classes, counts and durations.
The credential label (e.g. ``ManagedIdentityCredential(client_id=…)``) is the
one the doctor prints.

A sink: the token source (token_source.py) and the login (login.py) report what happened
as plain values — outcome, duration, cause names, the credential's label — and
this module imports nothing from them. Independently of OpenTelemetry it keeps,
per process, the last login outcome of each alias, which the doctor and the health
view read. No Django import here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ..errors import LoginRefused
from . import clouds, diagnosis

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # the [otel] extra is not installed: every hook is a no-op
    otel_context = otel_metrics = otel_trace = None  # type: ignore[assignment]

ENABLED = otel_trace is not None
"""Whether ``opentelemetry-api`` could be imported (the SDK is the application's business)."""

INSTRUMENTATION_NAME = "django_azure_pg"

logger = logging.getLogger(__name__)


# -- what the doctor and the health view read (kept with or without OpenTelemetry) --


@dataclass(frozen=True)
class LoginRecord:
    """How the last physical login of an alias in this process ended."""

    ok: bool
    at: float  # time.time()
    error_type: str | None = None  # exception class name; never its text
    refused: bool = False  # the server refused the token (a LoginRefused)


_logins: dict[str, LoginRecord] = {}
# No lock: single item reads and writes, atomic under the GIL — and nothing a fork() could
# leave held in a child.


def last_login(alias: str) -> LoginRecord | None:
    return _logins.get(alias)


def _note_login(alias: str, record: LoginRecord) -> None:
    _logins[alias] = record


# -- instruments ------------------------------------------------------------------

_parents: dict[int, Any] = {}  # id(fetch) -> the waiting caller's context
_local = threading.local()  # in a fetch thread: the fetch's span, its context token, statuses


def _identity(label: str, scope: str) -> dict[str, str]:
    """Low-cardinality, secret-free attributes naming a token source (its credential's
    label and its scope)."""
    resource = scope.removesuffix("/.default")
    return {
        "azure_pg.credential.kind": label.split("(", 1)[0],
        "azure_pg.identity": label,
        "azure_pg.cloud": clouds.cloud_of_scope(scope) or "custom",
        "azure_pg.scope.resource": resource,
    }


if ENABLED:
    _tracer = otel_trace.get_tracer(INSTRUMENTATION_NAME)
    _meter = otel_metrics.get_meter(INSTRUMENTATION_NAME)
    _fetches = _meter.create_counter(
        "azure_pg.token.fetches", unit="{fetch}", description="Token fetches by outcome."
    )
    _fetch_duration = _meter.create_histogram(
        "azure_pg.token.fetch.duration",
        unit="s",
        description="Time one call to the credential took.",
    )
    _throttled = _meter.create_counter(
        "azure_pg.token.throttled",
        unit="{response}",
        description="HTTP 429 answers from the identity endpoint.",
    )
    _refused = _meter.create_counter(
        "azure_pg.login.refused",
        unit="{login}",
        description="Logins the server refused, by cause (also those a fresh token cured).",
    )
    _create_time = _meter.create_histogram(
        "db.client.connection.create_time",
        unit="s",
        description="The time it took to create a new connection (token included).",
    )

    def _remaining_lifetime(options: Any) -> Iterable[Any]:
        for label, scope, remaining in _sources():
            if remaining is not None:
                yield otel_metrics.Observation(remaining, _identity(label, scope))

    _meter.create_observable_gauge(
        "azure_pg.token.remaining_lifetime",
        callbacks=[_remaining_lifetime],
        unit="s",
        description="Seconds until the cached token of each identity expires.",
    )


# -- token fetch hooks (called by tokens.TokenSource, with plain values) -----------------

Source = tuple[str, str, "float | None"]
"""A live token source as the gauge sees it: credential label, scope, seconds left."""


def _no_sources() -> Iterable[Source]:
    return ()


_sources: Callable[[], Iterable[Source]] = _no_sources


def watch_sources(sources: Callable[[], Iterable[Source]]) -> None:
    """Where the remaining-lifetime gauge finds the live token sources (set by ``token_source``,
    so this module never imports it)."""
    global _sources
    _sources = sources


def fetch_started(fetch: object, waited: bool) -> None:
    """In the caller's thread, under the source's lock: remember who waits for ``fetch``.

    A fetch with a caller waiting (no usable token, or a refusal-forced refresh) is a
    child of that caller's span; any other is a background refresh, a root span.
    """
    if ENABLED and waited:
        _parents[id(fetch)] = otel_context.get_current()


def fetch_running(fetch: object, label: str, scope: str, forced: bool) -> None:
    """In the fetch thread, before the credential is called: open the span, attach it."""
    if not ENABLED:
        return
    try:
        _open_fetch_span(fetch, _identity(label, scope), forced)
    except Exception:  # telemetry never stands in the token's way
        _local.active = None
        logger.debug("OpenTelemetry: could not open the token fetch span", exc_info=True)


def _open_fetch_span(fetch: object, identity: dict[str, str], forced: bool) -> None:
    parent = _parents.pop(id(fetch), None)
    trigger = "refusal" if forced else ("wait" if parent is not None else "refresh")
    attributes: dict[str, Any] = {**identity, "azure_pg.fetch.trigger": trigger}
    span = _tracer.start_span(
        "azure_pg.token.fetch",
        context=parent if parent is not None else otel_context.Context(),
        attributes=attributes,
    )
    token = otel_context.attach(otel_trace.set_span_in_context(span))
    _local.active = (span, token, attributes)
    _local.status = None


def response_seen(response: Any) -> None:
    """azure-core ``raw_response_hook`` (with ``tokens.observe_response``): status classes, 429s."""
    http = getattr(response, "http_response", response)
    status = getattr(http, "status_code", None)
    if not isinstance(status, int) or getattr(_local, "active", None) is None:
        return
    _local.status = status
    if status == 429:
        _throttled.add(1, _local.active[2])


def observing(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``hook``, also reporting the endpoint's answers when OpenTelemetry is on."""
    if not ENABLED:
        return hook

    def both(response: Any) -> None:
        response_seen(response)
        hook(response)

    return both


def fetch_done(failure: BaseException | None, elapsed: float, throttled: bool) -> None:
    """In the fetch thread, when the credential answered or failed: end the span, count it.

    ``throttled``: the endpoint answered 429 during this fetch. Called before the
    waiting callers are released, so a caller that got its token finds the span ended.
    """
    if not ENABLED:
        return
    active = getattr(_local, "active", None)
    if active is None:
        return
    _local.active = None
    try:
        _close_fetch_span(active, failure, elapsed, throttled)
    except Exception:  # telemetry never stands in the token's way
        logger.debug("OpenTelemetry: could not record the token fetch", exc_info=True)


def _close_fetch_span(
    active: tuple[Any, Any, dict[str, Any]],
    failure: BaseException | None,
    elapsed: float,
    throttled: bool,
) -> None:
    span, token, attributes = active
    throttled = throttled or (
        failure is not None and diagnosis.throttled_retry_after(failure) is not None
    )
    outcome = "success" if failure is None else ("throttled" if throttled else "error")
    result: dict[str, Any] = {**attributes, "azure_pg.outcome": outcome}
    if failure is not None:
        result["error.type"] = type(failure).__name__
    span.set_attribute("azure_pg.outcome", outcome)
    span.set_attribute("azure_pg.throttled", throttled)
    status = _local.status
    if status is not None:
        span.set_attribute("azure_pg.endpoint.status_class", f"{status // 100}xx")
    if failure is not None:
        span.set_attribute("error.type", type(failure).__name__)
        span.set_status(otel_trace.StatusCode.ERROR, outcome)
    span.end()
    otel_context.detach(token)
    metric = {k: v for k, v in result.items() if k != "azure_pg.scope.resource"}
    _fetches.add(1, metric)
    _fetch_duration.record(elapsed, metric)


# -- physical logins -------------------------------------------------------------------


def _server(params: Mapping[str, Any]) -> tuple[str, int]:
    host = str(params.get("host") or "").split(",")[0] or "localhost"
    try:
        port = int(str(params.get("port") or "5432").split(",")[0])
    except ValueError:
        port = 5432
    return host, port


class LoginSeen:
    """One physical login, observed: ``with telemetry.LoginSeen(...) as seen:`` around it.

    The login (login.py) reports what happens as plain values — each attempt, each
    refusal's cause name — and the ``with`` block's outcome ends it: the span (while
    an application traces), the create time, and the alias's last login record.
    """

    __slots__ = ("_attributes", "_params", "_span", "_span_cm", "_started", "alias", "attempts")

    def __init__(self, alias: str, identity: str, params: Mapping[str, Any]) -> None:
        self.alias = alias
        self.attempts = 0
        self._params = params
        self._attributes: dict[str, Any] = {}
        self._span: Any = None
        self._span_cm: AbstractContextManager[Any] | None = None
        if ENABLED:
            host, port = _server(params)
            self._attributes = {
                "db.system.name": "postgresql",
                "server.address": host,
                "server.port": port,
                "db.client.connection.pool.name": alias,
                "azure_pg.identity": identity,
            }

    def __enter__(self) -> LoginSeen:
        self._started = time.perf_counter()
        if ENABLED:
            self._span_cm = _login_span(self._params, self._attributes)
            self._span = self._span_cm.__enter__()
        return self

    def attempt(self) -> None:
        """The driver is about to be called (once, or twice with a fresh token)."""
        self.attempts += 1

    def refused(self, cause: str) -> None:
        """The server refused this attempt (also one a fresh token then cures)."""
        if ENABLED:
            _refused.add(1, {**self._attributes, "azure_pg.refusal.cause": cause})

    def __exit__(self, kind: Any, failure: BaseException | None, trace: Any) -> None:
        record = LoginRecord(True, time.time()) if failure is None else _failed_login(failure)
        _note_login(self.alias, record)
        if not ENABLED or self._span_cm is None:
            return
        try:
            self._end(record)
        except Exception:  # telemetry never stands in the login's way
            logger.debug("OpenTelemetry: could not record the login", exc_info=True)
        finally:
            self._span_cm.__exit__(kind, failure, trace)

    def _end(self, record: LoginRecord) -> None:
        span = self._span
        outcome = "success" if record.ok else ("refused" if record.refused else "error")
        span.set_attribute("azure_pg.outcome", outcome)
        span.set_attribute("azure_pg.login.attempts", self.attempts)
        labels = {**self._attributes, "azure_pg.outcome": outcome}
        if not record.ok:
            span.set_attribute("error.type", record.error_type or "")
            if record.refused:
                span.set_attribute("azure_pg.refusal.cause", record.error_type or "")
            span.set_status(otel_trace.StatusCode.ERROR, outcome)
            labels["error.type"] = record.error_type
        _create_time.record(time.perf_counter() - self._started, labels)


def _tracing() -> bool:
    """An application set a tracer provider: until then the API's proxy hands out
    spans that record nothing (OpenTelemetry Python's ``ProxyTracerProvider``,
    open-telemetry/opentelemetry-python#1726), so a login does not build one."""
    provider = otel_trace.get_tracer_provider()
    return not isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider))


def _login_span(
    params: Mapping[str, Any], attributes: dict[str, Any]
) -> AbstractContextManager[Any]:
    if not _tracing():
        return contextlib.nullcontext(otel_trace.INVALID_SPAN)
    return _tracer.start_as_current_span(
        "azure_pg.login",
        kind=otel_trace.SpanKind.CLIENT,
        attributes={
            **attributes,
            "db.namespace": str(params.get("dbname") or ""),
            "azure_pg.sslmode": str(params.get("sslmode") or "prefer"),
        },
        record_exception=False,
        set_status_on_exception=False,
    )


def _failed_login(exc: BaseException) -> LoginRecord:
    return LoginRecord(
        False, time.time(), type(exc).__name__, refused=isinstance(exc, LoginRefused)
    )

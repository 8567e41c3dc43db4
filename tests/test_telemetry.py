"""OpenTelemetry on the real stack: the SDK's in-memory exporter and reader, the kit's emulator
and PostgreSQL. Spans and metrics for rotations, throttling, a refused login and an outage;
nothing secret anywhere in them; and the package without opentelemetry installed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from azure.identity import ManagedIdentityCredential
from django.db import OperationalError

from django_azure_pg._core import telemetry
from django_azure_pg._core import token_source as tokens
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE, SCOPE, MakeWrapper, until
from .fakes import FakeClock, FakeCredential

otel_trace = pytest.importorskip("opentelemetry.trace")
otel_metrics = pytest.importorskip("opentelemetry.metrics")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

pytestmark = pytest.mark.integration

_SDK: dict[str, Any] = {}


class Otel:
    def __init__(self, exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self.exporter = exporter
        self.reader = reader
        self.start = len(exporter.get_finished_spans())

    def spans(self, name: str | None = None) -> list[Any]:
        found = list(self.exporter.get_finished_spans())[self.start :]
        return [s for s in found if name is None or s.name == name]

    def points(self, metric: str, **attrs: Any) -> list[Any]:
        """Data points of ``metric`` whose attributes include ``attrs``."""
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != metric:
                        continue
                    for point in m.data.data_points:
                        if all(point.attributes.get(k) == v for k, v in attrs.items()):
                            found.append(point)
        return found

    def text(self) -> str:
        """Every span (name, attributes, events, links, status, resource) and every metric
        point, as one string to scan."""
        parts = []
        for span in self.exporter.get_finished_spans():
            parts.append(span.to_json())
        data = self.reader.get_metrics_data()
        if data is not None:
            parts.append(data.to_json())
        return "\n".join(parts)


@pytest.fixture
def otel() -> Iterator[Otel]:
    """The OpenTelemetry SDK, installed once per process as the global providers."""
    if not _SDK:
        exporter = InMemorySpanExporter()
        resource = Resource.create({"service.name": "django-azure-pg-tests"})
        provider = sdk_trace.TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel_trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        otel_metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
        _SDK.update(exporter=exporter, reader=reader)
    yield Otel(_SDK["exporter"], _SDK["reader"])


def login_once(wrapper: Any) -> None:
    wrapper.ensure_connection()
    wrapper.close()


GRAM = 12
"""A run of this many base64url characters of a token, anywhere, counts as a leak."""


def assert_nothing_secret(otel: Otel, emulator: IdentityEmulator) -> None:
    """No piece of any issued token (header, claims or signature) in anything exported."""
    text = otel.text()
    issued = emulator.issued_tokens()
    assert issued
    grams = {
        part[i : i + GRAM]
        for token in issued
        for part in token.split(".")
        for i in range(len(part) - GRAM + 1)
    }
    leaks = [
        match.start()
        for match in re.finditer(rf"[A-Za-z0-9_\-]{{{GRAM},}}", text)
        if any(match.group()[i : i + GRAM] in grams for i in range(len(match.group()) - GRAM + 1))
    ]
    if leaks:  # the offsets only: the failure report must not print the fragment either
        pytest.fail(f"token fragments in the exported telemetry at offsets {leaks[:5]}")
    assert "eyJ" not in text  # no JWT segment of any kind
    assert emulator.identity_header not in text
    assert "access_token" not in text


def test_rotation_spans_and_metrics(
    otel: Otel,
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    identity: Identity,
    short_tokens: Callable[[float], None],
) -> None:
    short_tokens(3.0)  # refresh window: the last 0.75 s
    wrapper = make_wrapper()
    tracer = otel_trace.get_tracer("tests")
    with tracer.start_as_current_span("GET /restaurants") as request:
        login_once(wrapper)
    label = f"ManagedIdentityCredential(client_id={identity.client_id})"

    # The fetch the first login waited on: a child of the login, itself a child of the request.
    (login,) = otel.spans("azure_pg.login")
    (first,) = otel.spans("azure_pg.token.fetch")
    assert login.parent.span_id == request.get_span_context().span_id
    assert first.parent.span_id == login.context.span_id
    assert first.context.trace_id == request.get_span_context().trace_id
    assert login.kind == otel_trace.SpanKind.CLIENT
    assert login.attributes["db.system.name"] == "postgresql"
    assert login.attributes["server.address"] == "127.0.0.1"
    assert login.attributes["server.port"] == int(wrapper.settings_dict["PORT"])
    assert login.attributes["db.namespace"] == ITEST_DB
    assert login.attributes["azure_pg.sslmode"] == "require"
    assert login.attributes["azure_pg.outcome"] == "success"
    assert login.attributes["azure_pg.identity"] == label
    assert first.attributes["azure_pg.fetch.trigger"] == "wait"
    assert first.attributes["azure_pg.credential.kind"] == "ManagedIdentityCredential"
    assert first.attributes["azure_pg.cloud"] == "public"
    assert (
        first.attributes["azure_pg.scope.resource"] == "https://ossrdbms-aad.database.windows.net"
    )
    assert first.attributes["azure_pg.outcome"] == "success"
    assert first.attributes["azure_pg.endpoint.status_class"] == "2xx"
    assert first.attributes["azure_pg.throttled"] is False

    # Connections go on; a background refresh happens as its own root span.
    def refreshed() -> list[Any]:
        login_once(wrapper)
        return [
            s
            for s in otel.spans("azure_pg.token.fetch")
            if s.attributes["azure_pg.fetch.trigger"] == "refresh"
        ]

    (refresh, *_) = until(refreshed, 8.0)
    assert refresh.parent is None
    assert refresh.context.trace_id != first.context.trace_id
    assert refresh.attributes["azure_pg.outcome"] == "success"
    assert refresh.attributes["azure_pg.identity"] == label

    fetched = otel.points("azure_pg.token.fetches", **{"azure_pg.identity": label})
    assert sum(p.value for p in fetched if p.attributes["azure_pg.outcome"] == "success") >= 2
    (duration,) = otel.points(
        "azure_pg.token.fetch.duration",
        **{"azure_pg.identity": label, "azure_pg.fetch.trigger": "wait"},
    )
    assert duration.count == 1 and 0 < duration.sum < 5
    created = otel.points(
        "db.client.connection.create_time",
        **{"db.client.connection.pool.name": wrapper.alias, "azure_pg.outcome": "success"},
    )
    assert created and created[0].count >= 2
    assert created[0].attributes["db.system.name"] == "postgresql"
    (remaining,) = otel.points("azure_pg.token.remaining_lifetime", **{"azure_pg.identity": label})
    assert 0 < remaining.value <= 3.0
    assert_nothing_secret(otel, emulator)


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs 5.1+")
def test_pool_logins_are_observed_too(
    otel: Otel, make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    pytest.importorskip("psycopg_pool")
    wrapper = make_wrapper(OPTIONS={"pool": {"min_size": 2, "max_size": 2, "timeout": 5}})
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
    wrapper.close()

    def pool_logins() -> list[Any]:
        return [
            s
            for s in otel.spans("azure_pg.login")
            if s.attributes["db.client.connection.pool.name"] == wrapper.alias
        ]

    until(lambda: len(pool_logins()) >= 2)  # min_size 2: both opened in the pool's workers
    logins = pool_logins()
    assert len(logins) >= 2
    assert {s.attributes["azure_pg.outcome"] for s in logins} == {"success"}
    created = otel.points(
        "db.client.connection.create_time", **{"db.client.connection.pool.name": wrapper.alias}
    )
    assert sum(p.count for p in created) >= 2
    assert_nothing_secret(otel, emulator)


def test_without_a_tracer_provider_a_login_builds_no_span_and_is_still_measured(
    otel: Otel, make_wrapper: MakeWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application with metrics but no tracing (the API's proxy provider): the login
    path skips the span it would hand to a no-op tracer, and still records its time."""
    wrapper = make_wrapper()
    with monkeypatch.context() as patched:
        patched.setattr(otel_trace, "get_tracer_provider", otel_trace.ProxyTracerProvider)
        login_once(wrapper)
    assert otel.spans("azure_pg.login") == []
    created = otel.points(
        "db.client.connection.create_time", **{"db.client.connection.pool.name": wrapper.alias}
    )
    assert sum(p.count for p in created) == 1
    login_once(wrapper)  # the application's provider again
    assert len(otel.spans("azure_pg.login")) == 1


def test_throttled_endpoint(
    otel: Otel, make_wrapper: MakeWrapper, emulator: IdentityEmulator, identity: Identity
) -> None:
    def no_retry() -> ManagedIdentityCredential:
        # One request per fetch (azure-identity would retry the 429 itself).
        hook = telemetry.observing(tokens.observe_response)
        return ManagedIdentityCredential(
            client_id=identity.client_id, retry_total=0, raw_response_hook=hook
        )

    wrapper = make_wrapper(OPTIONS={"credential": no_retry, "token_timeout": 2})
    label = wrapper.azure_login.choice.name
    emulator.retry_after = 1
    emulator.set_fault("throttle")
    try:
        with pytest.raises(OperationalError, match="throttled"):
            login_once(wrapper)
        (fetch,) = until(lambda: otel.spans("azure_pg.token.fetch"))
    finally:
        emulator.clear_faults()
        emulator.retry_after = 5
    assert fetch.attributes["azure_pg.outcome"] == "throttled"
    assert fetch.attributes["azure_pg.throttled"] is True
    assert fetch.attributes["azure_pg.endpoint.status_class"] == "4xx"
    assert fetch.status.status_code == otel_trace.StatusCode.ERROR
    (login,) = otel.spans("azure_pg.login")
    assert login.attributes["azure_pg.outcome"] == "error"
    assert login.attributes["error.type"] == "TokenAcquisitionError"
    (throttles,) = otel.points("azure_pg.token.throttled", **{"azure_pg.identity": label})
    assert throttles.value >= 1
    (failed,) = otel.points(
        "azure_pg.token.fetches", **{"azure_pg.identity": label, "azure_pg.outcome": "throttled"}
    )
    assert failed.value == 1
    status = wrapper.azure_login.source.status()
    assert status.throttled_for_s > 0 and status.last_error is not None
    assert_nothing_secret(otel, emulator)


def test_refused_login_wrong_user(
    otel: Otel,
    postgres: LocalPostgres,
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
) -> None:
    postgres.create_entra_role("aad_otel_not_mine")  # exists, mapped to another principal
    wrapper = make_wrapper(USER="aad_otel_not_mine")
    with pytest.raises(OperationalError):
        login_once(wrapper)
    (login,) = otel.spans("azure_pg.login")
    assert login.attributes["azure_pg.outcome"] == "refused"
    assert login.attributes["azure_pg.refusal.cause"] == "TokenNotForRole"
    assert login.attributes["error.type"] == "TokenNotForRole"
    assert login.attributes["azure_pg.login.attempts"] == 1  # no second fetch for a fresh token
    assert login.status.status_code == otel_trace.StatusCode.ERROR
    assert login.status.description == "refused"
    refused = otel.points(
        "azure_pg.login.refused", **{"db.client.connection.pool.name": wrapper.alias}
    )
    assert [p.value for p in refused] == [1]
    # The server's refusal as it came (no reason given); the login's verdict is on the span.
    assert refused[0].attributes["azure_pg.refusal.cause"] == "RefusedUnspecified"
    failed = otel.points(
        "db.client.connection.create_time",
        **{"db.client.connection.pool.name": wrapper.alias, "azure_pg.outcome": "refused"},
    )
    assert failed and failed[0].attributes["error.type"] == "TokenNotForRole"
    record = telemetry.last_login(wrapper.alias)
    assert record is not None and not record.ok and record.refused
    assert_nothing_secret(otel, emulator)


def test_a_refusal_in_postgresqls_own_words_is_a_refusal(
    otel: Otel,
    plain_postgres: LocalPostgres,
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
) -> None:
    """'LDAP authentication failed for user' (no Azure front): counted and traced as a
    refusal, not an error (issue 30)."""
    plain_postgres.create_entra_role("aad_otel_plain")  # mapped to no identity of ours
    wrapper = make_wrapper(
        USER="aad_otel_plain", HOST=plain_postgres.host, PORT=str(plain_postgres.port)
    )
    with pytest.raises(OperationalError, match="LDAP authentication failed"):
        login_once(wrapper)
    (login,) = otel.spans("azure_pg.login")
    assert login.attributes["azure_pg.outcome"] == "refused"
    assert login.attributes["azure_pg.refusal.cause"] == "TokenNotForRole"
    refused = otel.points(
        "azure_pg.login.refused", **{"db.client.connection.pool.name": wrapper.alias}
    )
    assert [p.value for p in refused] == [1]
    assert refused[0].attributes["azure_pg.refusal.cause"] == "RefusedUnspecified"
    record = telemetry.last_login(wrapper.alias)
    assert record is not None and record.refused
    assert_nothing_secret(otel, emulator)


def test_outage_of_the_identity_endpoint(
    otel: Otel, make_wrapper: MakeWrapper, emulator: IdentityEmulator, identity: Identity
) -> None:
    wrapper = make_wrapper(OPTIONS={"client_id": identity.client_id, "token_timeout": 1})
    label = wrapper.azure_login.choice.name
    emulator.set_fault("error")
    try:
        with pytest.raises(OperationalError):
            login_once(wrapper)
        # One HTTP call per attempt (credentials.CREDENTIAL_RETRIES): the fetch ends at once.
        (fetch,) = until(lambda: otel.spans("azure_pg.token.fetch"), 20.0)
    finally:
        emulator.clear_faults()
    assert fetch.attributes["azure_pg.outcome"] == "error"
    assert fetch.attributes["azure_pg.endpoint.status_class"] == "5xx"  # seen via credentials.py
    assert fetch.attributes["azure_pg.throttled"] is False
    assert fetch.attributes["error.type"]
    (login,) = otel.spans("azure_pg.login")
    assert login.attributes["azure_pg.outcome"] == "error"
    (errored,) = otel.points(
        "azure_pg.token.fetches", **{"azure_pg.identity": label, "azure_pg.outcome": "error"}
    )
    assert errored.value == 1
    status = wrapper.azure_login.source.status()
    assert not status.cached and status.last_error and "eyJ" not in status.last_error
    # Recovery: logins fail at once until the outage cadence lets one fetch again (a
    # fraction of a second: timing.outage_retry_delay), and that one succeeds.

    def logged_in() -> bool:
        try:
            login_once(wrapper)
        except OperationalError:
            return False
        return True

    assert until(logged_in, 5.0)
    assert otel.spans("azure_pg.login")[-1].attributes["azure_pg.outcome"] == "success"
    assert_nothing_secret(otel, emulator)


class _BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a broken exporter setup")


def test_a_failing_instrument_never_stands_in_the_tokens_way(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    monkeypatch.setattr(telemetry, "_tracer", _BrokenTracer())
    source = tokens.TokenSource(lambda: credential, SCOPE, label="FakeCredential", clock=clock)
    assert source.get_token().value == credential.issued[-1]
    assert source.status().usable


def test_status_is_a_snapshot_without_the_token() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock, lifetime=1000)
    source = tokens.TokenSource(
        lambda: credential, SCOPE, label="FakeCredential", clock=clock, spread=lambda: 0.0
    )
    empty = source.status()
    assert (empty.cached, empty.usable, empty.remaining_s, empty.last_error) == (
        False,
        False,
        None,
        None,
    )
    token = source.get_token()
    clock.advance(100)
    status = source.status()
    assert status.cached and status.usable
    assert status.age_s == 100 and status.remaining_s == 900 and status.lifetime_s == 1000
    assert status.next_refresh_in_s == pytest.approx(token.refresh_at(0.0) - clock.now)
    assert status.fetch_running_s is None and status.throttled_for_s == 0
    assert credential.issued[-1] not in repr(status)
    credential.error = RuntimeError("endpoint down, answer was eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl")
    clock.advance(700)  # past the refresh moment, still usable: a background refresh fails
    source.get_token()
    failed = until(lambda: source.status().last_error, 5.0)
    assert failed.startswith("RuntimeError: endpoint down") and "eyJ" not in failed


_WITHOUT_OTEL = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django_azure_pg"],
    DATABASES={"default": json.loads(sys.argv[1])},
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["testserver"],
)
django.setup()
from django.urls import path
from django_azure_pg import health
from django_azure_pg._core import telemetry

urlpatterns = [path("healthz", health.view)]
from django.db import connection
from django.test import Client

connection.ensure_connection()
user = connection.cursor().execute("SELECT current_user").fetchone()[0]
connection.close()
answer = Client().get("/healthz")
status = connection.azure_login.source.status()
print(json.dumps({
    "enabled": telemetry.ENABLED,
    "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    "user": user,
    "health": answer.status_code,
    "remaining": status.remaining_s,
}))
"""


def test_works_without_opentelemetry(
    postgres: LocalPostgres, emulator: IdentityEmulator, identity: Identity
) -> None:
    entry = {
        "ENGINE": "django_azure_pg",
        "HOST": postgres.host,
        "PORT": str(postgres.port),
        "NAME": ITEST_DB,
        "USER": ROLE,
        "OPTIONS": {"client_id": identity.client_id},
    }
    env = {**os.environ, **emulator.app_service_env()}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL, json.dumps(entry)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {**seen, "enabled": False, "loaded": [], "user": ROLE, "health": 200}
    assert seen["remaining"] > 0

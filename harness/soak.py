"""`make soak`: the sample site under load through token rotations, outages and restarts.

Loopback only, bounded in time, stops by itself. Every scenario runs the real
site under gunicorn against the local PostgreSQL and identity endpoint and
checks that no acknowledged write is missing afterwards. Writes the table to
docs/reliability.md (full run) and exits 1 if any scenario fails its target.

    python -m harness.soak            # full run (about 17 minutes)
    python -m harness.soak --quick    # short smoke run (about 3 minutes)
    python -m harness.soak --only storm,throttling,forked   # some scenarios; their rows
                                      # replace the same rows in docs/reliability.md
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import itertools
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .load import LoadResult, drive
from .stand import DATABASE, ROLE, Site, Stand, get_json

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
TOKEN_TIMEOUT = 10.0  # the backend's default bound on waiting for a token


@dataclass
class Row:
    scenario: str
    mode: str
    seconds: float
    requests: int
    failures: int
    lost_writes: int
    identity_calls: int
    detail: str
    passed: bool
    extra: dict[str, Any] = field(default_factory=dict)


class Soak:
    def __init__(self, stand: Stand, scale: float, threads: int) -> None:
        self.stand = stand
        self.scale = scale
        self.threads = threads
        self.rows: list[Row] = []

    # -- helpers -------------------------------------------------------------------

    def s(self, seconds: float) -> float:
        return seconds * self.scale

    def lost(self, load: LoadResult) -> int:
        ids, reviews = self.stand.stored()
        lost = len(load.restaurants - ids)
        lost += sum(max(0, n - reviews.get(rid, 0)) for rid, n in load.reviews.items())
        return lost

    @contextlib.contextmanager
    def background_load(self, site: Site, seconds: float, tag: str) -> Iterator[list[LoadResult]]:
        box: list[LoadResult] = []
        thread = threading.Thread(
            target=lambda: box.append(drive(site.url, seconds, threads=self.threads, tag=tag))
        )
        thread.start()
        try:
            yield box
        finally:
            thread.join()

    def calls(self) -> int:
        return self.stand.emulator.stats.token_requests

    def record(self, row: Row) -> Row:
        self.rows.append(row)
        mark = "PASS" if row.passed else "FAIL"
        print(
            f"  [{mark}] {row.scenario} ({row.mode}): {row.requests} requests, {row.failures} failed, "
            f"{row.lost_writes} writes missing, {row.identity_calls} identity calls — {row.detail}",
            flush=True,
        )
        return row

    # -- scenarios -------------------------------------------------------------------

    def rotation(self, mode: str, lifetime: float, seconds: float) -> Row:
        emu = self.stand.emulator
        emu.lifetime = lifetime
        before_calls, before_tokens = self.calls(), emu.stats.tokens_issued
        before_logins = emu.stats.logins_accepted
        # Recycle connections faster than tokens expire, so every mode logs in again and again.
        recycle = {
            "persistent": {"DJANGO_CONN_MAX_AGE": str(max(1, int(lifetime / 2)))},  # whole seconds
            "pool": {"DJANGO_POOL_MAX_LIFETIME": f"{lifetime / 2:g}"},
        }.get(mode, {})
        with self.stand.site(mode, **recycle) as site:
            load = drive(site.url, seconds, threads=self.threads, tag=f"rot-{mode}")
        tokens = emu.stats.tokens_issued - before_tokens
        logins = emu.stats.logins_accepted - before_logins
        lost = self.lost(load)
        recycled = f", connections recycled every {lifetime / 2:g} s" if recycle else ""
        detail = (
            f"token lifetime {lifetime:g} s, {seconds / lifetime:.0f} lifetimes{recycled}; {logins} logins, "
            f"{tokens} tokens issued; p99 {load.percentile(0.99) * 1000:.0f} ms"
        )
        ok = load.failures == 0 and lost == 0 and load.requests > 0 and tokens >= seconds / lifetime
        calls = self.calls() - before_calls
        return self.record(
            Row(
                "rotation soak",
                mode,
                seconds,
                load.requests,
                load.failures,
                lost,
                calls,
                detail,
                ok,
            )
        )

    def outage_while_valid(self, fault: str, lifetime: float) -> Row:
        emu = self.stand.emulator
        emu.lifetime = lifetime
        # Covers the refresh window (a sixth of the lifetime to half-life) and beyond.
        start_at, length = lifetime / 6, lifetime / 2
        before = self.calls()
        with (
            self.stand.site("conn_max_age_0") as site,
            self.background_load(site, lifetime, f"out-{fault}") as box,
        ):
            time.sleep(start_at)
            emu.set_fault(fault)
            time.sleep(length)
            faulted = emu.stats.faulted_requests
            emu.clear_faults()
        load = box[0]
        lost = self.lost(load)
        return self.record(
            Row(
                f"identity outage while token valid ({fault})",
                "conn_max_age_0",
                lifetime,
                load.requests,
                load.failures,
                lost,
                self.calls() - before,
                f"endpoint {fault} for {length:.0f} s of a {lifetime:g} s token; {faulted} faulted identity calls",
                load.failures == 0 and lost == 0 and load.requests > 0,
            )
        )

    def outage_headroom(self, lifetime: float) -> Row:
        """An identity outage from two thirds of the first token's life to 1.2 lifetimes:
        the refreshes made from half-life carry every worker through it."""
        emu = self.stand.emulator
        emu.lifetime = lifetime
        before = self.calls()
        with self.stand.site("conn_max_age_0") as site:  # warm: each worker holds a token
            started = time.monotonic()
            with self.background_load(site, lifetime * 1.4, "headroom") as box:
                time.sleep(max(0.0, lifetime * 2 / 3 - (time.monotonic() - started)))
                emu.set_fault("error")
                time.sleep(max(0.0, lifetime * 1.2 - (time.monotonic() - started)))
                faulted = emu.stats.faulted_requests
                emu.clear_faults()
        load = box[0]
        lost = self.lost(load)
        return self.record(
            Row(
                "identity outage headroom",
                "conn_max_age_0",
                lifetime * 1.4,
                load.requests,
                load.failures,
                lost,
                self.calls() - before,
                f"endpoint HTTP 500 from {lifetime * 2 / 3:g} s to {lifetime * 1.2:g} s of "
                f"{lifetime:g} s tokens (the first one expires inside the outage); "
                f"{faulted} faulted identity calls",
                load.failures == 0 and lost == 0 and load.requests > 0,
            )
        )

    def outage_after_expiry(self, lifetime: float, outage: float) -> Row:
        emu = self.stand.emulator
        emu.lifetime = lifetime
        before = self.calls()
        with self.stand.site("conn_max_age_0") as site:
            with self.background_load(site, outage + 1, "expired") as box:
                time.sleep(0.5)
                emu.set_fault("hang")
                time.sleep(outage)
                emu.clear_faults()
            load = box[0]
            started = time.monotonic()
            status, _ = get_json(site.url + "/health/", timeout=30)
            recovery = time.monotonic() - started
        lost = self.lost(load)
        bound = TOKEN_TIMEOUT + 3.0
        ok = load.slowest <= bound and status == 200 and lost == 0
        return self.record(
            Row(
                "identity outage after token expiry (hang)",
                "conn_max_age_0",
                outage,
                load.requests,
                load.failures,
                lost,
                self.calls() - before,
                f"expected failures while no token; slowest request {load.slowest:.1f} s (bound {bound:g} s); "
                f"first request after recovery: HTTP {status} in {recovery:.1f} s",
                ok,
                {"slowest": load.slowest, "recovery_status": status},
            )
        )

    def postgres_restart(self, mode: str, seconds: float) -> Row:
        self.stand.emulator.lifetime = 3600
        before = self.calls()
        restart_at = seconds / 3
        with (
            self.stand.site(mode) as site,
            self.background_load(site, seconds, f"restart-{mode}") as box,
        ):
            time.sleep(restart_at)
            began = time.monotonic()
            self.stand.postgres.restart()
            restarted = time.monotonic() - began
            time.sleep(3.0)  # recovery window
            checkpoint = time.monotonic()
        load = box[0]
        # Failures after the recovery window would mean the site did not heal itself.
        late = [t for t in load.failure_times if t > checkpoint]
        lost = self.lost(load)
        ok = lost == 0 and not late and load.requests > 0
        return self.record(
            Row(
                "PostgreSQL restart mid-load",
                mode,
                seconds,
                load.requests,
                load.failures,
                lost,
                self.calls() - before,
                f"server down {restarted:.1f} s; failures only while it was down; "
                f"{len(late)} failures after recovery; CONN_HEALTH_CHECKS=True",
                ok,
            )
        )

    def revoked(self, seconds: float) -> Row:
        emu = self.stand.emulator
        emu.lifetime = 3600
        with (
            self.stand.site("conn_max_age_0") as site,
            self.background_load(site, seconds, "revoked") as box,
        ):
            time.sleep(seconds / 2)
            before, refused = self.calls(), emu.stats.logins_refused
            emu.revoke_all()
            time.sleep(seconds / 4)
            calls, refused = self.calls() - before, emu.stats.logins_refused - refused
        load = box[0]
        lost = self.lost(load)
        workers = self.stand.workers
        return self.record(
            Row(
                "token revoked at the server",
                "conn_max_age_0",
                seconds,
                load.requests,
                load.failures,
                lost,
                calls,
                f"{refused} logins refused then retried; {calls} identity calls for {workers} workers",
                load.failures == 0 and lost == 0 and 1 <= calls <= workers,
            )
        )

    def slow_cold_start(self, latency: float, concurrent: int) -> Row:
        emu = self.stand.emulator
        emu.lifetime = 3600
        emu.set_fault(latency=latency)
        before = self.calls()
        results: list[tuple[int, float]] = []
        try:
            with self.stand.site("conn_max_age_0", warm=False) as site:

                def one() -> None:
                    started = time.monotonic()
                    status, _ = get_json(site.url + "/api/restaurants/", timeout=60)
                    results.append((status, time.monotonic() - started))

                threads = [threading.Thread(target=one) for _ in range(concurrent)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            emu.clear_faults()
        calls = self.calls() - before
        failures = sum(1 for status, _ in results if status != 200)
        slowest = max(t for _, t in results)
        return self.record(
            Row(
                "slow identity endpoint at cold start",
                "conn_max_age_0",
                slowest,
                len(results),
                failures,
                0,
                calls,
                f"{latency:g} s per identity call; {concurrent} concurrent first requests; slowest {slowest:.1f} s; "
                f"{calls} identity calls for {self.stand.workers} workers",
                failures == 0 and calls <= self.stand.workers,
            )
        )

    def storm(self, seconds: float, hammer_threads: int = 4) -> Row:
        """A misconfigured site (another app's role as USER) on the same identity, hammered
        next to the healthy site: the endpoint must barely notice, the healthy site not at all."""
        emu, pg = self.stand.emulator, self.stand.postgres
        emu.lifetime = 3600
        other = emu.add_identity("another-app")
        if not pg.role_exists("aad_another_app"):
            pg.create_entra_role("aad_another_app")
        emu.allow_role("aad_another_app", other)
        with (
            self.stand.site("conn_max_age_0") as healthy,
            self.stand.site(
                "conn_max_age_0", warm=False, AZURE_POSTGRESQL_USER="aad_another_app"
            ) as wrong,
        ):
            for _ in range(4):  # warm both workers: their first tokens
                get_json(wrong.url + "/api/restaurants/", timeout=30)
            before = self.calls()
            refused: list[int] = []
            stop = time.monotonic() + seconds

            def hammer() -> None:
                while time.monotonic() < stop:
                    status, _ = get_json(wrong.url + "/api/restaurants/", timeout=30)
                    refused.append(status)

            threads = [threading.Thread(target=hammer) for _ in range(hammer_threads)]
            for t in threads:
                t.start()
            load = drive(healthy.url, seconds, threads=self.threads, tag="storm")
            for t in threads:
                t.join()
            calls = self.calls() - before
            said = _last_error(wrong.log)
        lost = self.lost(load)
        workers = self.stand.workers
        budget = workers * (1 + int(seconds // 30) + 1)
        named = "aad_another_app" in said and emu.system.object_id in said
        return self.record(
            Row(
                "wrong USER storm next to a healthy site",
                "conn_max_age_0",
                seconds,
                load.requests,
                load.failures,
                lost,
                calls,
                f"{len(refused)} requests to the misconfigured site ({hammer_threads} threads, "
                f"{sum(s != 200 for s in refused)} refused); {calls} identity calls from its "
                f"{workers} workers (budget {budget}); its error names USER and the principal's "
                f"object id: {'yes' if named else 'NO'}",
                load.failures == 0 and lost == 0 and calls <= budget and named,
            )
        )

    def throttling(self, lifetime: float, retry_after: int) -> Row:
        """HTTP 429 with Retry-After across the refresh point while the token is still valid."""
        emu = self.stand.emulator
        emu.lifetime = lifetime
        # The whole refresh window (a sixth of the lifetime to half-life): every worker's
        # refresh meets 429s; the endpoint recovers long before the token stops being served.
        throttle_from, throttle_for = lifetime / 6 - 1, lifetime / 3 + 2
        with self.stand.site("conn_max_age_0") as site:
            started = time.monotonic()
            before, since = self.calls(), emu.clock()
            emu.retry_after = retry_after
            with self.background_load(site, lifetime + 2, "throttle") as box:
                time.sleep(max(0.0, throttle_from - (time.monotonic() - started)))
                faulted = emu.stats.faulted_requests
                emu.set_fault("throttle")
                time.sleep(throttle_for)
                emu.clear_faults()
                faulted = emu.stats.faulted_requests - faulted
            emu.retry_after = 5
        load = box[0]
        lost = self.lost(load)
        calls = self.calls() - before
        asked = [t for t in emu.request_times if t >= since]
        most = self.stand.workers * (int(throttle_for // retry_after) + 2)
        return self.record(
            Row(
                "identity endpoint throttling (HTTP 429) while token valid",
                "conn_max_age_0",
                lifetime + 2,
                load.requests,
                load.failures,
                lost,
                calls,
                f"429 with Retry-After {retry_after} s for {throttle_for:g} s across the refresh "
                f"point of a {lifetime:g} s token; {faulted} requests answered 429 "
                f"(at most {most} if each worker honours Retry-After: the package asks again "
                "only after it, azure-core retries nothing for the credentials it builds); "
                f"{len(asked)} requests in all",
                load.failures == 0 and lost == 0 and faulted <= most,
            )
        )

    def forked(self, processes: int, lifetime: float, refreshes: int) -> Row:
        """Workers forked after the master fetched a token (gunicorn --preload, Celery
        prefork), each logging in to PostgreSQL in a loop through several token lifetimes.

        Public parts only: the master and the workers log in through the ENGINE, and each
        worker sees its own refreshes as the ``azure_pg.token.fetch`` spans that
        docs/observability.md documents, exported to memory by an OpenTelemetry SDK the worker
        installs after the fork."""
        from django_azure_pg import registry

        emu = self.stand.emulator
        emu.lifetime = lifetime
        emu.set_fault(latency=0.01)
        saved = {k: os.environ.get(k) for k in emu.app_service_env()}
        os.environ.update(emu.app_service_env())
        registry.reset()
        connection = _engine_connection(self.stand.postgres.host, self.stand.postgres.port)
        began = time.time()
        connection.ensure_connection()  # the master, before forking: its token is cached
        connection.close()
        first = (began + time.time()) / 2
        before = self.calls()
        emu.stats.peak_concurrent_requests = 0
        children = []
        for _ in range(processes):
            read, write = os.pipe()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the worker
                report = "?"
                try:
                    fetches = _export_spans_to_memory()
                    logins, failures = 0, 0
                    deadline = time.time() + lifetime * refreshes + lifetime / 2
                    while time.time() < deadline and len(_refreshes(fetches)) < refreshes:
                        try:
                            connection.ensure_connection()
                            connection.close()
                            logins += 1
                        except Exception:
                            failures += 1
                        time.sleep(0.1)
                    starts = [first, *_refreshes(fetches)]
                    moments = [b - a for a, b in itertools.pairwise(starts)]
                    report = f"{logins};{failures};" + ",".join(f"{m:.2f}" for m in moments)
                except BaseException as exc:
                    report = "!" + repr(exc)[:200]
                finally:
                    os.write(write, report.encode())
                    os._exit(0)
            os.close(write)
            children.append((pid, read))
        reports = []
        for pid, read in children:
            with os.fdopen(read, "rb") as pipe:
                reports.append(pipe.read().decode())
            os.waitpid(pid, 0)
        emu.clear_faults()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        broken = [r for r in reports if r.startswith(("!", "?"))]
        parsed = [r.split(";") for r in reports if r not in broken]
        logins = sum(int(p[0]) for p in parsed)
        failures = sum(int(p[1]) for p in parsed) + len(broken)
        moments = [float(m) for p in parsed for m in p[2].split(",") if m]
        own = all(len(p[2].split(",")) == refreshes for p in parsed) and not broken
        peak = emu.stats.peak_concurrent_requests
        # Refresh moments, seconds into the life of the token being replaced, 0.25 s bins.
        bins = collections.Counter(round(m * 4) / 4 for m in moments)
        histogram = " ".join(f"{b:g}s:{n}" for b, n in sorted(bins.items()))
        return self.record(
            Row(
                "forked workers refresh (gunicorn --preload)",
                f"{processes} processes",
                lifetime * refreshes,
                logins,
                failures,
                0,
                self.calls() - before,
                f"token lifetime {lifetime:g} s, {refreshes} refreshes each; peak {peak} "
                f"concurrent token requests; every worker refreshed on its own: "
                f"{'yes' if own else 'NO'}; refresh moments (s into the token's life): {histogram}",
                failures == 0 and own and peak <= 4,
                {"histogram": dict(bins), "peak": peak},
            )
        )


def _engine_connection(host: str, port: int) -> Any:
    """A connection of the ENGINE ``django_azure_pg`` to the stand's database, with this
    process's environment (the identity endpoint) as App Service gives it."""
    import django
    from django.conf import settings
    from django.db import connections

    entry = {
        "ENGINE": "django_azure_pg",
        "HOST": host,
        "PORT": str(port),
        "NAME": DATABASE,
        "USER": ROLE,
        "OPTIONS": {"sslmode": "require"},
    }
    if not settings.configured:  # this harness process has no Django settings of its own
        settings.configure(USE_TZ=True, INSTALLED_APPS=[], DATABASES={"default": entry})
        django.setup()
    connection = connections["default"]
    found = {k: connection.settings_dict.get(k) for k in ("ENGINE", "HOST", "PORT")}
    if found != {k: entry[k] for k in found}:
        raise RuntimeError(f"Django was set up for another database here: {found}")
    return connection


def _export_spans_to_memory() -> Any:
    """An OpenTelemetry SDK for this (forked) process, its spans kept in memory."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def _refreshes(exporter: Any) -> list[float]:
    """When (time.time()) each successful background refresh of this process began."""
    return sorted(
        span.start_time / 1e9
        for span in exporter.get_finished_spans()
        if span.name == "azure_pg.token.fetch"
        and span.attributes.get("azure_pg.fetch.trigger") == "refresh"
        and span.attributes.get("azure_pg.outcome") == "success"
    )


def _last_error(log: Path) -> str:
    """The last django_azure_pg login error a site logged (gunicorn's error log)."""
    text = log.read_text() if log.exists() else ""
    found = re.findall(r"Database alias .*?(?:\n|$)", text)
    return found[-1] if found else ""


def _row_line(r: Row) -> str:
    return (
        f"| {r.scenario} | {r.mode} | {r.requests} | {r.failures} | {r.lost_writes} | "
        f"{r.identity_calls} | {'pass' if r.passed else 'FAIL'} | {r.detail} |"
    )


def update_markdown(rows: list[Row], path: Path) -> None:
    """Replace (or add) the rows of these scenarios in an existing table."""
    lines = path.read_text().splitlines()
    for row in rows:
        key = f"| {row.scenario} | {row.mode} |"
        at = [i for i, line in enumerate(lines) if line.startswith(key)]
        if at:
            lines[at[0]] = _row_line(row)
        else:
            last = max(i for i, line in enumerate(lines) if line.startswith("| "))
            lines.insert(last + 1, _row_line(row))
    path.write_text("\n".join(lines) + "\n")


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def refresh_window(lifetime: float, refresh_on: float | None) -> tuple[float, float]:
    """When a token's refresh is due, seconds into its life, by the rule
    docs/how-it-works.md states: from ``refresh_on`` over a third of what is left; without it, from
    a sixth of the lifetime to half-life. tests/test_tokens.py checks that this is the
    cache's own rule."""
    if refresh_on is not None:
        return refresh_on, refresh_on + (lifetime - refresh_on) / 3
    return lifetime / 6, lifetime / 2


def headroom_markdown() -> list[str]:
    """The outage-headroom table, from the documented refresh rule
    (tests/test_tokens.py::test_outage_headroom_table drives a cache through each row)."""
    kinds = [
        ("6 s (tests)", 6.0, False),
        ("1 h user token", 3600.0, False),
        ("75 min user token", 4500.0, False),
        ("24 h, credential gives `refresh_on` (managed identity, MSAL)", 86400.0, True),
        ("24 h, no `refresh_on`", 86400.0, False),
    ]
    lines = [
        "## Identity outage headroom",
        "",
        "How long an outage of the identity endpoint may last without a failed login, when it",
        "starts at the worst moment (just before the last process's refresh) and the credential",
        "keeps answering from its cache until expiry, as azure-identity does after a failed",
        "recommended refresh. Before this release the cache refreshed in the last",
        "`min(300 s, lifetime / 4)` of a token, at a random moment in the first half of that.",
        "",
        "| token | refresh window (into its life) | longest outage survived | before |",
        "|---|---|---|---|",
    ]
    for name, lifetime, msal in kinds:
        opens, closes = refresh_window(lifetime, lifetime / 2 if msal else None)
        old = min(300.0, lifetime / 4) / 2
        lines.append(
            f"| {name} | {_span(opens)} to {_span(closes)} | {_span(lifetime - closes)} "
            f"| {_span(old)} |"
        )
    return [*lines, ""]


def write_markdown(rows: list[Row], params: str, path: Path) -> None:
    lines = [
        "# Reliability",
        "",
        "Produced by `make soak` (`python -m harness.soak`): the sample site under gunicorn",
        f"({params}) against the local PostgreSQL and identity endpoint, loopback only. Each",
        "scenario drives real HTTP reads and writes and afterwards checks that every acknowledged",
        "write (HTTP 201) is in the database.",
        "",
        f"Run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "| scenario | mode | requests | failed | writes missing | identity calls | result | notes |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    lines += [_row_line(r) for r in rows]
    lines += [
        "",
        "Modes: `conn_max_age_0` — a new login per request; `persistent` — `CONN_MAX_AGE=600`",
        "with `CONN_HEALTH_CHECKS=True`; `pool` — Django's native pool (min 2, max 8 per worker).",
        "",
        "Targets: no failed request and no missing write, except where failures are the",
        "expected behaviour — after the token expired during an identity outage (requests must",
        "fail within the 10 s `token_timeout` and the first request after recovery must succeed),",
        "and while PostgreSQL itself is down (the site must heal by itself, with no failures after",
        "it is back). A revoked token must be retried with one identity call per worker process;",
        "concurrent first requests on a cold worker must share one identity call.",
        "",
        "Being a good citizen of the identity endpoint: a second site whose `USER` is another",
        "app's role, hammered next to the healthy site on the same identity, may cost at most one",
        "token request per worker at start and one per worker per 30 s after (a token fetched",
        "by a refusal-forced refresh and refused again blocks further forced refreshes for a",
        "120th of its lifetime: 30 s for these 1-hour tokens), its error must name `USER` and the token's",
        "principal, and the healthy site must not fail a request. HTTP 429 with `Retry-After`",
        "across the refresh point must fail no request, and no more requests may reach the",
        "endpoint than honouring `Retry-After` allows. Sixteen processes forked after their",
        "parent fetched a token (gunicorn `--preload`) must each refresh on their own, with",
        "at most 4 token requests in flight at the endpoint at any moment (the histogram shows",
        "when in the token's life they refreshed: each worker at its own place in the window).",
        "",
        "The identity-outage scenarios found a real azure-identity behaviour: after one failed",
        "request (HTTP 500) its App Service managed-identity credential keeps answering",
        "`CredentialUnavailableError` at once, even after the endpoint has recovered — a site",
        "whose token then expired stayed down. django-azure-pg now builds a new credential",
        "object after every failed fetch (tests/test_emulator.py reproduces it).",
        "",
        *headroom_markdown(),
    ]
    path.write_text("\n".join(lines))


SCENARIOS = (
    "rotation", "outage", "headroom", "expiry", "restart", "revoked", "cold", "storm", "throttling", "forked",
)  # fmt: skip


def run(quick: bool = False, only: frozenset[str] = frozenset(SCENARIOS)) -> int:
    scale = 0.1 if quick else 1.0
    started = time.monotonic()
    print(f"django-azure-pg soak ({'quick' if quick else 'full'})", flush=True)
    with Stand(lifetime=60, workers=2, threads=4) as stand:
        soak = Soak(stand, scale, threads=6)
        if "rotation" in only:
            for mode in ("conn_max_age_0", "persistent", "pool"):
                soak.rotation(mode, lifetime=3.0 if quick else 10.0, seconds=max(10.0, soak.s(180)))
        if "outage" in only:
            for fault in ("error", "hang", "malformed"):
                soak.outage_while_valid(fault, lifetime=16.0 if quick else 60.0)
        if "headroom" in only:
            soak.outage_headroom(lifetime=30.0)
        if "expiry" in only:
            soak.outage_after_expiry(lifetime=3.0 if quick else 8.0, outage=max(14.0, soak.s(30)))
        if "restart" in only:
            for mode in ("persistent", "pool"):
                soak.postgres_restart(mode, seconds=max(12.0, soak.s(45)))
        if "revoked" in only:
            soak.revoked(seconds=max(8.0, soak.s(30)))
        if "cold" in only:
            soak.slow_cold_start(latency=2.0, concurrent=16)
        if "storm" in only:
            soak.storm(seconds=max(10.0, soak.s(60)))
        if "throttling" in only:
            soak.throttling(lifetime=24.0 if quick else 60.0, retry_after=2)
        if "forked" in only:
            soak.forked(processes=16, lifetime=8.0 if quick else 20.0, refreshes=3)
        params = f"{stand.workers} workers x {stand.threads} threads, 6 client threads"
    elapsed = time.monotonic() - started
    passed = all(r.passed for r in soak.rows)
    if not quick and only == frozenset(SCENARIOS):
        write_markdown(soak.rows, params, DOCS)
        print(f"  table written to {DOCS.relative_to(DOCS.parent.parent)}")
    elif not quick:
        update_markdown(soak.rows, DOCS)
        print(f"  rows updated in {DOCS.relative_to(DOCS.parent.parent)}")
    print(
        f"\n{sum(r.passed for r in soak.rows)} passed, {sum(not r.passed for r in soak.rows)} failed "
        f"({elapsed:.0f} s)"
    )
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--only", help=f"comma-separated scenarios (default: all of {', '.join(SCENARIOS)})"
    )
    args = parser.parse_args(argv)
    only = frozenset(args.only.split(",")) if args.only else frozenset(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return run(args.quick, only)


if __name__ == "__main__":
    sys.exit(main())

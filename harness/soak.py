"""`make soak`: the sample site under load through token rotations, outages and restarts.

Loopback only, bounded in time, stops by itself. Every scenario runs the real
site under gunicorn against the local PostgreSQL and identity endpoint and
checks that no acknowledged write is missing afterwards. Writes the table to
docs/reliability.md (full run) and exits 1 if any scenario fails its target.

    python -m harness.soak            # full run (about 15 minutes)
    python -m harness.soak --quick    # short smoke run (about 2 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .load import LoadResult, drive
from .stand import Site, Stand, get_json

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
            "persistent": {"DJANGO_CONN_MAX_AGE": f"{lifetime / 2:g}"},
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
        start_at, length = (
            lifetime / 3,
            lifetime / 2,
        )  # covers the refresh point (3/4 of the lifetime)
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
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.mode} | {r.requests} | {r.failures} | {r.lost_writes} | "
            f"{r.identity_calls} | {'pass' if r.passed else 'FAIL'} | {r.detail} |"
        )
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
        "The identity-outage scenarios found a real azure-identity behaviour: after one failed",
        "request (HTTP 500) its App Service managed-identity credential keeps answering",
        "`CredentialUnavailableError` at once, even after the endpoint has recovered — a site",
        "whose token then expired stayed down. django-azure-pg now builds a new credential",
        "object after every failed fetch (tests/test_emulator.py reproduces it).",
        "",
    ]
    path.write_text("\n".join(lines))


def run(quick: bool = False) -> int:
    scale = 0.1 if quick else 1.0
    started = time.monotonic()
    print(f"django-azure-pg soak ({'quick' if quick else 'full'})", flush=True)
    with Stand(lifetime=60, workers=2, threads=4) as stand:
        soak = Soak(stand, scale, threads=6)
        for mode in ("conn_max_age_0", "persistent", "pool"):
            soak.rotation(mode, lifetime=3.0 if quick else 10.0, seconds=max(10.0, soak.s(180)))
        for fault in ("error", "hang", "malformed"):
            soak.outage_while_valid(fault, lifetime=16.0 if quick else 60.0)
        soak.outage_after_expiry(lifetime=3.0 if quick else 8.0, outage=max(14.0, soak.s(30)))
        for mode in ("persistent", "pool"):
            soak.postgres_restart(mode, seconds=max(12.0, soak.s(45)))
        soak.revoked(seconds=max(8.0, soak.s(30)))
        soak.slow_cold_start(latency=2.0, concurrent=16)
        params = f"{stand.workers} workers x {stand.threads} threads, 6 client threads"
    elapsed = time.monotonic() - started
    passed = all(r.passed for r in soak.rows)
    if not quick:
        write_markdown(soak.rows, params, DOCS)
        print(f"  table written to {DOCS.relative_to(DOCS.parent.parent)}")
    print(
        f"\n{sum(r.passed for r in soak.rows)} passed, {sum(not r.passed for r in soak.rows)} failed "
        f"({elapsed:.0f} s)"
    )
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    return run(parser.parse_args(argv).quick)


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: the sample site end to end on a laptop, no Azure account needed.

Starts the local identity endpoint (short token lifetime) and an Entra-enabled
PostgreSQL, provisions the app's role as Service Connector would, runs migrations
and grant_aad_privileges, serves the site under gunicorn (2 workers) with App
Service's environment variables and no password, drives it with real HTTP reads
and writes across several token rotations, checks every acknowledged write is
in the database, prints a report, and shuts everything down. Exit status 1 on
any failed request or lost write.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import metrics
from .load import drive
from .stand import DATABASE, ROLE, Stand, get_json


def run(duration: float = 75.0, lifetime: float = 30.0, threads: int = 4, out=print) -> int:
    started = time.monotonic()
    out(f"django-azure-pg demo: token lifetime {lifetime:g} s, {duration:g} s of load")
    with Stand(lifetime=lifetime) as stand:
        out(
            f"  PostgreSQL {stand.postgres.host}:{stand.postgres.port} (TLS, Entra logins via the emulator)"
        )
        out(f"  identity endpoint {stand.emulator.url} (App Service protocol)")
        out(
            f"  role {ROLE} created via create_aad_principal; migrations run as the owner; "
            "grant_aad_privileges applied"
        )
        before = stand.emulator.stats.as_dict()
        with stand.site("conn_max_age_0") as site:
            _, health = get_json(site.url + "/health/")
            load = drive(site.url, duration, threads=threads, tag="demo")
            _, final_health = get_json(site.url + "/health/")
        after = stand.emulator.stats.as_dict()
        ids, reviews = stand.stored()
        telemetry = metrics.rows(metrics.snapshot(stand)) if metrics.available() else []

    lost = sorted(load.restaurants - ids)
    lost_reviews = sum(max(0, n - reviews.get(rid, 0)) for rid, n in load.reviews.items())
    tokens = after["tokens_issued"] - before["tokens_issued"]
    lifetimes = duration / lifetime
    rows = [
        (
            "site",
            f"gunicorn, {stand.workers} workers x {stand.threads} threads, CONN_MAX_AGE=0 "
            "(every request logs in)",
        ),
        (
            "credential",
            f"{health['auth'] if health else '?'} as role {ROLE} on database {DATABASE}",
        ),
        ("requests served", f"{load.requests - load.failures}"),
        ("failed requests", f"{load.failures}" + (f"  {dict(load.errors)}" if load.errors else "")),
        (
            "writes acknowledged",
            f"{len(load.restaurants)} restaurants, {sum(load.reviews.values())} reviews",
        ),
        ("writes missing", f"{len(lost)} restaurants, {lost_reviews} reviews"),
        (
            "latency p50 / p99 / max",
            f"{load.percentile(0.5) * 1000:.0f} / {load.percentile(0.99) * 1000:.0f} / "
            f"{load.slowest * 1000:.0f} ms",
        ),
        ("token lifetime", f"{lifetime:g} s; load ran {lifetimes:.1f} lifetimes"),
        ("tokens issued", f"{tokens} (per worker: first fetch + background refreshes)"),
        (
            "token rotations",
            f"{max(0, tokens - stand.workers)} (tokens beyond each worker's first)",
        ),
        (
            "logins accepted / refused",
            f"{after['logins_accepted'] - before['logins_accepted']} / "
            f"{after['logins_refused'] - before['logins_refused']}",
        ),
        ("health after load", f"{(final_health or {}).get('status', 'unavailable')}"),
        ("wall time", f"{time.monotonic() - started:.0f} s"),
    ]
    out("")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out(f"  {key.ljust(width)}  {value}")
    if telemetry:
        out("")
        width = max(len(k) for k, _ in telemetry)
        for key, value in telemetry:
            out(f"  {key.ljust(width)}  {value}")
    ok = load.failures == 0 and not lost and lost_reviews == 0 and load.requests > 0
    rotations_ok = tokens - stand.workers >= 2
    out("")
    out("RESULT: " + ("OK" if ok and rotations_ok else "FAILED"))
    return 0 if ok and rotations_ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=75.0, help="seconds of load (default 75)")
    parser.add_argument(
        "--lifetime", type=float, default=30.0, help="token lifetime in seconds (default 30)"
    )
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    args = parser.parse_args(argv)
    return run(args.duration, args.lifetime, args.threads)


if __name__ == "__main__":
    sys.exit(main())

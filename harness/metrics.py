"""What the sample's telemetry reports, read from an OpenTelemetry in-memory reader.

For ``make demo``: a process with the site's own settings and environment (as a
gunicorn worker has) installs the OpenTelemetry SDK with an
``InMemoryMetricReader``, logs in a few times, and prints the package's metrics
as JSON. Skipped when ``opentelemetry-sdk`` is not installed — the package
itself needs only the API, and only optionally.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

from .stand import Stand

LOGINS = 20

_SCRIPT = """
import json
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
from django.db import connection

for _ in range({logins}):
    connection.ensure_connection()
    connection.close()
seen = {{}}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            for p in m.data.data_points:
                attrs = dict(p.attributes)
                row = {{"attributes": attrs}}
                for key in ("value", "count", "sum"):
                    if hasattr(p, key):
                        row[key] = getattr(p, key)
                seen.setdefault(m.name, []).append(row)
print(json.dumps(seen))
"""


def available() -> bool:
    return importlib.util.find_spec("opentelemetry.sdk") is not None


def snapshot(stand: Stand, logins: int = LOGINS) -> dict[str, list[dict[str, Any]]]:
    done = stand.manage("shell", "-c", _SCRIPT.format(logins=logins))
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def rows(seen: dict[str, list[dict[str, Any]]], logins: int = LOGINS) -> list[tuple[str, str]]:
    """A few lines for the demo's report."""

    def points(name: str) -> list[dict[str, Any]]:
        return seen.get(name, [])

    fetches = {
        p["attributes"].get("azure_pg.outcome"): p["value"]
        for p in points("azure_pg.token.fetches")
    }
    durations = points("azure_pg.token.fetch.duration")
    created = [p for p in points("db.client.connection.create_time") if p["count"]]
    remaining = points("azure_pg.token.remaining_lifetime")
    out = [
        (
            "telemetry",
            f"{logins} logins in a process with the site's settings, OpenTelemetry SDK, "
            "in-memory reader",
        ),
        (
            "  azure_pg.token.fetches",
            ", ".join(f"{k}={v}" for k, v in sorted(fetches.items())) or "none",
        ),
    ]
    if durations:
        count, mean_ms = _count_and_mean_ms(durations)
        out.append(("  azure_pg.token.fetch.duration", f"{count} fetch(es), mean {mean_ms:.1f} ms"))
    if created:
        count, mean_ms = _count_and_mean_ms(created)
        out.append(
            (
                "  db.client.connection.create_time",
                f"{count} connections, mean {mean_ms:.1f} ms (token included)",
            )
        )
    for p in remaining:
        out.append(
            (
                "  azure_pg.token.remaining_lifetime",
                f"{p['value']:.1f} s ({p['attributes'].get('azure_pg.identity')})",
            )
        )
    return out


def _count_and_mean_ms(points: list[dict[str, Any]]) -> tuple[int, float]:
    """Histogram points (seconds) summed: how many values, and their mean in ms."""
    count = sum(p["count"] for p in points)
    return count, sum(p["sum"] for p in points) / count * 1000

"""A bounded load generator for the sample site: real HTTP reads and writes on loopback."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .stand import get_json


@dataclass
class LoadResult:
    requests: int = 0
    failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    restaurants: set[int] = field(default_factory=set)
    reviews: Counter[int] = field(default_factory=Counter)
    slowest: float = 0.0
    failure_times: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drive(url: str, seconds: float, *, threads: int = 4, tag: str = "load") -> LoadResult:
    """Each thread: create a restaurant, read it, review it, list — until time is up.

    Only acknowledged writes (HTTP 201 with an id) are recorded, so the caller can
    check that every one of them is in the database afterwards.
    """
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = itertools.count()

    def call(path: str, data: dict[str, object] | None, expect: int) -> object:
        started = time.monotonic()
        try:
            status, body = get_json(url + path, data)
        except OSError as exc:
            status, body = 0, None
            error = type(exc).__name__
        else:
            error = f"HTTP {status}"
        elapsed = time.monotonic() - started
        with lock:
            result.requests += 1
            result.latencies.append(elapsed)
            result.slowest = max(result.slowest, elapsed)
            if status != expect:
                result.failures += 1
                result.failure_times.append(time.monotonic())
                result.errors[f"{path.split('/')[2] if path.count('/') > 1 else path} {error}"] += 1
                return None
        return body

    def worker() -> None:
        while time.monotonic() < deadline:
            n = next(counter)
            created = call(
                "/api/restaurants/",
                {"name": f"{tag} bistro {n}", "street_address": f"{n} Main St"},
                201,
            )
            if not isinstance(created, dict):
                continue
            rid = int(created["id"])
            with lock:
                result.restaurants.add(rid)
            call(f"/api/restaurants/{rid}/", None, 200)
            review = call(
                f"/api/restaurants/{rid}/reviews/",
                {"user_name": "demo", "rating": 1 + n % 5, "review_text": "tasty"},
                201,
            )
            if isinstance(review, dict):
                with lock:
                    result.reviews[rid] += 1
            call("/api/restaurants/", None, 200)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 120)
    return result

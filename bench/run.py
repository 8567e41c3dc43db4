"""`make bench`: what the token path costs, measured side by side in one run.

Starts its own PostgreSQL and identity emulator. Every comparison runs its
contenders on the same server, interleaved round by round (A B A B …), and
reports min / median / max over the rounds and the ratio of medians. The
"stock" contenders log in with a static, still-valid token as PASSWORD — the
settings.py recipe — so both sides take the same server-side auth path and
the difference is this package's own work.

Results: bench/results/latest.json, docs/benchmarks.png; docs/benchmarks.md explains.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(USE_TZ=True, INSTALLED_APPS=["django_azure_pg"], DATABASES={})
    django.setup()

import psycopg
from azure.identity import ManagedIdentityCredential
from django.db.utils import ConnectionHandler, load_backend

from django_azure_pg import registry
from django_azure_pg._core import telemetry
from django_azure_pg._core.login import TokenLogin
from django_azure_pg._pool import token_connection_class
from django_azure_pg_testing import IdentityEmulator, LocalPostgres

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grants_check

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
ROLE = "aad_bench"
DB = "bench"


# -- harness ---------------------------------------------------------------------


def run_threads(
    threads: int, seconds: float, make_worker: Callable[[], Callable[[], None]]
) -> float:
    """Operations per second over ``seconds`` with ``threads`` threads."""
    count = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def loop(i: int) -> None:
        try:
            work = make_worker()
            start.wait()
            while time.monotonic() < stop_at[0]:
                work()
                count[i] += 1
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    stop_at[0] = time.monotonic() + seconds + 0.05
    began = time.monotonic()
    start.wait()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return sum(count) / (time.monotonic() - began)


def summary(values: list[float]) -> dict[str, float]:
    q1, _, q3 = (
        statistics.quantiles(values, n=4, method="inclusive")
        if len(values) > 1
        else (values[0],) * 3
    )
    return {
        "min": min(values),
        "q1": q1,
        "median": statistics.median(values),
        "q3": q3,
        "max": max(values),
        "rounds": len(values),
    }


def client_cpu(
    name: str, contenders: dict[str, Callable[[], None]], rounds: int, n: int
) -> dict[str, Any]:
    """CPU time of the calling thread per operation (``time.thread_time``), A vs B: what
    each side itself spends, without the wait for the server, which is most of the noise
    in a throughput figure. One thread, interleaved rounds of ``n`` operations."""

    def measure(work: Callable[[], None]) -> float:
        began = time.thread_time()
        for _ in range(n):
            work()
        return (time.thread_time() - began) / n * 1e6

    samples: dict[str, list[float]] = {k: [] for k in contenders}
    order = list(contenders)
    for r in range(rounds):
        for key in order if r % 2 == 0 else order[::-1]:
            samples[key].append(measure(contenders[key]))
    result: dict[str, Any] = {k: summary(v) for k, v in samples.items()}
    a, b = order
    result["added_us"] = result[a]["median"] - result[b]["median"]
    print(
        f"  {name}: {a} {result[a]['median']:.0f} us vs {b} {result[b]['median']:.0f} us"
        f" → {result['added_us']:+.0f} us (medians of {rounds} x {n})"
    )
    return result


def compare(name: str, contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    order = list(contenders)
    for r in range(rounds):
        # A B, then B A: whoever runs second in a round (a warmer cache, a machine
        # settling) does so in every other round only.
        for key in order if r % 2 == 0 else order[::-1]:
            samples[key].append(contenders[key]())
    result = {k: summary(v) for k, v in samples.items()}
    a, b = list(contenders)
    ratio = result[a]["median"] / result[b]["median"]
    # Each round runs A and B back to back: their ratio cancels what the machine was
    # doing during that round, so the spread of per-round ratios is the run's own noise.
    per_round = summary([x / y for x, y in zip(samples[a], samples[b], strict=True)])
    print(
        f"  {name}: {a} {result[a]['median']:.0f}/s vs {b} {result[b]['median']:.0f}/s → ratio {ratio:.3f}"
        f" (per round: min {per_round['min']:.3f}, quartiles {per_round['q1']:.3f} /"
        f" {per_round['median']:.3f} / {per_round['q3']:.3f}, max {per_round['max']:.3f})"
    )
    return {
        "samples": samples,
        "summary": result,
        "ratio": ratio,
        "ratio_of": f"{a} / {b}",
        "round_ratios": per_round,
    }


@dataclass(frozen=True)
class Target:
    """What a client needs to reach the bench's server and identity endpoint.

    The client-side sections run in a process of their own (:func:`in_client`): in
    this one the emulator's HTTP server and LDAP responder — the stand-ins for
    Azure's identity endpoint and the server's token check, which run elsewhere in
    production — would compete with the measured connections for the GIL.
    """

    host: str
    port: int
    client_id: str
    static_token: str


class Clients:
    """The sections that compare connections/s, ours vs stock, from a client process."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def entry(self, **overrides: Any) -> dict[str, Any]:
        base = {
            "ENGINE": "django_azure_pg",
            "HOST": self.target.host,
            "PORT": str(self.target.port),
            "NAME": DB,
            "USER": ROLE,
            "OPTIONS": {"sslmode": "disable", "client_id": self.target.client_id},
        }
        base.update(overrides)
        return ConnectionHandler().configure_settings({"default": base})["default"]

    def wrapper(self, entry: dict[str, Any]) -> Any:
        return load_backend(entry["ENGINE"]).DatabaseWrapper(entry, f"b_{uuid.uuid4().hex[:8]}")

    def static_token(self) -> str:
        return self.target.static_token

    def new_connections(self, entry: dict[str, Any]) -> Callable[[], None]:
        """One new physical connection through Django per call (connect, close), on a
        wrapper of its own."""
        w = self.wrapper(entry)

        def work() -> None:
            w.connect()
            w.close()

        return work

    # 1 ---------------------------------------------------------------------------
    def connect_throughput(self, rounds: int, seconds: float, threads: int) -> dict[str, Any]:
        """New physical connections/s, ours vs stock: with ``threads`` threads (the
        headline), with one, and the connecting thread's CPU time per connection."""
        ours = self.entry()
        stock = self.entry(
            ENGINE="django.db.backends.postgresql",
            PASSWORD=self.static_token(),
            OPTIONS={"sslmode": "disable"},
        )

        def measure(entry: dict[str, Any], n: int) -> Callable[[], float]:
            return lambda: run_threads(n, seconds, lambda: self.new_connections(entry))

        self.wrapper(ours).connect()  # warm the token
        result = compare(
            "connect throughput (new physical connections/s through Django)",
            {
                "django_azure_pg": measure(ours, threads),
                "stock + static token": measure(stock, threads),
            },
            rounds,
        )
        # Time per connection per thread: threads / (connections per second).
        medians = {k: v["median"] for k, v in result["summary"].items()}
        per_connection = {k: threads / m * 1e6 for k, m in medians.items()}
        result["per_connection_us"] = per_connection
        result["overhead_us"] = (
            per_connection["django_azure_pg"] - per_connection["stock + static token"]
        )
        print(
            f"    per connection: {per_connection['django_azure_pg']:.0f} us vs "
            f"{per_connection['stock + static token']:.0f} us → "
            f"{result['overhead_us']:+.0f} us (medians; {threads} threads)"
        )
        result["one_thread"] = compare(
            "connect throughput, 1 thread",
            {"django_azure_pg": measure(ours, 1), "stock + static token": measure(stock, 1)},
            rounds,
        )
        result["client_cpu_us"] = self._client_cpu(ours, stock, rounds)
        return result

    def _client_cpu(
        self, ours: dict[str, Any], stock: dict[str, Any], rounds: int, n: int = 100
    ) -> dict[str, Any]:
        """CPU time of the connecting thread per new connection."""
        return client_cpu(
            "connecting thread's CPU per connection",
            {
                "django_azure_pg": self.new_connections(ours),
                "stock + static token": self.new_connections(stock),
            },
            rounds,
            n,
        )

    # 7 ---------------------------------------------------------------------------
    def telemetry_overhead(self, rounds: int, seconds: float, threads: int) -> dict[str, Any]:
        """The connect path with the OpenTelemetry SDK exporting to memory vs telemetry off.

        "Off" is the code path taken when ``opentelemetry-api`` is not installed
        (``telemetry.ENABLED`` is False: every hook returns at once). It installs the
        SDK as the process's global providers: in a client process of its own.
        """
        if not telemetry.ENABLED:
            print("  telemetry: opentelemetry-api is not installed; skipped")
            return {"skipped": "opentelemetry-api not installed"}
        try:
            exporter = install_otel_sdk()
        except ImportError:
            print("  telemetry: opentelemetry-sdk is not installed; skipped")
            return {"skipped": "opentelemetry-sdk not installed"}
        entry = self.entry()

        def measure(enabled: bool) -> Callable[[], float]:
            def run() -> float:
                telemetry.ENABLED = enabled
                try:
                    return run_threads(threads, seconds, lambda: self.new_connections(entry))
                finally:
                    telemetry.ENABLED = True
                    exporter.clear()

            return run

        self.wrapper(entry).connect()  # warm the token
        result = compare(
            "connect path, telemetry off (as without the API) vs SDK exporting to memory",
            {"telemetry off": measure(False), "SDK to memory": measure(True)},
            rounds,
        )
        result["cost_ratio"] = result["ratio"]  # throughput off / on = time per connection on / off
        added = self._login_overhead(entry)
        result["login_overhead_us"] = added
        # The same ratio from the microbenchmark: the CPU time telemetry adds to one login,
        # over the time one connection takes at the measured (CPU-bound) rate.
        per_connection = 1 / result["summary"]["telemetry off"]["median"]
        result["derived_cost_ratio"] = 1 + added["added"] * 1e-6 / per_connection
        print(
            f"  derived: 1 + {added['added']:.0f} us / {per_connection * 1e3:.2f} ms "
            f"= {result['derived_cost_ratio']:.3f}"
        )
        return result

    def _login_overhead(self, entry: dict[str, Any]) -> dict[str, float]:
        """Microseconds the observed login adds, with a connect that does nothing."""
        login = self.wrapper(entry).azure_login
        params = self.wrapper(entry).get_connection_params()
        login.token()

        def per_call(enabled: bool | None, n: int = 2000) -> float:
            telemetry.ENABLED = bool(enabled)
            observed = telemetry.login if enabled is not None else None
            try:
                started = time.perf_counter()
                for _ in range(n):
                    if observed is None:  # no wrapper at all: login.py alone
                        login.connect(lambda **kw: None, params)
                    else:
                        observed(login, lambda **kw: None, params)
                return (time.perf_counter() - started) / n * 1e6
            finally:
                telemetry.ENABLED = True

        samples: dict[bool | None, list[float]] = {None: [], False: [], True: []}
        for _ in range(9):  # interleaved, like the comparisons
            for mode, values in samples.items():
                values.append(per_call(mode))
        bare, off, on = (statistics.median(samples[m]) for m in (None, False, True))
        print(
            f"  login path without the connect itself: {bare:.1f} us unwrapped, "
            f"{off:.1f} us off, {on:.1f} us on"
        )
        return {"unwrapped": bare, "off": off, "on": on, "added": on - off}

    # 4 ---------------------------------------------------------------------------
    def pool_throughput(self, rounds: int, seconds: float, threads: int) -> dict[str, Any]:
        pool = {"min_size": threads, "max_size": threads, "timeout": 10}
        ours = self.entry(
            OPTIONS={"sslmode": "disable", "client_id": self.target.client_id, "pool": pool}
        )
        stock = self.entry(
            ENGINE="django.db.backends.postgresql",
            PASSWORD=self.static_token(),
            OPTIONS={"sslmode": "disable", "pool": pool},
        )
        wrappers = []

        def measure(entry: dict[str, Any]) -> Callable[[], float]:
            alias = f"pool_{uuid.uuid4().hex[:6]}"

            def make() -> Callable[[], None]:
                w = load_backend(entry["ENGINE"]).DatabaseWrapper(entry, alias)
                wrappers.append(w)

                return lambda: _request(w)

            return lambda: run_threads(threads, seconds, make)

        result = compare(
            "pool request cycle (checkout + SELECT 1 + return, per second)",
            {"django_azure_pg": measure(ours), "stock + static token": measure(stock)},
            rounds,
        )

        def request(entry: dict[str, Any]) -> Callable[[], None]:
            w = load_backend(entry["ENGINE"]).DatabaseWrapper(entry, f"cpu_{uuid.uuid4().hex[:6]}")
            wrappers.append(w)
            return lambda: _request(w)

        result["client_cpu_us"] = client_cpu(
            "requesting thread's CPU per pool request cycle",
            {"django_azure_pg": request(ours), "stock + static token": request(stock)},
            rounds * 2,
            300,
        )
        for w in wrappers:
            if w.alias in w._connection_pools:
                w.close_pool()
        return result

    # 5 ---------------------------------------------------------------------------
    def versus_azure_postgresql_auth(
        self, rounds: int, seconds: float, threads: int
    ) -> dict[str, Any]:
        try:
            from azure_postgresql_auth.psycopg3 import EntraConnection
        except ImportError:
            print("  azure-postgresql-auth not installed: skipped (pip install '.[bench]')")
            return {"skipped": "azure-postgresql-auth not installed"}
        registry.reset()
        conninfo = f"host={self.target.host} port={self.target.port} dbname={DB} sslmode=disable"
        out: dict[str, Any] = {}
        for label, credential in (
            (
                "caching credential (ManagedIdentityCredential)",
                ManagedIdentityCredential(client_id=self.target.client_id),
            ),
            (
                "slow non-caching credential (300 ms, like AzureCliCredential)",
                SlowCliLikeCredential(self.target.client_id),
            ),
        ):
            login = TokenLogin.from_settings("vs", {"credential": credential}, ROLE)
            ours_cls = token_connection_class(psycopg.Connection, login)
            login.token()  # warm ours, as a running site would be
            credential.get_token(SCOPE)  # and theirs (fills MSAL's cache where there is one)

            def measure(connect: Callable[[], Any], n: int) -> Callable[[], float]:
                def make() -> Callable[[], None]:
                    return lambda: connect().close()

                return lambda: run_threads(n, seconds, make)

            def ours_connect(c: Any = ours_cls) -> Any:
                return c.connect(conninfo)

            def theirs_connect(cred: Any = credential) -> Any:
                return EntraConnection.connect(conninfo, credential=cred, user=ROLE)

            entry: dict[str, Any] = {}
            for n in (threads, 1):
                entry[f"{n} threads"] = compare(
                    f"vs azure-postgresql-auth, {label}, {n} thread(s)",
                    {
                        "django_azure_pg": measure(ours_connect, n),
                        "azure-postgresql-auth": measure(theirs_connect, n),
                    },
                    rounds,
                )
            entry["token_cost_us"] = token_cost(login, credential)
            out[label] = entry
        return out


class Bench:
    """The sections that need the emulator itself (its counters and faults) or the server."""

    def __init__(self, emulator: IdentityEmulator, pg: LocalPostgres) -> None:
        self.emulator = emulator
        self.pg = pg
        self.identity = emulator.add_identity("uami-bench")
        emulator.allow_role(ROLE, self.identity)
        emulator.allow_role(ROLE)

        self.target = Target(
            pg.host, pg.port, self.identity.client_id, emulator.issue(self.identity)[0]
        )
        self.clients = Clients(self.target)

    # 2 ---------------------------------------------------------------------------
    def identity_calls(self, threads: int, per_thread: int, lifetime: float) -> dict[str, Any]:
        registry.reset()
        self.emulator.lifetime = lifetime
        ident = self.emulator.add_identity("uami-calls")
        self.emulator.allow_role(ROLE, ident)
        entry = self.clients.entry(OPTIONS={"sslmode": "disable", "client_id": ident.client_id})
        before = self.emulator.stats.token_requests
        failures = [0]
        began = time.monotonic()

        def worker() -> None:
            w = self.clients.wrapper(entry)
            for _ in range(per_thread):
                try:
                    w.connect()
                    w.close()
                except Exception:
                    failures[0] += 1

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - began
        calls = self.emulator.stats.token_requests - before
        lifetimes = elapsed / lifetime
        self.emulator.lifetime = 3600
        print(
            f"  identity calls: {threads}x{per_thread} connections in {elapsed:.1f} s "
            f"= {lifetimes:.1f} lifetimes of {lifetime:g} s → {calls} calls, {failures[0]} failures"
        )
        return {
            "threads": threads,
            "connections": threads * per_thread,
            "seconds": elapsed,
            "lifetime": lifetime,
            "lifetimes": lifetimes,
            "calls": calls,
            "calls_per_lifetime": calls / lifetimes,
            # One process refreshes between a sixth and half of each token's life
            # (timing.py): at most 6 calls per lifetime, plus the first fetch.
            "target_max_calls": math.ceil(lifetimes * 6) + 1,
            "failures": failures[0],
        }

    # 3 ---------------------------------------------------------------------------
    def slow_endpoint_latency(
        self, threads: int, seconds: float, lifetime: float, latency: float
    ) -> dict[str, Any]:
        registry.reset()
        ident = self.emulator.add_identity("uami-slow")
        self.emulator.allow_role(ROLE, ident)
        self.emulator.lifetime = lifetime
        self.emulator.set_fault(latency=latency)
        login = TokenLogin.from_settings("slow", {"client_id": ident.client_id}, ROLE)
        before = self.emulator.stats.token_requests
        t0 = time.monotonic()
        login.token()  # warm: the one wait at start
        cold = time.monotonic() - t0
        waits: list[float] = []
        lock = threading.Lock()
        conninfo = {"host": self.pg.host, "port": self.pg.port, "dbname": DB, "sslmode": "disable"}

        def make() -> Callable[[], None]:
            def work() -> None:
                started = time.perf_counter()
                token = login.token()
                waited = time.perf_counter() - started
                with lock:
                    waits.append(waited)
                psycopg.connect(**conninfo, user=ROLE, password=token).close()

            return work

        run_threads(threads, seconds, make)
        self.emulator.clear_faults()
        self.emulator.lifetime = 3600
        ordered = sorted(waits)
        pct = {q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 for q in (0.5, 0.99)}
        calls = self.emulator.stats.token_requests - before
        print(
            f"  slow endpoint ({latency * 1000:.0f} ms/call, lifetime {lifetime:g} s, "
            f"{seconds / lifetime:.1f} lifetimes): cold {cold * 1000:.0f} ms; warm p50 {pct[0.5]:.3f} ms, "
            f"p99 {pct[0.99]:.3f} ms, max {ordered[-1] * 1000:.3f} ms over {len(waits)} connections; "
            f"{calls} identity calls"
        )
        return {
            "latency_ms": latency * 1000,
            "lifetime": lifetime,
            "seconds": seconds,
            "rotations": seconds / lifetime,
            "cold_ms": cold * 1000,
            "connections": len(waits),
            "p50_ms": pct[0.5],
            "p99_ms": pct[0.99],
            "max_ms": ordered[-1] * 1000,
            "identity_calls": calls,
        }

    # 8 ---------------------------------------------------------------------------
    def first_request(self, rounds: int, latency: float, boot: float) -> dict[str, Any]:
        """A new worker's first request, ours vs stock with a password (issue 30).

        Each sample is a fresh interpreter started as gunicorn is (``sys.argv[0]``), which
        runs ``django.setup()``, boots for ``boot`` seconds and times its first request
        (connect, ``SELECT 1``) — fresh, or in a child forked right after ``setup()`` (as
        ``gunicorn --preload`` does). The identity endpoint answers in ``latency``
        seconds. Rounds alternate ours/stock and stock/ours.
        """
        ident = self.emulator.add_identity("uami-first")
        self.emulator.allow_role(ROLE, ident)
        self.emulator.set_fault(latency=latency)
        variants: dict[str, Any] = {}
        try:
            for forked in (False, True):
                contenders = {
                    "django_azure_pg": lambda f=forked: self._first(f, boot, ident.client_id),
                    "stock + password": lambda f=forked: self._first(f, boot, None),
                }
                samples: dict[str, list[float]] = {k: [] for k in contenders}
                order = list(contenders)
                for r in range(rounds):
                    for key in order if r % 2 == 0 else order[::-1]:
                        samples[key].append(contenders[key]())
                result: dict[str, Any] = {k: summary(v) for k, v in samples.items()}
                result["samples_ms"] = samples
                result["added_ms"] = (
                    result["django_azure_pg"]["median"] - result["stock + password"]["median"]
                )
                result["per_round_added_ms"] = summary(
                    [a - b for a, b in zip(*samples.values(), strict=True)]
                )
                name = "forked after setup()" if forked else "fresh process"
                spread = result["per_round_added_ms"]
                print(
                    f"  first request, {name} ({latency * 1000:.0f} ms endpoint, {boot:g} s boot):"
                    f" ours {result['django_azure_pg']['median']:.1f} ms vs stock"
                    f" {result['stock + password']['median']:.1f} ms → {result['added_ms']:+.1f} ms"
                    f" (per round: min {spread['min']:+.1f}, quartiles {spread['q1']:+.1f} /"
                    f" {spread['median']:+.1f} / {spread['q3']:+.1f}, max {spread['max']:+.1f};"
                    f" {rounds} rounds)"
                )
                variants["forked" if forked else "fresh"] = result
        finally:
            self.emulator.clear_faults()
        return {"latency_ms": latency * 1000, "boot_s": boot, "target_added_ms": 50, **variants}

    def _first(self, forked: bool, boot: float, client_id: str | None) -> float:
        """One sample of :meth:`first_request`: milliseconds."""
        import subprocess

        if client_id is not None:
            entry = {"ENGINE": "django_azure_pg", "OPTIONS": {"sslmode": "disable",
                     "client_id": client_id}}  # fmt: skip
            apps = ["django_azure_pg"]
        else:
            entry = {"ENGINE": "django.db.backends.postgresql",
                     "PASSWORD": self.target.static_token, "OPTIONS": {"sslmode": "disable"}}  # fmt: skip
            apps = []
        entry.update(HOST=self.pg.host, PORT=str(self.pg.port), NAME=DB, USER=ROLE)
        code = FIRST_REQUEST.format(entry=entry, apps=apps, boot=boot, forked=forked)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        env.pop("DJANGO_AZURE_PG_WARM_START", None)
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
            timeout=120, check=True,
        )  # fmt: skip
        return float(json.loads(done.stdout.strip().splitlines()[-1])["first_ms"])

    # 9 ---------------------------------------------------------------------------
    def identity_outage(self, threads: int, outage: float) -> dict[str, Any]:
        """Requests while the identity endpoint answers HTTP 500 and nothing is cached.

        ``threads`` threads make requests (connect, ``SELECT 1``, close: each on a
        wrapper of its own, one identity) for ``outage`` seconds of HTTP 500, then the
        endpoint answers again. Reported: failed-request latency (the first apart),
        identity calls during the outage against the documented bound
        (``timing.outage_attempts_bound``), and the time from the endpoint's return to
        the first request served. In this process: the section toggles the emulator's
        fault mid-run, and its targets (half a second, two) are far above the GIL's noise.
        """
        from django_azure_pg._core import credentials, timing

        registry.reset()
        ident = self.emulator.add_identity("uami-outage")
        self.emulator.allow_role(ROLE, ident)
        entry = self.clients.entry(OPTIONS={"sslmode": "disable", "client_id": ident.client_id})
        failed: list[tuple[float, float]] = []  # (when, seconds)
        served: list[float] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            w = self.clients.wrapper(entry)
            while not stop.is_set():
                began = time.monotonic()
                try:
                    _request(w)
                    with lock:
                        served.append(time.monotonic())
                except Exception:
                    with lock:
                        failed.append((began, time.monotonic() - began))
                    w.close()
                time.sleep(0.005)  # the rest of a request's work

        self.emulator.set_fault("error")
        before = self.emulator.stats.token_requests
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        began = time.monotonic()
        for t in ts:
            t.start()
        time.sleep(outage)
        calls = self.emulator.stats.token_requests - before
        returned = time.monotonic()
        self.emulator.set_fault(None)
        while time.monotonic() < returned + 10:
            with lock:
                if served:
                    break
            time.sleep(0.005)
        stop.set()
        for t in ts:
            t.join(30)
        self.emulator.clear_faults()
        failures = sorted(failed)
        first, rest = failures[0][1], [d for _, d in failures[1:]]
        recovery = (min(served) - returned) if served else None
        bound = timing.outage_attempts_bound(outage) * (1 + credentials.CREDENTIAL_RETRIES)
        lat = summary([d * 1000 for d in rest])
        print(
            f"  identity down ({outage:g} s of HTTP 500, nothing cached, {threads} threads): "
            f"{len(failures)} requests failed; the first in {first * 1000:.0f} ms, the rest "
            f"median {lat['median']:.2f} ms (quartiles {lat['q1']:.2f} / {lat['q3']:.2f}, max "
            f"{lat['max']:.1f}); {calls} identity calls (bound {bound}); served again "
            + (f"{recovery * 1000:.0f} ms after the endpoint returned" if recovery else "NEVER")
        )
        return {
            "outage_s": outage,
            "threads": threads,
            "failed_requests": len(failures),
            "first_failed_ms": first * 1000,
            "failed_ms": lat,
            "identity_calls": calls,
            "identity_calls_bound": bound,
            "recovery_ms": None if recovery is None else recovery * 1000,
            "elapsed_s": time.monotonic() - began,
            "targets": {"median_failed_ms": 500, "recovery_ms": 2000},
        }


FIRST_REQUEST = """
import json, os, sys, time
sys.argv = ["gunicorn", "bench.wsgi"]  # a server process: the warm start applies
import django
from django.conf import settings
settings.configure(USE_TZ=True, INSTALLED_APPS={apps!r}, DATABASES={{"default": {entry!r}}})
django.setup()

def first_request():
    time.sleep({boot!r})  # the rest of the worker's boot
    from django.db import connection
    began = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return (time.perf_counter() - began) * 1000

if {forked!r}:
    import warnings
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            os.write(write, json.dumps(first_request()).encode())
        finally:
            os._exit(0)
    os.close(write)
    ms = json.loads(os.fdopen(read).read())
    os.waitpid(pid, 0)
else:
    ms = first_request()
print(json.dumps({{"first_ms": ms}}))
"""


def _request(w: Any) -> None:
    """One request through Django's pool: check out, query, give back."""
    with w.cursor() as cur:
        cur.execute("SELECT 1")
    w.close()


def install_otel_sdk() -> Any:
    """The OpenTelemetry SDK as the global providers, exporting spans and metrics to memory."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # exports in the caller's thread
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return exporter


HEAVY = ("azure.identity", "msal", "psycopg")

IMPORTS = {
    "django_azure_pg + from_env": (
        "import django_azure_pg\nfrom django_azure_pg.env import from_env"
    ),
    "dj_database_url": "import dj_database_url",
    "django_azure_pg._core.login (first connection)": "import django_azure_pg._core.login",
}
"""What settings.py imports, beside dj-database-url; and, for scale, what the first
connection loads (the login side: azure-identity, MSAL, psycopg)."""

_IMPORT_PROBE = """
import json, sys, time
import django, django.conf, django.core.exceptions  # settings.py runs inside Django
began = time.perf_counter()
{code}
took = time.perf_counter() - began
print(json.dumps({{"ms": took * 1000, "loaded": [h for h in {heavy!r} if h in sys.modules]}}))
"""


def settings_import(rounds: int) -> dict[str, Any]:
    """Import time of settings.py's imports, each in a fresh interpreter, Django loaded.

    Rounds interleave the contenders (A B C A B C …) like every comparison here; the
    clock covers the imports only, not the interpreter's start or Django's.
    """
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    samples: dict[str, list[float]] = {k: [] for k in IMPORTS}
    loaded: dict[str, list[str]] = {}
    for _ in range(rounds):
        for label, code in IMPORTS.items():
            probe = _IMPORT_PROBE.format(code=code, heavy=HEAVY)
            done = subprocess.run(
                [sys.executable, "-c", probe],
                capture_output=True, text=True, check=True, env=env, cwd=ROOT,
            )  # fmt: skip
            out = json.loads(done.stdout)
            samples[label].append(out["ms"])
            loaded[label] = out["loaded"]
    result: dict[str, dict[str, Any]] = {
        label: {**summary(v), "samples": v, "loaded": loaded[label]} for label, v in samples.items()
    }
    for label, r in result.items():
        heavy = ", ".join(r["loaded"]) or "none of " + ", ".join(HEAVY)
        print(
            f"  settings import, {label}: median {r['median']:.1f} ms "
            f"(min {r['min']:.1f}, max {r['max']:.1f}; {rounds} fresh interpreters); loads {heavy}"
        )
    return result


def token_cost(login: TokenLogin, credential: Any) -> dict[str, float]:
    """Microseconds each side spends getting the password for one connection (no connect)."""
    from azure_postgresql_auth.core import get_entra_token

    def per_call(fn: Callable[[], Any], budget: float) -> float:
        n, began = 0, time.perf_counter()
        while time.perf_counter() - began < budget:
            fn()
            n += 1
        return (time.perf_counter() - began) / n * 1e6

    ours = per_call(lambda: login.role_for(login.token()), 0.5)
    theirs = per_call(lambda: get_entra_token(credential, SCOPE), 1.0)
    print(
        f"    token cost per connection: django_azure_pg {ours:.1f} us, azure-postgresql-auth {theirs:.1f} us "
        f"→ {theirs / ours:.0f}x"
    )
    return {"django_azure_pg": ours, "azure-postgresql-auth": theirs, "ratio": theirs / ours}


class SlowCliLikeCredential:
    """No cache, 300 ms per call: what AzureCliCredential costs (it spawns `az` each time).

    Each call asks the identity endpoint afresh, through a new credential (whose
    cache starts empty), after a 300 ms pause.
    """

    def __init__(self, client_id: str) -> None:
        self.client_id, self.calls = client_id, 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.calls += 1
        time.sleep(0.3)
        return ManagedIdentityCredential(client_id=self.client_id).get_token(*scopes, **kwargs)


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib not installed: no plot")
        return
    panels = [
        ("connect throughput", results["connect_throughput"]),
        ("pool request cycle", results["pool_throughput"]),
    ]
    vs = results.get("versus_azure_postgresql_auth", {})
    for label, entry in vs.items():
        if isinstance(entry, dict):
            panels += [
                (f"vs azure-postgresql-auth, {n}\n{label.split(' (')[0]}", data)
                for n, data in entry.items()
                if isinstance(data, dict) and "summary" in data
            ]
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, grid = plt.subplots(rows, cols, figsize=(4.4 * cols, 4.2 * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(panels) :]:
        ax.axis("off")
    for ax, (title, data) in zip(axes, panels, strict=False):
        names = list(data["summary"])
        med = [data["summary"][n]["median"] for n in names]
        lo = [m - data["summary"][n]["min"] for n, m in zip(names, med, strict=True)]
        hi = [data["summary"][n]["max"] - m for n, m in zip(names, med, strict=True)]
        ax.bar(range(len(names)), med, yerr=[lo, hi], capsize=6, color=["#0f6cbd", "#9e9e9e"])
        ax.set_xticks(range(len(names)), [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
        ax.set_title(f"{title}\nratio {data['ratio']:.2f}", fontsize=9)
        ax.set_ylabel("operations / s (median, min-max)")
        if max(med) / max(min(med), 1e-9) > 20:
            ax.set_yscale("log")
    fig.suptitle("django-azure-pg benchmarks (one run, same server)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"  plot: {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke run)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)}); results in bench/results/only.json",
    )
    parser.add_argument("--client", choices=CLIENT_SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--client-call", help=argparse.SUPPRESS)  # JSON: target, args, out
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args.client, json.loads(args.client_call))
    q = args.quick
    wanted = set(args.only or SECTIONS)
    rounds, seconds = (2, 0.5) if q else (7, 1.5)
    for key in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_POSTGRESQL_CLIENTID"):
        os.environ.pop(key, None)
    started = time.monotonic()
    with (
        IdentityEmulator(lifetime=3600) as emulator,
        LocalPostgres(ldap_port=emulator.ldap_port, max_connections=300) as pg,
    ):
        os.environ.update(emulator.app_service_env())
        pg.create_entra_role(ROLE)
        pg.create_database(DB, owner=ROLE)
        bench = Bench(emulator, pg)
        target = bench.target
        print("django-azure-pg benchmarks")
        sections: dict[str, Callable[[], Any]] = {
            "settings_import": lambda: settings_import(3 if q else 9),
            "connect_throughput": lambda: in_client(
                target, "connect_throughput", 3 if q else 15, 0.5 if q else 1.0, 4
            ),
            "identity_calls": lambda: bench.identity_calls(
                32, 50 if q else 1000, lifetime=2.0 if q else 12.0
            ),
            "slow_endpoint": lambda: bench.slow_endpoint_latency(
                8, 4.0 if q else 14.0, lifetime=1.2 if q else 4.0, latency=0.2
            ),
            "pool_throughput": lambda: in_client(target, "pool_throughput", rounds, seconds, 4),
            "versus_azure_postgresql_auth": lambda: in_client(
                target, "versus_azure_postgresql_auth", rounds if q else 5, 1.0, 4
            ),
            "grants_check": lambda: grants_check.measure(pg, *((100, 100) if q else (1000, 1000))),
            "telemetry": lambda: in_client(target, "telemetry", rounds, seconds, 4),
            "first_request": lambda: bench.first_request(3 if q else 9, latency=0.3, boot=1.0),
            "identity_outage": lambda: bench.identity_outage(4, 10.0 if q else 60.0),
        }
        assert tuple(sections) == SECTIONS
        results: dict[str, Any] = {
            "machine": {
                "python": platform.python_version(),
                "django": django.get_version(),
                "psycopg": psycopg.__version__,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
        }
        for name, run in sections.items():
            if name in wanted:
                results[name] = run()
    results["wall_seconds"] = time.monotonic() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "only" if args.only else "quick" if q else "latest"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
    if not q and not args.only:
        plot(results, ROOT / "docs" / "benchmarks.png")
    print_table(results)
    return 0


CLIENT_SECTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "connect_throughput": Clients.connect_throughput,
    "pool_throughput": Clients.pool_throughput,
    "versus_azure_postgresql_auth": Clients.versus_azure_postgresql_auth,
    "telemetry": Clients.telemetry_overhead,
}
"""The sections measured from a client process of their own (see :class:`Target`)."""


def in_client(target: Target, section: str, *args: Any) -> dict[str, Any]:
    """``section`` run in a fresh interpreter that holds only the clients; its result.

    Its output goes to this run's; the identity endpoint is found through this
    process's environment, as the emulator set it.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        call = {"target": dataclasses.asdict(target), "args": list(args), "out": str(out)}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        sys.stdout.flush()
        subprocess.run(
            [sys.executable, __file__, "--client", section, "--client-call", json.dumps(call)],
            check=True, env=env, cwd=ROOT,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def client_main(section: str, call: dict[str, Any]) -> int:
    clients = Clients(Target(**call["target"]))
    result = CLIENT_SECTIONS[section](clients, *call["args"])
    Path(call["out"]).write_text(json.dumps(result, default=str))
    return 0


SECTIONS = (
    "settings_import",
    "connect_throughput",
    "identity_calls",
    "slow_endpoint",
    "pool_throughput",
    "versus_azure_postgresql_auth",
    "grants_check",
    "telemetry",
    "first_request",
    "identity_outage",
)


def print_table(r: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    si = r.get("settings_import")
    if si:
        ours, theirs = si["django_azure_pg + from_env"], si["dj_database_url"]
        login = si["django_azure_pg._core.login (first connection)"]
        rows.append(
            (
                "0 settings import (Django loaded), ours vs dj_database_url",
                f"{ours['median']:.1f} ms vs {theirs['median']:.1f} ms (medians of "
                f"{ours['rounds']}); loads {', '.join(ours['loaded']) or 'none of ' + '/'.join(HEAVY)}"
                f"; the login side, for scale: {login['median']:.0f} ms",
                "tens of ms at most, none of them",
            )
        )
    ct = r.get("connect_throughput")
    if ct:
        for label, data in (("4 threads", ct), ("1 thread", ct.get("one_thread"))):
            if not data:
                continue
            spread = data["round_ratios"]
            within = spread["q1"] <= 1.0 <= spread["q3"]
            rows.append(
                (
                    f"1 connect throughput ratio (ours / stock), {label}",
                    f"{data['ratio']:.3f}; per round min {spread['min']:.3f} / quartiles "
                    f"{spread['q1']:.3f} {spread['median']:.3f} {spread['q3']:.3f} / max "
                    f"{spread['max']:.3f}: 1.0 {'within' if within else 'OUTSIDE'} the quartiles",
                    "1.0 within the per-round quartiles",
                )
            )
        cpu = ct.get("client_cpu_us")
        if cpu:
            rows.append(
                (
                    "1 connecting thread's CPU per connection, ours vs stock",
                    f"{cpu['django_azure_pg']['median']:.0f} us vs "
                    f"{cpu['stock + static token']['median']:.0f} us ({cpu['added_us']:+.0f} us)",
                    "for scale",
                )
            )
    ic = r.get("identity_calls")
    if ic:
        rows.append(
            (
                "2 identity calls, 32 threads x connections",
                f"{ic['calls']} calls for {ic['connections']} connections over "
                f"{ic['lifetimes']:.1f} lifetimes ({ic['calls_per_lifetime']:.2f}/lifetime)",
                f"≤ {ic['target_max_calls']}",
            )
        )
    se = r.get("slow_endpoint")
    if se:
        rows.append(
            (
                "3 token wait per connection once warm",
                f"p50 {se['p50_ms']:.3f} ms, p99 {se['p99_ms']:.3f} ms, "
                f"max {se['max_ms']:.3f} ms ({se['rotations']:.1f} rotations)",
                "p99 ≤ 1 ms",
            )
        )
    pt = r.get("pool_throughput")
    if pt:
        spread = pt["round_ratios"]
        rows.append(
            (
                "4 pool request cycle ratio (ours / stock)",
                f"{pt['ratio']:.3f}; per round min {spread['min']:.3f} / quartiles "
                f"{spread['q1']:.3f} {spread['median']:.3f} {spread['q3']:.3f} / max "
                f"{spread['max']:.3f}",
                "≥ 0.97",
            )
        )
        cpu = pt.get("client_cpu_us")
        if cpu:
            rows.append(
                (
                    "4 requesting thread's CPU per pool request, ours vs stock",
                    f"{cpu['django_azure_pg']['median']:.0f} us vs "
                    f"{cpu['stock + static token']['median']:.0f} us ({cpu['added_us']:+.0f} us)",
                    "for scale",
                )
            )
    for label, data in r.get("versus_azure_postgresql_auth", {}).items():
        if not isinstance(data, dict) or "token_cost_us" not in data:
            continue
        target = "≥ 50" if "slow" in label else "≥ 1.0"
        name = label.split(" (")[0]
        for n, d in data.items():
            if n != "token_cost_us" and isinstance(d, dict) and "ratio" in d:
                rows.append(
                    (
                        f"5 vs azure-postgresql-auth, {name}, {n}",
                        f"{d['ratio']:.2f}x connections/s",
                        target,
                    )
                )
        cost = data["token_cost_us"]
        rows.append(
            (
                f"5 vs azure-postgresql-auth, {name}, token cost",
                f"{cost['django_azure_pg']:.1f} us vs {cost['azure-postgresql-auth']:.0f} us = {cost['ratio']:.0f}x",
                target,
            )
        )
    g = r.get("grants_check")
    if g:
        before = g.get("verify_before")
        rows.append(
            (
                f"6 grant_aad_privileges --check, {g['tables']} tables + {g['sequences']} sequences",
                f"{g['command_after']['queries']} queries, {g['command_after']['seconds']:.3f} s"
                + (
                    f" (verify: {before['queries']} → {g['verify_after']['queries']} queries, "
                    f"{before['seconds']:.3f} → {g['verify_after']['seconds']:.3f} s)"
                    if before
                    else ""
                ),
                "≤ 10 queries",
            )
        )
    t = r.get("telemetry") or {}
    if "cost_ratio" in t:
        rows.append(
            (
                "7 connect path, SDK to memory / telemetry off (time per connection)",
                f"{t['cost_ratio']:.3f} (login path +{t['login_overhead_us']['added']:.0f} us: "
                f"{t['derived_cost_ratio']:.3f})",
                "< 1.02",
            )
        )
    fr = r.get("first_request")
    if fr:
        for key, label in (("fresh", "fresh process"), ("forked", "forked after setup()")):
            d = fr[key]
            spread = d["per_round_added_ms"]
            rows.append(
                (
                    f"8 first request, {label}, ours vs stock + password",
                    f"{d['django_azure_pg']['median']:.1f} vs {d['stock + password']['median']:.1f}"
                    f" ms ({d['added_ms']:+.1f} ms; per round quartiles {spread['q1']:+.1f} /"
                    f" {spread['q3']:+.1f})",
                    "within 50 ms",
                )
            )
    io = r.get("identity_outage")
    if io:
        rec = io["recovery_ms"]
        rows.append(
            (
                f"9 identity down, nothing cached ({io['outage_s']:g} s of HTTP 500)",
                f"failed requests median {io['failed_ms']['median']:.2f} ms after the first "
                f"({io['first_failed_ms']:.0f} ms); {io['identity_calls']} identity calls "
                f"(bound {io['identity_calls_bound']}); served again "
                + (f"{rec:.0f} ms after the return" if rec is not None else "NEVER"),
                "median < 500 ms, recovery < 2000 ms, calls ≤ bound",
            )
        )
    width = max((len(a) for a, _, _ in rows), default=0)
    print("\nSummary")
    for label, value, target in rows:
        print(f"  {label.ljust(width)}  {value}   (target {target})")
    print(f"  wall time {r['wall_seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())

"""`make conformance`: Django's own test suite with ENGINE = "django_azure_pg".

Downloads the source distribution of the installed Django (it ships tests/ and
runtests.py), starts a throwaway PostgreSQL whose TCP logins require a password
or a token, and the local identity emulator. Then it runs the selected test
labels four times in one invocation:

    stock backend, password login x plain connections / native pool
    django_azure_pg, token login  x plain connections / native pool

Our runs have no PASSWORD: every login — including creating, cloning (for
--parallel) and destroying the test databases — goes through the token path.
Prints a table per label and exits non-zero on any failure of ours that the
stock backend does not also have in the same mode.

``--gis`` does the same for GeoDjango: Django's ``gis_tests`` with the stock
PostGIS backend on a password against ``django_azure_pg.postgis`` on tokens
(PostGIS and GDAL/GEOS from scripts/ensure-postgis.sh).

``--token-only`` runs just our backend and fails on any failure: that is the
slice ``make test`` (and so CI) runs — ``backends transactions dbshell``,
plain and pool — so a regression in the Django integration fails CI, not only
``make conformance``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import django

from django_azure_pg_testing import IdentityEmulator, LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".conformance"
DEFAULT_LABELS = [
    "backends", "transactions", "queries", "migrations", "schema", "model_fields",
    "postgres_tests", "dbshell", "inspectdb", "introspection", "db_functions",
]  # fmt: skip
GIS_LABELS = ["gis_tests"]
ENGINES = {  # (stock, ours); --gis picks the PostGIS pair
    False: ("django.db.backends.postgresql", "django_azure_pg"),
    True: ("django.contrib.gis.db.backends.postgis", "django_azure_pg.postgis"),
}
TOKEN_ROLE, PASSWORD_ROLE, PASSWORD = "aad_conformance", "pw_conformance", "stock-password-123"

SETTINGS = """\
# Written by conformance/run.py
DATABASES = {{
    "default": {{
        "ENGINE": {engine!r}, "HOST": "127.0.0.1", "PORT": "{port}", "NAME": "django_tests",
        "USER": {user!r}, "PASSWORD": {password!r}, "OPTIONS": {options!r},
    }},
    "other": {{
        "ENGINE": {engine!r}, "HOST": "127.0.0.1", "PORT": "{port}", "NAME": "django_tests_other",
        "USER": {user!r}, "PASSWORD": {password!r}, "OPTIONS": {options!r},
    }},
}}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
"""

RESULT_LINE = re.compile(
    r"^(?P<name>\w+) \((?P<where>[\w.]+)\)(?:\n.*?)?(?: \.\.\. |\s*\.\.\.\s*)"
    r"(?P<status>ok|FAIL|ERROR|skipped|expected failure|unexpected success)",
    re.M,
)
SUMMARY = re.compile(r"^Ran (\d+) tests? in ([\d.]+)s", re.M)


def django_source() -> Path:
    version = django.get_version()
    target = WORK / f"django-{version}"
    if (target / "tests" / "runtests.py").exists():
        return target
    WORK.mkdir(exist_ok=True)
    print(f"downloading the Django {version} source distribution", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"django=={version}",
            "--dest",
            str(WORK),
        ],
        check=True,
    )
    archive = next(WORK.glob(f"[dD]jango-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.8.17+/3.9.17+/3.10.12+/3.11.4+
            tar.extractall(WORK, filter="data")
        else:  # an older patch release: the archive is Django's own sdist from PyPI
            tar.extractall(WORK)  # noqa: S202
    extracted = next(
        p for p in WORK.iterdir() if p.is_dir() and p.name.lower() == f"django-{version}"
    )
    if extracted != target:
        extracted.rename(target)
    return target


def run_suite(
    tests_dir: Path, name: str, settings: str, labels: list[str], parallel: int, env: dict[str, str]
) -> tuple[dict[str, Counter[str]], set[str], float, str]:
    module = f"conformance_{name}"
    (tests_dir / f"{module}.py").write_text(settings)
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "runtests.py",
            f"--settings={module}",
            f"--parallel={parallel}",
            "-v",
            "2",
            "--noinput",
            *labels,
        ],
        cwd=tests_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    (WORK / f"{name}.log").write_text(output)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    failed: set[str] = set()
    for m in RESULT_LINE.finditer(output):
        label = m["where"].split(".")[0]
        status = m["status"]
        counts[label][status] += 1
        if status in ("FAIL", "ERROR", "unexpected success"):
            failed.add(f"{m['where']}")
    ran = SUMMARY.search(output)
    if not ran:
        print(output[-3000:])
        raise SystemExit(
            f"{name}: runtests.py printed no summary (exit {result.returncode}); see {WORK / (name + '.log')}"
        )
    return counts, failed, elapsed, ran.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "labels", nargs="*", help="test labels (default: the database-heavy selection)"
    )
    parser.add_argument(
        "--all", action="store_true", help="run Django's whole suite (7-10 min per run)"
    )
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--modes", default="plain,pool", help="comma-separated: plain, pool")
    parser.add_argument(
        "--token-only",
        action="store_true",
        help="run only django_azure_pg (no stock comparison); any failure fails",
    )
    parser.add_argument(
        "--gis",
        action="store_true",
        help="GeoDjango: the PostGIS ENGINEs (stock vs django_azure_pg.postgis); "
        "default label gis_tests",
    )
    args = parser.parse_args(argv)
    labels = [] if args.all else (args.labels or (GIS_LABELS if args.gis else DEFAULT_LABELS))
    stock_engine, our_engine = ENGINES[args.gis]
    tests_dir = django_source() / "tests"
    started = time.monotonic()
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_POSTGRESQL_", "IDENTITY_", "PG", "DJANGO_SETTINGS"))
    }
    base_env["PYTHONPATH"] = os.pathsep.join([str(tests_dir.parent), str(ROOT)])
    with (
        IdentityEmulator(lifetime=3600) as emulator,
        LocalPostgres(ldap_port=emulator.ldap_port, max_connections=300) as pg,
    ):
        pg.create_entra_role(TOKEN_ROLE, superuser=True)
        emulator.allow_role(TOKEN_ROLE)
        pg.create_password_role(PASSWORD_ROLE, PASSWORD, superuser=True)
        token_env = {**base_env, **emulator.app_service_env()}
        results: dict[tuple[str, str], tuple[dict[str, Counter[str]], set[str], float, str]] = {}
        for mode in args.modes.split(","):
            options = {"pool": True} if mode == "pool" else {}
            runs = [
                ("stock", stock_engine, PASSWORD_ROLE, PASSWORD, base_env),
                ("azure_pg", our_engine, TOKEN_ROLE, "", token_env),
            ]
            for backend, engine, user, password, env in runs[1:] if args.token_only else runs:
                settings = SETTINGS.format(
                    engine=engine, port=pg.port, user=user, password=password, options=options
                )
                print(f"running {backend} ({engine}) / {mode} …", flush=True)
                before = emulator.stats.as_dict()
                results[(backend, mode)] = run_suite(
                    tests_dir,
                    f"{'gis_' if args.gis else ''}{backend}_{mode}",
                    settings,
                    labels,
                    args.parallel,
                    env,
                )
                if backend == "azure_pg":
                    after = emulator.stats.as_dict()
                    print(
                        f"  token logins accepted: {after['logins_accepted'] - before['logins_accepted']}, "
                        f"identity calls: {after['token_requests'] - before['token_requests']}",
                        flush=True,
                    )
    return report(results, args.modes.split(","), time.monotonic() - started)


def report(
    results: dict[tuple[str, str], tuple[dict[str, Counter[str]], set[str], float, str]],
    modes: list[str],
    elapsed: float,
) -> int:
    ours_only: list[str] = []
    total_passed = total_failed = 0
    for mode in modes:
        ours_counts, ours_failed, ours_t, ours_ran = results[("azure_pg", mode)]
        # Token-only: nothing to compare with, so every failure is ours.
        stock_counts, stock_failed, stock_t, stock_ran = results.get(
            ("stock", mode), ({}, set(), 0.0, "no")
        )
        stock = f"stock {stock_ran} tests in {stock_t:.0f} s" if stock_counts else "token only"
        print(f"\nmode: {mode}   ({stock}; django_azure_pg {ours_ran} tests in {ours_t:.0f} s)")
        header = f"{'label':<16} {'':>8} {'ran':>6} {'passed':>7} {'failed':>7} {'skipped':>8} {'xfail':>6}"
        print(header)
        print("-" * len(header))
        for label in sorted(set(stock_counts) | set(ours_counts)):
            rows = [("stock", stock_counts)] if ("stock", mode) in results else []
            for i, (backend, counts) in enumerate([*rows, ("ours", ours_counts)]):
                c = counts.get(label, Counter())
                failed = c["FAIL"] + c["ERROR"] + c["unexpected success"]
                ran = sum(c.values())
                print(
                    f"{label if i == 0 else '':<16} {backend:>8} {ran:>6} {c['ok']:>7} {failed:>7} "
                    f"{c['skipped']:>8} {c['expected failure']:>6}"
                )
                if backend == "ours":
                    total_passed += c["ok"]
                    total_failed += failed
        new = sorted(ours_failed - stock_failed)
        ours_only += [f"{mode}: {t}" for t in new]
        shared = sorted(ours_failed & stock_failed)
        if shared:
            print(
                f"failing with both backends ({len(shared)}; not ours): " + ", ".join(shared[:10])
            )
    print(f"\nconformance wall time {elapsed:.0f} s")
    if ours_only:
        print("FAILURES OF OURS ONLY:")
        for t in ours_only:
            print(f"  {t}")
    print(f"{total_passed} passed, {len(ours_only)} failed")
    return 1 if ours_only else 0


if __name__ == "__main__":
    sys.exit(main())

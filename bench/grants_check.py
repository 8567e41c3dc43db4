"""`grant_aad_privileges --check` on a large schema: queries issued and time, before and after.

"Before" is the per-privilege, per-relation ``verify()`` this project shipped
first (read from git history, commit 090a43b); "after" is today's one catalog
query per schema. Both run against the same database in the same process, and
the whole command is measured too. Queries are counted at psycopg's
``Cursor.execute``, which every query of the command and of Django goes through.

    python bench/grants_check.py [--tables 1000 --sequences 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(USE_TZ=True, INSTALLED_APPS=["django_azure_pg"], DATABASES={})
    django.setup()

import psycopg
from django.core.management import call_command
from django.db import connections
from django.db.utils import ConnectionHandler

from django_azure_pg._core import grants
from django_azure_pg_testing import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
FIRST_GRANTS = "090a43b"  # the release whose verify() made a query per privilege per relation
OWNER, OWNER_PW, ROLE, DB = "owner_bench", "owner-bench-pw", "aad_grants_bench", "grants_bench"


@contextlib.contextmanager
def counted() -> Iterator[list[int]]:
    """Count every query executed through psycopg in this process."""
    count = [0]
    original = psycopg.Cursor.execute

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield count
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def first_verify() -> Callable[..., Any] | None:
    """The original ``grants.verify`` from git history, or None outside a git checkout."""
    try:
        source = subprocess.run(
            ["git", "show", f"{FIRST_GRANTS}:django_azure_pg/grants.py"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "grants_first.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("grants_first", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.verify  # type: ignore[no-any-return]


def populate(pg: LocalPostgres, tables: int, sequences: int) -> None:
    pg.create_password_role(OWNER, OWNER_PW)
    pg.create_database(DB, owner=OWNER)
    pg.create_entra_role(ROLE)
    pg.execute(
        f"""SET ROLE {OWNER}; DO $$ BEGIN
          FOR i IN 1..{tables} LOOP EXECUTE format('CREATE TABLE t%s (id int, v text)', i); END LOOP;
          FOR i IN 1..{sequences} LOOP EXECUTE format('CREATE SEQUENCE s%s', i); END LOOP;
        END $$""",
        dbname=DB,
    )


def measure(pg: LocalPostgres, tables: int = 1000, sequences: int = 1000) -> dict[str, Any]:
    populate(pg, tables, sequences)
    entry = {
        "ENGINE": "django_azure_pg", "HOST": pg.host, "PORT": str(pg.port), "NAME": DB,
        "USER": OWNER, "PASSWORD": OWNER_PW, "OPTIONS": {"sslmode": "disable"},
    }  # fmt: skip
    connections.settings["grants_bench"] = ConnectionHandler().configure_settings(
        {"default": entry}
    )["default"]
    args = ["grant_aad_privileges", "--database", "grants_bench", "--role", ROLE]
    call_command(*args, stdout=io.StringIO())  # grant everything first: --check then passes
    result: dict[str, Any] = {"tables": tables, "sequences": sequences}

    started = time.perf_counter()
    with counted() as count:
        call_command(*args, "--check", stdout=io.StringIO())
    result["command_after"] = {"queries": count[0], "seconds": time.perf_counter() - started}

    plan = grants.Plan(role=ROLE, database=DB, owner=OWNER)
    with psycopg.connect(
        host=pg.host, port=pg.port, dbname=DB, user=OWNER, password=OWNER_PW, autocommit=True
    ) as conn:
        contenders = {"verify_after": grants.verify}
        before = first_verify()
        if before is not None:
            contenders["verify_before"] = before
        for name, verify in contenders.items():
            started = time.perf_counter()
            with counted() as count:
                report = verify(conn, plan)
            assert report.ok, f"{name}: the role should have everything"
            result[name] = {"queries": count[0], "seconds": time.perf_counter() - started}
    return result


def describe(r: dict[str, Any]) -> list[str]:
    lines = [f"grant_aad_privileges --check, {r['tables']} tables + {r['sequences']} sequences:"]
    c = r["command_after"]
    lines.append(f"  whole command (after)  {c['queries']:>6} queries  {c['seconds']:8.3f} s")
    for key in ("verify_before", "verify_after"):
        if key in r:
            v = r[key]
            lines.append(
                f"  verify() {key[7:]:<13} {v['queries']:>6} queries  {v['seconds']:8.3f} s"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--sequences", type=int, default=1000)
    args = parser.parse_args(argv)
    with LocalPostgres() as pg:
        print("\n".join(describe(measure(pg, args.tables, args.sequences))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

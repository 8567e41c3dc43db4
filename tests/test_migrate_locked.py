"""``manage.py migrate_locked``: instances that start it at once take turns on the suite's server.

Real processes (as App Service starts one per instance), real token logins through the
emulator, the real advisory lock. The test app's migration waits at a gate (another
advisory lock the test holds), so the test, not the clock, decides how long the migrating
process keeps its lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from django_azure_pg.management.commands.migrate_locked import LOCK_KEY
from django_azure_pg_testing import LocalPostgres

from .conftest import ROLE, until

REPO = Path(__file__).resolve().parent.parent
GATE = 4242
APPLIED = "Applying lockapp.0001_initial... OK"


@pytest.fixture
def database(postgres: LocalPostgres) -> str:
    name = f"lock_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name, owner=ROLE)
    return name


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftover_process() -> Iterator[None]:
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:  # a failed test left it waiting
            process.kill()
            process.wait()


def start(postgres: LocalPostgres, database: str, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.lockapp.settings",
        "PYTHONPATH": str(REPO),
        "LOCKAPP_PORT": str(postgres.port),
        "LOCKAPP_DB": database,
        "LOCKAPP_USER": ROLE,
        "LOCKAPP_GATE": str(GATE),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "migrate_locked", "--noinput", *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _STARTED.append(process)
    return process


def waiting(postgres: LocalPostgres, database: str) -> dict[int, int]:
    """Sessions waiting for an advisory lock in ``database``, by key."""
    rows = postgres.execute(
        "SELECT l.objid::bigint, count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s GROUP BY l.objid",
        (database,),
    )
    return {int(key): int(n) for key, n in rows}


def applied(postgres: LocalPostgres, database: str) -> list[str]:
    rows = postgres.execute(
        "SELECT name FROM django_migrations WHERE app = 'lockapp'", dbname=database
    )
    return [r[0] for r in rows]


@pytest.mark.integration
def test_three_at_once_one_migrates_the_others_wait_then_find_nothing_to_do(
    postgres: LocalPostgres, database: str
) -> None:
    gate: psycopg.Connection[object] = postgres.admin_connect(database)
    gate.execute("SELECT pg_advisory_lock(%s)", [GATE])
    runs = [start(postgres, database) for _ in range(3)]
    try:
        # One run migrates (and waits at the gate); the two others wait for its lock.
        queued = until(lambda: waiting(postgres, database) == {GATE: 1, LOCK_KEY: 2}, 60)
        assert queued, (waiting(postgres, database), [r.poll() for r in runs])
    finally:
        gate.execute("SELECT pg_advisory_unlock(%s)", [GATE])
        gate.close()
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    migrated = [out for out in outputs if APPLIED in out]
    assert len(migrated) == 1, outputs
    others = [out for out in outputs if APPLIED not in out]
    for out in others:  # seen waiting, then ran migrate, which had nothing left to do
        assert "Another migrate holds the migration lock" in out, out
        assert "Migration lock taken after" in out, out
        assert "No migrations to apply" in out, out
    assert "Another migrate holds" not in migrated[0]
    assert applied(postgres, database) == ["0001_initial"]
    assert waiting(postgres, database) == {}
    held = postgres.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", (LOCK_KEY,)
    )
    assert held == [(0,)]  # released by every run


@pytest.mark.integration
def test_lock_timeout_gives_up_without_migrating(postgres: LocalPostgres, database: str) -> None:
    holder: psycopg.Connection[object] = postgres.admin_connect(database)
    holder.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])  # another deploy is migrating
    try:
        run = start(postgres, database, "--lock-timeout", "0.5")
        out = run.communicate(timeout=20)[0]
    finally:
        holder.close()
    assert run.returncode == 1, out
    assert "still held the migration lock after 0.5 s (--lock-timeout)" in out, out
    assert postgres.execute("SELECT to_regclass('django_migrations')", dbname=database) == [(None,)]


def test_a_negative_lock_timeout_is_refused_before_connecting() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--lock-timeout must be zero"):
        call_command("migrate_locked", "--lock-timeout", "-1")

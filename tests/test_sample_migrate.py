"""The sample's deploy-time migrate: two runs never migrate at the same time."""

from __future__ import annotations

import importlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from django_azure_pg_testing import LocalPostgres

SAMPLE = Path(__file__).resolve().parent.parent / "sample_project"
OWNER, DB = "sample_owner", "sample_migrate"


def _clean_environ() -> dict[str, str]:
    drop = ("AZURE_POSTGRESQL_", "IDENTITY_", "MSI_", "AZURE_CLIENT", "DJANGO_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture(scope="module")
def site_env(postgres: LocalPostgres) -> dict[str, str]:
    password = secrets.token_urlsafe(16)
    postgres.create_password_role(OWNER, password, createdb=True)
    postgres.create_database(DB, owner=OWNER)
    return {
        **_clean_environ(),
        "AZURE_POSTGRESQL_HOST": postgres.host,
        "AZURE_POSTGRESQL_PORT": str(postgres.port),
        "AZURE_POSTGRESQL_NAME": DB,
        "AZURE_POSTGRESQL_USER": OWNER,
        "AZURE_POSTGRESQL_PASSWORD": password,
        "SECRET_KEY": "test-" + secrets.token_hex(8),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def _waiting_for_advisory_lock(pg: LocalPostgres) -> int:
    with pg.admin_connect(DB) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return int(row[0]) if row else 0


def _applied(pg: LocalPostgres) -> int:
    with pg.admin_connect(DB) as conn:
        exists = conn.execute("SELECT to_regclass('public.django_migrations')").fetchone()
        if not exists or exists[0] is None:
            return 0
        row = conn.execute("SELECT count(*) FROM django_migrations").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.integration
def test_migrate_locked_waits_for_a_concurrent_migrator(
    postgres: LocalPostgres, site_env: dict[str, str]
) -> None:
    lock_key = importlib.import_module(
        "sample_project.restaurants.management.commands.migrate_locked"
    ).LOCK_KEY

    holder: psycopg.Connection[object] = postgres.admin_connect(DB)
    holder.execute("SELECT pg_advisory_lock(%s)", [lock_key])  # another deploy is migrating
    process = subprocess.Popen(
        [sys.executable, "manage.py", "migrate_locked", "--noinput"],
        cwd=SAMPLE,
        env=site_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        # Wait for one of two events: the run queues behind the lock, or it exits.
        while not _waiting_for_advisory_lock(postgres) and process.poll() is None:
            assert time.monotonic() < deadline, "migrate_locked neither waited nor finished"
            time.sleep(0.05)
        assert process.poll() is None, f"migrate_locked did not wait:\n{process.stdout.read()}"  # type: ignore[union-attr]
        assert _applied(postgres) == 0  # nothing migrated while the other run holds the lock
    finally:
        holder.execute("SELECT pg_advisory_unlock(%s)", [lock_key])
        holder.close()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert _applied(postgres) > 0
    # Released at the end: a second run gets the lock at once and finds nothing to do.
    again = subprocess.run(
        [sys.executable, "manage.py", "migrate_locked", "--noinput"],
        cwd=SAMPLE,
        env=site_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "No migrations to apply" in again.stdout, again.stderr

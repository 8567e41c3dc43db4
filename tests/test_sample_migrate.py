"""The sample's deploy step runs the package's ``migrate_locked`` (it has no copy of its own)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from django_azure_pg_testing import LocalPostgres

SAMPLE = Path(__file__).resolve().parent.parent / "sample_project"
OWNER, DB = "sample_owner", "sample_migrate"


def _clean_environ() -> dict[str, str]:
    drop = ("AZURE_POSTGRESQL_", "IDENTITY_", "MSI_", "AZURE_CLIENT", "DJANGO_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.mark.integration
def test_sample_migrates_with_the_packages_migrate_locked(postgres: LocalPostgres) -> None:
    assert not (SAMPLE / "restaurants" / "management").exists()
    password = secrets.token_urlsafe(16)
    postgres.create_password_role(OWNER, password, createdb=True)
    postgres.create_database(DB, owner=OWNER)
    env = {
        **_clean_environ(),
        "AZURE_POSTGRESQL_HOST": postgres.host,
        "AZURE_POSTGRESQL_PORT": str(postgres.port),
        "AZURE_POSTGRESQL_NAME": DB,
        "AZURE_POSTGRESQL_USER": OWNER,  # the owner migrates (as deploy.sh does)
        "AZURE_POSTGRESQL_PASSWORD": password,
        "SECRET_KEY": "test-" + secrets.token_hex(8),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate_locked", "--noinput"],
        cwd=SAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Applying restaurants.0001_initial... OK" in done.stdout
    owners = postgres.execute(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", dbname=DB
    )
    assert owners == [(OWNER,)]

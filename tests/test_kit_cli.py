"""The kit's command-line stack, as a user rehearses grants with it (issue 23)."""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.db.utils import ConnectionHandler

pytestmark = pytest.mark.integration


@pytest.fixture
def stack() -> Iterator[dict[str, str]]:
    """``python -m django_azure_pg_testing --postgres --role aad_app --owner app_owner``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django_azure_pg_testing",
            "--postgres",
            "--role",
            "aad_app",
            "--owner",
            "app_owner",
            "--database",
            "rehearsal",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    printed: dict[str, str] = {}
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("export "):
            key, _, value = line[len("export ") :].strip().partition("=")
            printed[key] = shlex.split(value)[0]
        if line.startswith("# Ctrl-C"):
            break
    printed["_output"] = "".join(lines)
    try:
        yield printed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def owner_connect(env: dict[str, str]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=env["AZURE_POSTGRESQL_HOST"],
        port=int(env["AZURE_POSTGRESQL_PORT"]),
        dbname=env["AZURE_POSTGRESQL_NAME"],
        user="app_owner",
        password=env["AZURE_PG_OWNER_PASSWORD"],
        sslmode="require",
        autocommit=True,
    )


def test_cli_stack_prints_an_owner_login_and_grants_can_be_rehearsed(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, django_db_blocker: Any
) -> None:
    # One migration story (issue 31): the owner migrates, the app role gets DML.
    printed = stack["_output"]
    assert "grant_aad_privileges --owner-user app_owner --role aad_app\n" in printed
    assert (
        'AZURE_POSTGRESQL_USER=app_owner AZURE_POSTGRESQL_PASSWORD="$AZURE_PG_OWNER_PASSWORD" '
        "python manage.py migrate" in printed
    )
    assert "--migrate" not in printed
    with owner_connect(stack) as conn:  # the printed login works: the owner's tables
        conn.execute("CREATE TABLE restaurant (id int PRIMARY KEY)")
        assert conn.execute("SELECT current_user").fetchone() == ("app_owner",)

    entry = {
        "ENGINE": "django_azure_pg",
        "HOST": stack["AZURE_POSTGRESQL_HOST"],
        "PORT": stack["AZURE_POSTGRESQL_PORT"],
        "NAME": stack["AZURE_POSTGRESQL_NAME"],
        "USER": stack["AZURE_POSTGRESQL_USER"],
    }
    connections.settings["rehearsal"] = ConnectionHandler().configure_settings({"default": entry})[
        "default"
    ]
    monkeypatch.setenv("AZURE_PG_OWNER_PASSWORD", stack["AZURE_PG_OWNER_PASSWORD"])
    out = io.StringIO()
    try:
        with django_db_blocker.unblock():
            call_command(
                "grant_aad_privileges",
                "--database",
                "rehearsal",
                "--owner-user",
                "app_owner",
                "--migrate",
                stdout=out,
            )
    finally:
        connections.settings.pop("rehearsal", None)

    with owner_connect(stack) as conn:
        row = conn.execute(
            "SELECT has_table_privilege('aad_app', 'restaurant', 'SELECT'), "
            "has_schema_privilege('aad_app', 'public', 'CREATE')"
        ).fetchone()
    assert row == (True, True), out.getvalue()


def test_owner_needs_postgres() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "django_azure_pg_testing", "--owner", "x"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2 and "--owner needs --postgres" in done.stderr

"""The kit's command-line stack, as a user rehearses grants with it (issue 23)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.db.utils import ConnectionHandler

from django_azure_pg_testing.postgres import free_port

pytestmark = pytest.mark.integration


STACK = ["--postgres", "--role", "aad_app", "--owner", "app_owner", "--database", "rehearsal"]


@contextlib.contextmanager
def running(*args: str) -> Iterator[dict[str, str]]:
    """``python -m django_azure_pg_testing <args>`` until the block ends; what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "django_azure_pg_testing", *args],
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


@pytest.fixture
def stack() -> Iterator[dict[str, str]]:
    """``python -m django_azure_pg_testing --postgres --role aad_app --owner app_owner``."""
    with running(*STACK) as printed:
        yield printed


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


def test_fixed_ports_and_state_print_the_same_variables_at_every_start(tmp_path: Path) -> None:
    db_port, identity_port, state = free_port(), free_port(), tmp_path / "kit.json"
    fixed = (
        "--db-port",
        str(db_port),
        "--identity-port",
        str(identity_port),
        "--state",
        str(state),
    )
    with running(*STACK, *fixed) as first, owner_connect(first) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app_owner",)
    assert state.stat().st_mode & 0o077 == 0  # the kept secrets are the user's alone
    with running(*STACK, *fixed) as second, owner_connect(second) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    variables = {k: v for k, v in first.items() if not k.startswith("_")}
    assert variables == {k: v for k, v in second.items() if not k.startswith("_")}
    assert variables["AZURE_POSTGRESQL_PORT"] == str(db_port)
    assert variables["IDENTITY_ENDPOINT"] == f"http://127.0.0.1:{identity_port}/msi/token"
    assert set(json.loads(state.read_text())) == {
        "identity_header", "owner_password", "client_id", "object_id"
    }  # fmt: skip
    with running(*STACK) as other:  # without --state: new secrets each start
        assert other["IDENTITY_HEADER"] != variables["IDENTITY_HEADER"]


def manage(stack: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` of an app configured by nothing but the printed variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_POSTGRESQL_", "IDENTITY_", "MSI_", "AZURE_PG_"))
    }
    printed = {k: v for k, v in stack.items() if not k.startswith("_")}
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env={
            **clean,
            **printed,
            **env,
            "DJANGO_SETTINGS_MODULE": "tests.kit_settings",
            "PYTHONPATH": os.pathsep.join(sys.path),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


WHO = "from django.db import connection; print(connection.cursor().connection.info.user)"


def test_create_aad_principal_can_be_rehearsed(stack: dict[str, str]) -> None:
    found = re.search(r"the app's managed identity: (\S+), object id (\S+)", stack["_output"])
    assert found, stack["_output"]
    object_id = found.group(2)
    for role, oid in (("aad_new", object_id), ("aad_someone_else", str(uuid.uuid4()))):
        created = manage(
            stack, "create_aad_principal", role, "--oid", oid, "--owner-user", "app_owner"
        )
        assert created.returncode == 0 and f"Created role '{role}'" in created.stdout, created
    # The identity the app runs as logs in to the role mapped to its object id ...
    login = manage(stack, "shell", "-c", WHO, AZURE_POSTGRESQL_USER="aad_new")
    assert login.returncode == 0 and login.stdout.split()[-1:] == ["aad_new"], login.stderr
    # ... and not to one mapped to another principal.
    refused = manage(stack, "shell", "-c", WHO, AZURE_POSTGRESQL_USER="aad_someone_else")
    assert refused.returncode != 0 and "aad_someone_else" in refused.stderr


COUNT = "from django.contrib.contenttypes.models import ContentType as C; print(C.objects.count())"


def test_the_migration_story_of_deploy_your_app(stack: dict[str, str]) -> None:
    """docs/deploy-your-app.md's rehearsal: the owner migrates (migrate_locked), the grants
    give the app role DML, the app role reads the owner's tables."""
    owner = {
        "AZURE_POSTGRESQL_USER": "app_owner",
        "AZURE_POSTGRESQL_PASSWORD": stack["AZURE_PG_OWNER_PASSWORD"],
    }
    migrated = manage(stack, "migrate_locked", "--noinput", **owner)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "Applying contenttypes.0001_initial... OK" in migrated.stdout
    granted = manage(stack, "grant_aad_privileges", "--owner-user", "app_owner")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    checked = manage(stack, "grant_aad_privileges", "--owner-user", "app_owner", "--check")
    assert checked.returncode == 0 and "Status: OK" in checked.stdout, checked
    read = manage(stack, "shell", "-c", COUNT)  # as aad_app, with a token
    assert read.returncode == 0 and read.stdout.split()[-1:] == ["1"], (
        read.stderr
    )  # post_migrate's row
    with owner_connect(stack) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    assert owners == [("app_owner",)]

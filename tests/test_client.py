"""manage.py dbshell: psql logs in with a fresh token passed in PGPASSWORD, never in argv."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from psycopg.conninfo import conninfo_to_dict

from django_azure_pg_testing import Identity, IdentityEmulator

from .conftest import ITEST_DB, ROLE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("psql") is None, reason="psql client not installed"),
]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def run(args: list[str], *a: Any, **kw: Any) -> Any:
        calls.append((list(args), dict(kw.get("env") or {})))
        return real(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_dbshell_runs_psql_through_the_token_path(
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
    spy: list[tuple[list[str], dict[str, str]]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    add_alias(
        "shell",
        NAME=ITEST_DB,
        USER=ROLE,
        OPTIONS={"client_id": identity.client_id, "application_name": "dbshell-test"},
    )
    call_command(
        "dbshell",
        "--database",
        "shell",
        "--",
        "-At",
        "-c",
        "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    assert capfd.readouterr().out.strip() == f"{ROLE} true"
    (args, env) = spy[-1]
    token = env["PGPASSWORD"]
    assert token in emulator.issued_tokens()
    assert all(token not in arg for arg in args)
    conninfo = conninfo_to_dict(args[1])
    assert args[0] == "psql" and conninfo["user"] == ROLE and conninfo["sslmode"] == "require"
    assert conninfo["application_name"] == "dbshell-test"
    assert "client_id" not in " ".join(args)


def test_dbshell_keeps_django_options(
    add_alias: Callable[..., str],
    identity: Identity,
    spy: list[tuple[list[str], dict[str, str]]],
    capfd: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text("")
    add_alias(
        "shell",
        NAME=ITEST_DB,
        USER=ROLE,
        OPTIONS={
            "client_id": identity.client_id,
            "sslmode": "require",
            "passfile": str(passfile),
        },
    )
    call_command("dbshell", "--database", "shell", "--", "-At", "-c", "SELECT 1")
    assert capfd.readouterr().out.strip() == "1"
    (args, _) = spy[-1]
    conninfo = conninfo_to_dict(args[1])
    assert conninfo["passfile"] == str(passfile)
    assert conninfo["sslmode"] == "require"

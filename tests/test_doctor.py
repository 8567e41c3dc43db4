"""azure_pg_doctor: a working setup, and the failures users actually hit."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_azure_pg import errors
from django_azure_pg._core import diagnosis
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE

pytestmark = pytest.mark.integration


def doctor(alias: str, fmt: str = "text") -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("azure_pg_doctor", "--database", alias, "--format", fmt, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_working_setup(
    add_alias: Callable[..., str], identity: Identity, emulator: IdentityEmulator
) -> None:
    add_alias("doc", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 0, text
    assert f"ManagedIdentityCredential(client_id={identity.client_id})" in text
    assert "IDENTITY_HEADER = (set)" in text
    assert emulator.identity_header not in text
    assert f"oid = {identity.object_id}" in text
    assert "current_user: aad_tests" in text and "tls: True" in text
    assert "Result: OK" in text
    for token in emulator.issued_tokens():
        assert token not in text

    data = json.loads(doctor("doc", "json")[0])
    assert data["ok"] is True
    assert [s["name"] for s in data["steps"]] == [
        "settings",
        "credential",
        "token",
        "cache",
        "role",
        "connect",
    ]
    cache = data["steps"][3]
    assert cache["status"] == "ok"
    detail = cache["detail"]
    assert detail["token_cached"] is True and detail["token_usable"] is True
    assert 0 <= detail["token_age_s"] < 60
    assert 0 < detail["token_remaining_s"] <= emulator.lifetime
    assert 0 < detail["next_refresh_in_s"] < detail["token_remaining_s"]
    assert detail["last_fetch_error"] is None and detail["throttled_for_s"] == 0
    assert detail["refusal_refresh_available_in_s"] == 0
    assert "[ok]   cache" in text and "token_remaining_s:" in text


def test_missing_role(add_alias: Callable[..., str], identity: Identity) -> None:
    add_alias("doc", NAME=ITEST_DB, USER="aad_ghost", OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 1
    assert "[FAIL] connect" in text
    assert 'role "aad_ghost" does not exist' in text  # Azure's text, sent by the kit's front
    advice = diagnosis.ADVICE[errors.RoleMissing]
    assert f"likely cause: {advice.cause}" in text
    # The fix names the role and the identity's object id (issue 30), not placeholders.
    assert f"fix: {advice.filled('aad_ghost', identity.object_id).fix}" in text
    assert f"create_aad_principal aad_ghost --oid {identity.object_id}" in text


def test_role_not_mapped_to_identity(
    postgres: LocalPostgres, add_alias: Callable[..., str], identity: Identity
) -> None:
    postgres.create_entra_role("aad_someone_else")  # exists, but for another principal
    add_alias(
        "doc", NAME=ITEST_DB, USER="aad_someone_else", OPTIONS={"client_id": identity.client_id}
    )
    text, code = doctor("doc")
    assert code == 1
    advice = diagnosis.ADVICE[errors.TokenNotForRole]
    assert f"likely cause: {advice.cause}" in text
    assert f"object id {identity.object_id}" in text  # the principal, from the token's claims


def test_broken_identity_endpoint(
    add_alias: Callable[..., str], identity: Identity, emulator: IdentityEmulator
) -> None:
    add_alias(
        "doc",
        NAME=ITEST_DB,
        USER=ROLE,
        OPTIONS={"client_id": identity.client_id, "token_timeout": 1},
    )
    emulator.set_fault("hang")
    try:
        text, code = doctor("doc")
    finally:
        emulator.clear_faults()
    assert code == 1
    assert "[FAIL] token" in text
    assert f"likely cause: {diagnosis.ADVICE[errors.TokenTimeout].cause}" in text
    assert "[warn] cache" in text and "token_cached: False" in text
    assert "[skip] connect" in text


def test_missing_schema_privileges(
    postgres: LocalPostgres, add_alias: Callable[..., str], identity: Identity
) -> None:
    postgres.execute("CREATE DATABASE doc_noschema")  # public owned by pg_database_owner
    add_alias("doc", NAME="doc_noschema", USER=ROLE, OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 0  # the app can connect and read and write; the owner migrates
    assert "[ok]   connect" in text
    assert "public_create: False" in text
    assert "run by the tables' owner" in text  # the one migration story, not a warning
    data: dict[str, Any] = json.loads(doctor("doc", "json")[0])
    assert data["steps"][-1]["status"] == "ok"


# -- what manage.py check finds, explained by the doctor too (issue 23) ---------


def test_leftover_password_is_explained(add_alias: Callable[..., str]) -> None:
    add_alias("doc", NAME=ITEST_DB, USER=ROLE, PASSWORD="not-a-token")
    text, _ = doctor("doc")
    assert "[warn] check django_azure_pg.W010" in text
    assert "likely cause: DATABASES['doc'] has a PASSWORD, so Entra token login is OFF" in text
    assert "SILENCED_SYSTEM_CHECKS" in text
    assert "not-a-token" not in text


def test_token_in_password_is_a_failure_that_never_shows_it(
    add_alias: Callable[..., str], identity: Identity, emulator: IdentityEmulator
) -> None:
    token, _ = emulator.issue(identity)
    add_alias("doc", NAME=ITEST_DB, USER=ROLE, PASSWORD=token)
    text, code = doctor("doc")
    assert code == 1
    assert "[FAIL] check django_azure_pg.E010" in text
    assert "fix: Remove PASSWORD" in text
    for piece in token.split("."):
        assert piece not in text


def test_missing_host_names_its_variable(add_alias: Callable[..., str], identity: Identity) -> None:
    add_alias("doc", HOST="", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 1
    assert "[FAIL] check django_azure_pg.E011" in text
    assert "AZURE_POSTGRESQL_HOST" in text
    assert json.loads(doctor("doc", "json")[0])["steps"][0]["name"] == "check django_azure_pg.E011"


# -- the right culprit (issue 30) ---------------------------------------------------


def test_identity_endpoint_refusing_connections_is_the_endpoints_fault(
    add_alias: Callable[..., str], identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_azure_pg_testing.postgres import free_port

    closed = f"http://127.0.0.1:{free_port()}/msi/token"  # nothing listens there
    monkeypatch.setenv("IDENTITY_ENDPOINT", closed)
    add_alias("doc", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 1
    assert "[FAIL] token" in text
    assert f"identity_endpoint: {closed}" in text and "endpoint_answer: none" in text
    advice = diagnosis.ADVICE[diagnosis.IdentityEndpointUnreachable]
    assert f"likely cause: {advice.cause}" in text
    assert "firewall" not in text  # the database's advice
    assert "[skip] connect" in text


def test_identity_endpoint_http_500_is_not_a_missing_identity(
    add_alias: Callable[..., str], identity: Identity, emulator: IdentityEmulator
) -> None:
    add_alias("doc", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    emulator.set_fault("error")  # HTTP 500 to every token request
    try:
        text, code = doctor("doc")
    finally:
        emulator.clear_faults()
    assert code == 1
    assert f"identity_endpoint: {emulator.url}" in text
    assert "endpoint_answer: HTTP 500" in text
    advice = diagnosis.ADVICE[diagnosis.IdentityEndpointFailed]
    assert f"likely cause: {advice.cause}" in text
    assert "Enable a managed identity" not in text
    assert emulator.identity_header not in text


def test_a_refused_password_gets_password_advice(
    postgres: LocalPostgres, add_alias: Callable[..., str]
) -> None:
    postgres.create_password_role("doc_pw", "the-right-one")
    add_alias("doc", NAME=ITEST_DB, USER="doc_pw", PASSWORD="leftover")
    text, code = doctor("doc")
    assert code == 1
    assert "[FAIL] connect" in text
    advice = diagnosis.ADVICE[errors.PasswordRefused]
    assert f"likely cause: {advice.cause}" in text and f"fix: {advice.fix}" in text
    assert diagnosis.ADVICE[diagnosis.RefusedUnspecified].fix not in text  # token-role advice
    assert "leftover" not in text


def test_a_failing_system_check_does_not_stop_the_doctor(
    add_alias: Callable[..., str], identity: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `manage.py azure_pg_doctor` runs it from the command line (system checks and all)."""
    from django.core import checks

    from django_azure_pg.management.commands.azure_pg_doctor import Command

    def failing(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
        return [checks.Error("Something else is broken.", hint="Fix it.", id="other.E001")]

    add_alias("doc", HOST="", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    checks.register(failing)
    try:
        with pytest.raises(SystemExit):
            Command().run_from_argv(["manage.py", "azure_pg_doctor", "--database", "doc"])
    finally:
        checks.registry.registry.registered_checks.discard(failing)
    text = capsys.readouterr().out
    assert "[FAIL] check django_azure_pg.E011" in text  # this alias's own check, explained
    assert "[warn] check other.E001" in text and "Something else is broken." in text
    assert "[ok]   token" in text  # and the diagnosis went on
    assert "SystemCheckError" not in text


def test_messages_show_the_users_alias(add_alias: Callable[..., str], identity: Identity) -> None:
    add_alias("doc", NAME=ITEST_DB, USER="aad_ghost", OPTIONS={"client_id": identity.client_id})
    text, _ = doctor("doc")
    assert "Database alias 'doc'" in text
    assert ":doctor" not in text


def test_empty_user_says_the_role_came_from_the_token_and_fills_the_fix(
    add_alias: Callable[..., str], identity: Identity
) -> None:
    add_alias("doc", NAME=ITEST_DB, USER="", OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 1  # the identity's own name has no role on the server
    assert "from: the token's claims (USER is empty)" in text
    assert f"role {identity.name!r} (taken from the token's claims: USER is empty)" in text
    assert f"create_aad_principal {identity.name} --oid {identity.object_id}" in text
    assert "<USER>" not in text and "<object id>" not in text


def test_a_server_out_of_connection_slots(
    postgres: LocalPostgres,
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
) -> None:
    postgres.create_entra_role("aad_doc_full")
    postgres.execute('ALTER ROLE "aad_doc_full" CONNECTION LIMIT 0')
    emulator.allow_role("aad_doc_full", identity)
    add_alias("doc", NAME=ITEST_DB, USER="aad_doc_full", OPTIONS={"client_id": identity.client_id})
    text, code = doctor("doc")
    assert code == 1
    assert "[FAIL] connect" in text
    advice = diagnosis.ADVICE[errors.TooManyConnections]
    assert f"likely cause: {advice.cause}" in text and "6432" in text


def test_a_throttling_identity_endpoint(
    add_alias: Callable[..., str], identity: Identity, emulator: IdentityEmulator
) -> None:
    add_alias(
        "doc",
        NAME=ITEST_DB,
        USER=ROLE,
        OPTIONS={"client_id": identity.client_id, "token_timeout": 2},
    )
    emulator.retry_after = 0
    emulator.set_fault("throttle")  # HTTP 429 to every token request
    try:
        text, code = doctor("doc")
    finally:
        emulator.clear_faults()
        emulator.retry_after = 5
    assert code == 1
    assert f"identity_endpoint: {emulator.url}" in text
    assert "endpoint_answer: HTTP 429" in text
    assert f"likely cause: {diagnosis.ADVICE[errors.TokenThrottled].cause}" in text
    assert "Enable a managed identity" not in text

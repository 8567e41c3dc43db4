"""grant_aad_privileges and create_aad_principal against the real test PostgreSQL."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from psycopg import sql

from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

pytestmark = pytest.mark.integration

OWNER_PW = "owner-pw-123"


@dataclass
class Setup:
    db: str
    owner: str
    role: str
    pg: LocalPostgres
    identity: Identity
    emulator: IdentityEmulator
    add_alias: Callable[..., str]

    def _run(self, user: str, password: str, statement: str | sql.Composable) -> list[Any]:
        with psycopg.connect(
            host=self.pg.host, port=self.pg.port, user=user, password=password,
            dbname=self.db, sslmode="require", autocommit=True,
        ) as conn:  # fmt: skip
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def owner_sql(self, statement: str | sql.Composable) -> None:
        self._run(self.owner, OWNER_PW, statement)

    def app(self, statement: str) -> list[Any]:
        """Run SQL as the app role, logging in with a token like the app does."""
        token, _ = self.emulator.issue(self.identity)
        return self._run(self.role, token, statement)


@pytest.fixture
def setup(
    postgres: LocalPostgres,
    emulator: IdentityEmulator,
    identity: Identity,
    add_alias: Callable[..., str],
) -> Setup:
    suffix = uuid.uuid4().hex[:8]
    s = Setup(
        f"grant_{suffix}",
        f"owner_{suffix}",
        f"aad_{suffix}",
        postgres,
        identity,
        emulator,
        add_alias,
    )
    postgres.create_password_role(s.owner, OWNER_PW)
    postgres.create_database(s.db, owner=s.owner)
    postgres.create_entra_role(s.role)
    emulator.allow_role(s.role, identity)
    s.owner_sql("CREATE TABLE restaurant (id serial PRIMARY KEY, name text)")
    s.owner_sql("CREATE SEQUENCE ticket_seq")
    s.owner_sql("CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1'")
    s.owner_sql("REVOKE EXECUTE ON FUNCTION add_one(int) FROM PUBLIC")
    add_alias("owner", NAME=s.db, USER=s.owner, PASSWORD=OWNER_PW)
    add_alias("app", NAME=s.db, USER=s.role, OPTIONS={"client_id": identity.client_id})
    return s


def grant(*args: str, **kwargs: Any) -> str:
    out = io.StringIO()
    call_command("grant_aad_privileges", *args, stdout=out, **kwargs)
    return out.getvalue()


def test_role_cannot_use_owner_objects_until_granted(setup: Setup) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("SELECT * FROM restaurant")
    output = grant("--database", "owner", "--role", setup.role)
    assert "Status: OK" in output
    assert "tables 1/1" in output and "sequences 2/2" in output
    setup.app("INSERT INTO restaurant (name) VALUES ('Contoso Café')")
    assert setup.app("SELECT name FROM restaurant") == [("Contoso Café",)]
    assert setup.app("SELECT nextval('ticket_seq')") == [(1,)]
    assert setup.app("SELECT add_one(41)") == [(42,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("CREATE TABLE mine (id int)")  # no --migrate: no CREATE


def test_default_privileges_cover_later_tables(setup: Setup) -> None:
    grant("--database", "owner", "--role", setup.role)
    setup.owner_sql("CREATE TABLE menu (id bigserial PRIMARY KEY, dish text)")
    setup.app("INSERT INTO menu (dish) VALUES ('soup')")
    assert setup.app("SELECT count(*) FROM menu") == [(1,)]


def test_no_default_privileges(setup: Setup) -> None:
    grant("--database", "owner", "--role", setup.role, "--no-default-privileges")
    setup.owner_sql("CREATE TABLE later (id int)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("SELECT * FROM later")


def test_migrate_lets_the_role_run_django_migrations(setup: Setup) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("CREATE TABLE t (id int)")  # PostgreSQL 15: no CREATE on public
    grant("--database", "owner", "--role", setup.role, "--migrate")
    call_command("migrate", "contenttypes", database="app", verbosity=0)
    assert setup.app("SELECT count(*) > 0 FROM django_content_type") == [(True,)]


def test_read_only(setup: Setup) -> None:
    grant("--database", "owner", "--role", setup.role, "--read-only")
    assert setup.app("SELECT count(*) FROM restaurant") == [(0,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("INSERT INTO restaurant (name) VALUES ('x')")


def test_dry_run_changes_nothing(setup: Setup) -> None:
    output = grant("--database", "owner", "--role", setup.role, "--dry-run")
    assert f'GRANT CONNECT, TEMPORARY ON DATABASE "{setup.db}" TO "{setup.role}";' in output
    assert f'ALTER DEFAULT PRIVILEGES FOR ROLE "{setup.owner}" IN SCHEMA "public" GRANT' in output
    assert "nothing executed" in output
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("SELECT * FROM restaurant")


def test_check_exit_status(setup: Setup) -> None:
    with pytest.raises(CommandError) as info:
        grant("--database", "owner", "--role", setup.role, "--check")
    assert info.value.returncode == 1
    grant("--database", "owner", "--role", setup.role)
    assert "Status: OK — checked only" in grant(
        "--database", "owner", "--role", setup.role, "--check"
    )


def test_idempotent(setup: Setup) -> None:
    first = json.loads(grant("--database", "owner", "--role", setup.role, "--format", "json"))
    assert first["ok"] and first["changes"]
    second = json.loads(grant("--database", "owner", "--role", setup.role, "--format", "json"))
    assert second["ok"] and second["changes"] == []
    assert "nothing changed" in grant("--database", "owner", "--role", setup.role)


def test_hostile_role_and_schema_names(setup: Setup) -> None:
    role = 'x"; DROP TABLE restaurant; --'
    schema = 's"; DROP TABLE restaurant; --'
    setup.pg.create_entra_role(role)
    setup.owner_sql(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    setup.owner_sql(sql.SQL("CREATE TABLE {}.t (id int)").format(sql.Identifier(schema)))
    output = grant("--database", "owner", "--role", role, "--schema", "public", "--schema", schema)
    assert "Status: OK" in output
    setup.owner_sql("SELECT count(*) FROM restaurant")  # still there
    rows = setup.pg.execute(
        "SELECT has_table_privilege(%s, %s, 'SELECT')",
        (role, sql.Identifier(schema, "t").as_string(None)),
        dbname=setup.db,
    )
    assert rows == [(True,)]


def test_missing_role_and_schema_apply_nothing(setup: Setup) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        grant("--database", "owner", "--role", "aad_nobody")
    with pytest.raises(CommandError, match=r"Schema.*not found.*missing"):
        grant(
            "--database", "owner", "--role", setup.role, "--schema", "public", "--schema", "missing"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("SELECT * FROM restaurant")


def test_connection_name_and_owner_user_from_env(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CommandError, match="AZURE_PG_OWNER_PASSWORD"):
        grant("--database", "app", "--owner-user", setup.owner)
    monkeypatch.setenv("AZURE_PG_OWNER_PASSWORD", OWNER_PW)
    # --database app: the app alias's USER is the role; the owner logs in with a password.
    output = grant("--database", "app", "--owner-user", setup.owner)
    assert f"Role '{setup.role}'" in output and "Status: OK" in output
    output = grant(
        "--database", "owner", "--connection", setup.role.removeprefix("aad_"), "--check"
    )
    assert "Status: OK" in output


def test_refuses_to_grant_as_the_role_itself(setup: Setup) -> None:
    with pytest.raises(CommandError, match="must run as the objects' owner"):
        grant("--database", "app")


def test_create_aad_principal(setup: Setup) -> None:
    def create(*args: str) -> str:
        out = io.StringIO()
        call_command("create_aad_principal", *args, "--database", "owner", stdout=out)
        return out.getvalue()

    with pytest.raises(CommandError, match="not an Azure Database for PostgreSQL"):
        create("aad_new", "--oid", "00000000-0000-0000-0000-000000000001")
    setup.pg.install_pgaadauth_stand_in()  # Azure's function exists only on Azure
    try:
        output = create(
            "aad_new", "--oid", "00000000-0000-0000-0000-000000000001", "--type", "service"
        )
        assert "Created role 'aad_new'" in output
        assert setup.pg.execute("SELECT 1 FROM pg_roles WHERE rolname = 'aad_new'") == [(1,)]
        assert "already exists" in create(
            "aad_new", "--oid", "00000000-0000-0000-0000-000000000001"
        )
    finally:
        setup.pg.execute(
            "DROP FUNCTION pgaadauth_create_principal_with_oid, pgaadauth_create_principal"
        )


def test_check_names_the_owner_of_what_cannot_be_granted(setup: Setup) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"
    setup.pg.create_password_role(other, OWNER_PW)
    setup.pg.execute(
        sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(other)),
        dbname=setup.db,
    )
    setup._run(other, OWNER_PW, "CREATE TABLE theirs (id int)")
    with pytest.raises(
        CommandError, match=rf"public\.theirs \(owned by '{other}'\).*Nothing was changed"
    ):
        grant("--database", "owner", "--role", setup.role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("SELECT * FROM restaurant")  # the transaction was rolled back
    with pytest.raises(CommandError):
        grant("--database", "owner", "--role", setup.role, "--check")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "grant_aad_privileges",
            "--database",
            "owner",
            "--role",
            setup.role,
            "--check",
            "--format",
            "json",
            stdout=out,
        )
    report = json.loads(out.getvalue())
    assert {"name": "theirs", "owner": other} in report["schemas"][0]["unusable_tables"]
    assert {"name": "restaurant", "owner": setup.owner} in report["schemas"][0]["unusable_tables"]


def test_verify_is_one_query_per_schema_whatever_the_number_of_tables(setup: Setup) -> None:
    from django_azure_pg._core import grants

    for i in range(40):
        setup.owner_sql(f"CREATE TABLE t{i} (id serial PRIMARY KEY)")
    plan = grants.Plan(role=setup.role, database=setup.db, owner=setup.owner)
    with psycopg.connect(
        host=setup.pg.host, port=setup.pg.port, user=setup.owner, password=OWNER_PW,
        dbname=setup.db, sslmode="require", autocommit=True,
    ) as conn:  # fmt: skip
        issued: list[object] = []
        execute = conn.execute

        def counting(query: Any, params: Any = None, **kwargs: Any) -> Any:
            issued.append(query)
            return execute(query, params, **kwargs)

        conn.execute = counting  # type: ignore[method-assign]
        report = grants.verify(conn, plan)
    assert report.schemas[0].tables == 41 and report.schemas[0].sequences == 42
    assert len(report.schemas[0].unusable_tables) == 41
    assert len(issued) == 2  # database privileges + one per schema


def test_create_schemas_lets_the_role_create_schemas(setup: Setup) -> None:
    grant("--database", "owner", "--role", setup.role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("CREATE SCHEMA tenant_a")
    with pytest.raises(CommandError):  # --check sees what is missing
        grant("--database", "owner", "--role", setup.role, "--create-schemas", "--check")
    output = grant("--database", "owner", "--role", setup.role, "--create-schemas")
    assert "CREATE yes" in output and "Status: OK" in output
    setup.app("CREATE SCHEMA tenant_a")


def test_extension_created_first_and_idempotently(setup: Setup) -> None:
    first = json.loads(
        grant(
            "--database",
            "owner",
            "--role",
            setup.role,
            "--extension",
            "pgcrypto",
            "--format",
            "json",
        )
    )
    assert first["ok"] and first["extensions"] == {"pgcrypto": True}
    assert "extension pgcrypto CREATE" in first["changes"]
    assert first["sql"][0] == 'CREATE EXTENSION IF NOT EXISTS "pgcrypto"'
    assert setup.app("SELECT length(gen_random_bytes(4))") == [(4,)]
    assert "nothing changed" in grant(
        "--database", "owner", "--role", setup.role, "--extension", "pgcrypto"
    )


def test_refused_extension_names_the_fix_and_changes_nothing(setup: Setup) -> None:
    # postgis is untrusted: a plain owner may not create it (on Azure: azure_pg_admin only).
    with pytest.raises(CommandError, match=r"'postgis'.*Nothing was changed.*azure_pg_admin"):
        grant("--database", "owner", "--role", setup.role, "--extension", "postgis")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        setup.app("SELECT * FROM restaurant")

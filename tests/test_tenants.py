"""django-tenants on the token login (ORIGINAL_BACKEND = "django_azure_pg"), in its own
process: tenant schemas created and migrated by ``migrate_schemas`` as the app role."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ROLE
from .test_leaks import assert_no_token

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
DB = "tenants_itest"


@pytest.fixture(params=["django_azure_pg", "django_azure_pg.postgis"])
def original_backend(request: pytest.FixtureRequest, postgres: LocalPostgres) -> str:
    if request.param.endswith("postgis"):
        from .test_engines import _gis_missing

        reason = _gis_missing(postgres)
        if reason:
            pytest.skip(reason)
    return str(request.param)


@pytest.fixture
def tenants_db(postgres: LocalPostgres, original_backend: str) -> Iterator[str]:
    """Owned by an admin, as on Azure; the app role may create schemas in it."""
    pytest.importorskip("django_tenants", reason="django-tenants is not installed")
    postgres.create_database(DB)
    if original_backend.endswith("postgis"):
        postgres.execute("CREATE EXTENSION postgis", dbname=DB)  # by an admin, as on Azure
    # What django-tenants needs beyond grant_aad_privileges --migrate: CREATE on the
    # database, for CREATE SCHEMA (each tenant schema is then the app role's own).
    postgres.execute(f'GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {DB} TO "{ROLE}"')
    postgres.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{ROLE}"', dbname=DB)
    yield DB
    postgres.execute(f"DROP DATABASE {DB} WITH (FORCE)")


def test_migrate_schemas_as_the_app_role(
    tenants_db: str,
    original_backend: str,
    postgres: LocalPostgres,
    emulator: IdentityEmulator,
    identity: Identity,
) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.recipes.tenants.settings",
        "RECIPE_PG_PORT": str(postgres.port),
        "RECIPE_DB": tenants_db,
        "RECIPE_ROLE": ROLE,
        "RECIPE_CLIENT_ID": identity.client_id,
        "RECIPE_ORIGINAL_BACKEND": original_backend,
    }
    env.pop("PGPASSWORD", None)
    before = emulator.stats.logins_accepted
    result = subprocess.run(
        [sys.executable, "-m", "tests.recipes.tenants.scenario"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["user"] == ROLE
    assert summary["token_login"] is True
    assert summary["wrapper_mro"][:2] == [
        "django_tenants.postgresql_backend.base",
        f"{original_backend}.base",
    ]
    assert bool(summary["postgis"]) == original_backend.endswith("postgis")
    assert summary["notes"] == {"acme": ["hello acme"], "globex": ["hello globex"]}
    assert emulator.stats.logins_accepted > before

    owners = postgres.execute(
        "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace"
        " WHERE nspname IN ('acme', 'globex') ORDER BY 1",
        dbname=tenants_db,
    )
    assert owners == [("acme", ROLE), ("globex", ROLE)]
    tables = postgres.execute(
        "SELECT to_regclass('acme.notes_note') IS NOT NULL,"
        " to_regclass('globex.notes_note') IS NOT NULL,"
        " to_regclass('public.notes_note') IS NULL,"
        " to_regclass('public.customers_client') IS NOT NULL,"
        " (SELECT count(*) FROM acme.django_migrations WHERE app = 'notes')",
        dbname=tenants_db,
    )
    assert tables == [(True, True, True, True, 1)]
    assert_no_token(result.stdout + result.stderr, emulator)

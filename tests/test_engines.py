"""Other postgresql-derived ENGINEs with the token login: PostGIS, django-prometheus.

Real PostgreSQL, tokens from ManagedIdentityCredential over HTTP to the emulator.
(django-tenants runs in its own process: tests/test_tenants.py.)
"""

from __future__ import annotations

import ctypes.util
from collections.abc import Callable, Iterator
from typing import Any

import django
import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured

from django_azure_pg._client import DatabaseClient
from django_azure_pg.mixin import TokenLoginMixin, has_token_login
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE, MakeWrapper

pytestmark = pytest.mark.integration
requires_pool = pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs 5.1+")
MODES = ["plain", "persistent", pytest.param("pool", marks=requires_pool)]


def mode_settings(mode: str) -> dict[str, Any]:
    if mode == "pool":
        return {"OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 5}}}
    return {"CONN_MAX_AGE": 600 if mode == "persistent" else 0}


def test_recognised_by_capability_not_by_name() -> None:
    assert has_token_login("django_azure_pg")
    assert has_token_login("tests.recipes.prometheus")
    assert not has_token_login("django.db.backends.postgresql")
    assert not has_token_login("django.db.backends.sqlite3")
    assert not has_token_login("no.such.backend")


# -- django-prometheus -----------------------------------------------------------


@pytest.fixture
def prometheus() -> Callable[[str, str], float]:
    pytest.importorskip("django_prometheus", reason="django-prometheus is not installed")
    from prometheus_client import REGISTRY

    def sample(name: str, alias: str) -> float:
        value = REGISTRY.get_sample_value(name, {"alias": alias, "vendor": "postgresql"})
        return value or 0.0

    return sample


@pytest.mark.parametrize("mode", MODES)
def test_prometheus_recipe_counts_token_connections(
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    prometheus: Callable[[str, str], float],
    mode: str,
) -> None:
    wrapper = make_wrapper(ENGINE="tests.recipes.prometheus", **mode_settings(mode))
    assert isinstance(wrapper, TokenLoginMixin)
    logins = emulator.stats.logins_accepted
    for _ in range(3):
        with wrapper.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (ROLE,)
        if mode != "persistent":
            wrapper.close()
    alias = wrapper.alias
    expected = 1 if mode == "persistent" else 3  # checkouts count as connections in pool mode
    assert prometheus("django_db_new_connections_total", alias) == expected
    assert prometheus("django_db_execute_total", alias) >= 3
    assert emulator.stats.logins_accepted > logins  # through the token path
    if mode == "pool":
        wrapper.close_pool()


def test_prometheus_recipe_counts_refused_logins(
    make_wrapper: MakeWrapper, prometheus: Callable[[str, str], float]
) -> None:
    wrapper = make_wrapper(ENGINE="tests.recipes.prometheus", USER="aad_missing")
    with pytest.raises(django.db.OperationalError):
        wrapper.ensure_connection()
    assert prometheus("django_db_new_connection_errors_total", wrapper.alias) >= 1


# -- PostGIS ------------------------------------------------------------------------


def _gis_missing(postgres: LocalPostgres) -> str | None:
    if not ctypes.util.find_library("gdal") or not ctypes.util.find_library("geos_c"):
        return "GDAL/GEOS libraries not installed (make install: scripts/ensure-postgis.sh)"
    if not postgres.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'"):
        return "PostGIS is not installed for this PostgreSQL (scripts/ensure-postgis.sh)"
    return None


@pytest.fixture(scope="module")
def gis_db(postgres: LocalPostgres) -> Iterator[str]:
    """A database owned by an admin, with PostGIS created by the admin, as on Azure."""
    reason = _gis_missing(postgres)
    if reason:
        pytest.skip(reason)
    name = "gis_itest"
    postgres.create_database(name)
    postgres.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE {name} TO "{ROLE}"')
    postgres.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{ROLE}"', dbname=name)
    postgres.execute("CREATE EXTENSION postgis", dbname=name)
    yield name


@pytest.fixture
def place_model() -> Any:
    from django.apps.registry import Apps
    from django.contrib.gis.db import models

    registry = Apps(["django.contrib.contenttypes"])

    class Place(models.Model):
        name = models.CharField(max_length=30)
        location = models.PointField(srid=4326)

        class Meta:
            app_label = "gis_itest"
            apps = registry

    return Place


@pytest.mark.parametrize("mode", MODES)
def test_postgis_engine_spatial_queries_through_the_token_path(
    gis_db: str,
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
    place_model: Any,
    mode: str,
) -> None:
    from django.contrib.gis.geos import Point
    from django.contrib.gis.measure import D
    from django.contrib.postgres.operations import CreateExtension
    from django.db import connections
    from django.db.migrations.state import ProjectState

    settings = mode_settings(mode)
    settings["OPTIONS"] = {"client_id": identity.client_id, **settings.get("OPTIONS", {})}
    alias = add_alias(
        f"gis_{mode}", ENGINE="django_azure_pg.postgis", NAME=gis_db, USER=ROLE, **settings
    )
    wrapper = connections[alias]
    logins = emulator.stats.logins_accepted
    assert wrapper.ops.spatial_version >= (3, 0)
    assert isinstance(wrapper.client, DatabaseClient)  # dbshell gets the token too
    try:
        with wrapper.schema_editor() as editor:
            # A migration's CreateExtension("postgis") passes as the app role once an
            # admin has created the extension (PostGIS is not a trusted extension).
            state = ProjectState()
            CreateExtension("postgis").database_forwards("gis_itest", editor, state, state)
            editor.create_model(place_model)
        places = place_model.objects.using(alias)
        places.create(name="Amsterdam", location=Point(4.90, 52.37, srid=4326))
        places.create(name="Utrecht", location=Point(5.12, 52.09, srid=4326))
        places.create(name="Paris", location=Point(2.35, 48.86, srid=4326))
        near = places.filter(location__distance_lte=(Point(4.9, 52.3, srid=4326), D(km=60)))
        assert sorted(p.name for p in near) == ["Amsterdam", "Utrecht"]
        assert places.get(name="Paris").location.x == pytest.approx(2.35)
        with wrapper.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (ROLE,)
        assert emulator.stats.logins_accepted > logins
    finally:
        with wrapper.schema_editor() as editor:
            editor.delete_model(place_model)
        wrapper.close()
        if mode == "pool":
            wrapper.close_pool()


def test_postgis_extension_needs_an_admin(
    postgres: LocalPostgres, make_wrapper: MakeWrapper, gis_db: str
) -> None:
    # What README says: the app role cannot create PostGIS itself (not a trusted
    # extension; on Azure only azure_pg_admin members may create untrusted ones).
    postgres.execute("CREATE DATABASE gis_noext")
    postgres.execute(f'GRANT CREATE ON DATABASE gis_noext TO "{ROLE}"')
    try:
        wrapper = make_wrapper(ENGINE="django_azure_pg.postgis", NAME="gis_noext")
        with pytest.raises(django.db.ProgrammingError) as info:
            wrapper.prepare_database()
        assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
        wrapper.close()
    finally:
        postgres.execute("DROP DATABASE gis_noext WITH (FORCE)")


def test_postgis_password_login_unchanged(
    postgres: LocalPostgres, make_wrapper: MakeWrapper, gis_db: str
) -> None:
    postgres.create_password_role("pw_gis", "gis-pw-123")
    postgres.execute(f"GRANT CONNECT ON DATABASE {gis_db} TO pw_gis")
    wrapper = make_wrapper(
        ENGINE="django_azure_pg.postgis", NAME=gis_db, USER="pw_gis", PASSWORD="gis-pw-123"
    )
    assert wrapper.azure_login is None
    with wrapper.cursor() as cur:
        cur.execute("SELECT current_user, postgis_lib_version() IS NOT NULL")
        assert cur.fetchone() == ("pw_gis", True)


def test_misconfigured_postgis_alias_is_improperly_configured(
    make_wrapper: MakeWrapper, gis_db: str
) -> None:
    wrapper = make_wrapper(
        ENGINE="django_azure_pg.postgis", NAME=ITEST_DB, OPTIONS={"client_secret": "x"}
    )
    with pytest.raises(ImproperlyConfigured, match=r"tenant_id .* is not set"):
        wrapper.ensure_connection()


# -- doctor and grant commands on other ENGINEs -----------------------------------------


def _doctor(alias: str) -> tuple[dict[str, Any], int]:
    import io
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = io.StringIO()
    code = 0
    try:
        call_command("azure_pg_doctor", "--database", alias, "--format", "json", stdout=out)
    except CommandError as exc:
        code = exc.returncode
    return json.loads(out.getvalue()), code


def test_doctor_on_the_postgis_engine(
    gis_db: str, add_alias: Callable[..., str], identity: Identity
) -> None:
    add_alias(
        "gis_doc",
        ENGINE="django_azure_pg.postgis",
        NAME=gis_db,
        USER=ROLE,
        OPTIONS={"client_id": identity.client_id},
    )
    report, code = _doctor("gis_doc")
    assert code == 0, report
    assert [s["name"] for s in report["steps"]] == [
        "settings",
        "credential",
        "token",
        "cache",
        "role",
        "connect",
    ]
    assert report["steps"][0]["detail"]["engine"] == "django_azure_pg.postgis"
    assert report["steps"][-1]["detail"]["current_user"] == ROLE


def test_doctor_says_when_an_engine_has_no_token_login(add_alias: Callable[..., str]) -> None:
    add_alias("stock", ENGINE="django.db.backends.postgresql", NAME=ITEST_DB, USER=ROLE)
    report, code = _doctor("stock")
    assert code == 1
    credential = report["steps"][1]
    assert credential["status"] == "fail" and credential["detail"]["token_login"] is False
    assert "TokenLoginMixin" in credential["fix"]
    assert report["steps"][-1] == {
        "name": "connect", "status": "skipped", "detail": {}, "cause": None, "fix": None
    }  # fmt: skip


def test_grant_through_other_engines(
    postgres: LocalPostgres, add_alias: Callable[..., str], gis_db: str
) -> None:
    import io

    from django.core.management import call_command

    pytest.importorskip("django_prometheus", reason="django-prometheus is not installed")
    postgres.create_password_role("gis_owner", "gis-owner-pw", superuser=True)
    for engine in ("django_azure_pg.postgis", "tests.recipes.prometheus"):
        alias = add_alias(
            f"own_{engine.rsplit('.', 1)[-1]}",
            ENGINE=engine,
            NAME=gis_db,
            USER="gis_owner",
            PASSWORD="gis-owner-pw",
        )
        out = io.StringIO()
        call_command("grant_aad_privileges", "--database", alias, "--role", ROLE, stdout=out)
        assert f"Role '{ROLE}'" in out.getvalue() and "Status: OK" in out.getvalue()


# -- the leak guarantee carries over -------------------------------------------------


@pytest.mark.parametrize("engine", ["django_azure_pg.postgis", "tests.recipes.prometheus"])
def test_error_report_of_a_failed_login_has_no_token(
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    postgres: LocalPostgres,
    mailoutbox: list[Any],
    engine: str,
) -> None:
    import logging
    import sys

    from django.test import RequestFactory, override_settings
    from django.utils.log import AdminEmailHandler

    from .test_leaks import ADMINS, assert_no_token

    if "postgis" in engine and _gis_missing(postgres):
        pytest.skip(str(_gis_missing(postgres)))
    if "prometheus" in engine:
        pytest.importorskip("django_prometheus", reason="django-prometheus is not installed")
    wrapper = make_wrapper(ENGINE=engine, USER="aad_missing")  # token fetched, login refused
    with override_settings(DEBUG=False, ADMINS=ADMINS), pytest.raises(django.db.OperationalError):
        try:
            wrapper.ensure_connection()
        except django.db.OperationalError:
            record = logging.LogRecord(
                "django.request", logging.ERROR, __file__, 0, "Internal Server Error: /", (),
                sys.exc_info(),
            )  # fmt: skip
            record.request = RequestFactory().get("/")  # type: ignore[attr-defined]
            AdminEmailHandler(include_html=True).emit(record)
            raise
    html = mailoutbox[0].alternatives[0][0]
    assert "aad_missing" in html and "get_new_connection" in html  # a real, detailed report
    assert_no_token(mailoutbox[0].body + str(html), emulator)

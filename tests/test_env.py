"""Service Connector variables and database URLs → DATABASES entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dj_database_url
import pytest
from django.core.exceptions import ImproperlyConfigured

from django_azure_pg import from_env
from django_azure_pg_testing import LocalPostgres

from .conftest import ITEST_DB, ROLE, MakeWrapper

HOST = "myserver.postgres.database.azure.com"


def test_django_client_type_system_identity() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": HOST,
        "AZURE_POSTGRESQL_USER": "aad_conn",
        "AZURE_POSTGRESQL_NAME": "restaurant",
    }
    assert from_env(environ=env) == {
        "ENGINE": "django_azure_pg",
        "HOST": HOST,
        "USER": "aad_conn",
        "NAME": "restaurant",
        "OPTIONS": {},
    }


def test_django_client_type_user_identity_and_service_principal() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": HOST,
        "AZURE_POSTGRESQL_USER": "aad_conn",
        "AZURE_POSTGRESQL_NAME": "restaurant",
        "AZURE_POSTGRESQL_CLIENTID": "cid",
    }
    assert from_env(environ=env)["OPTIONS"] == {"client_id": "cid"}
    env |= {"AZURE_POSTGRESQL_CLIENTSECRET": "sec", "AZURE_POSTGRESQL_TENANTID": "tid"}
    assert from_env(environ=env)["OPTIONS"] == {
        "client_id": "cid",
        "client_secret": "sec",
        "tenant_id": "tid",
    }


def test_django_client_type_secret() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": HOST,
        "AZURE_POSTGRESQL_USER": "admin",
        "AZURE_POSTGRESQL_NAME": "restaurant",
        "AZURE_POSTGRESQL_PASSWORD": "pw",
    }
    assert from_env(environ=env)["PASSWORD"] == "pw"


def test_none_client_type() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": HOST,
        "AZURE_POSTGRESQL_USERNAME": "aad_conn",
        "AZURE_POSTGRESQL_DATABASE": "restaurant",
        "AZURE_POSTGRESQL_PORT": "5432",
        "AZURE_POSTGRESQL_SSL": "true",
    }
    entry = from_env(environ=env)
    assert (entry["USER"], entry["NAME"], entry["PORT"]) == ("aad_conn", "restaurant", "5432")
    assert entry["OPTIONS"] == {}  # TLS on: the backend's default, verify-full for Azure hosts


def test_python_client_type_connection_string_with_quotes_and_spaces() -> None:
    conninfo = (
        f"dbname='my db' host={HOST} port=5432 sslmode=require user=aad_conn "
        "password='pa ss\\'word' application_name='my app'"
    )
    entry = from_env(environ={"AZURE_POSTGRESQL_CONNECTIONSTRING": conninfo})
    assert entry["NAME"] == "my db"
    assert entry["HOST"] == HOST
    assert entry["PORT"] == "5432"
    assert entry["USER"] == "aad_conn"
    assert entry["PASSWORD"] == "pa ss'word"
    # Service Connector's sslmode=require means "TLS on": Azure hosts get verify-full.
    assert entry["OPTIONS"] == {"application_name": "my app"}
    other = from_env(
        environ={"AZURE_POSTGRESQL_CONNECTIONSTRING": f"host={HOST} dbname=d sslmode=verify-ca"}
    )
    assert other["OPTIONS"] == {"sslmode": "verify-ca"}  # any other mode is kept


def test_bad_connection_string_does_not_echo_it() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        from_env(environ={"AZURE_POSTGRESQL_CONNECTIONSTRING": "host=x password='unterminated"})
    assert "unterminated" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_named_connection_and_custom_prefix() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": "default-host",
        "AZURE_POSTGRESQL_NAME": "default-db",
        "AZURE_POSTGRESQL_REPORTS_HOST": "reports-host",
        "AZURE_POSTGRESQL_REPORTS_NAME": "reports",
        "AZURE_POSTGRESQL_REPORTS_USER": "aad_reports",
        "MYAPP_DB_HOST": "custom-host",
        "MYAPP_DB_DATABASE": "custom",
    }
    assert from_env(environ=env)["HOST"] == "default-host"
    reports = from_env(connection="reports", environ=env)
    assert (reports["HOST"], reports["NAME"], reports["USER"]) == (
        "reports-host",
        "reports",
        "aad_reports",
    )
    assert from_env("MYAPP_DB_", environ=env)["NAME"] == "custom"


def test_overrides_are_merged_not_replaced() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": HOST,
        "AZURE_POSTGRESQL_NAME": "restaurant",
        "AZURE_POSTGRESQL_SSL": "true",
        "AZURE_POSTGRESQL_CLIENTID": "cid",
    }
    entry = from_env(
        environ=env,
        CONN_MAX_AGE=600,
        CONN_HEALTH_CHECKS=True,
        OPTIONS={"sslmode": "verify-full", "pool": {"max_size": 4}},
        TEST={"NAME": "test_restaurant"},
    )
    assert entry["CONN_MAX_AGE"] == 600
    assert entry["OPTIONS"] == {
        "sslmode": "verify-full",
        "client_id": "cid",
        "pool": {"max_size": 4},
    }
    assert entry["TEST"] == {"NAME": "test_restaurant"}


def test_missing_variables_are_listed_without_values() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        from_env(environ={})
    text = str(info.value)
    for name in (
        "AZURE_POSTGRESQL_HOST",
        "AZURE_POSTGRESQL_NAME",
        "AZURE_POSTGRESQL_DATABASE",
        "AZURE_POSTGRESQL_CONNECTIONSTRING",
        "DATABASE_URL",
    ):
        assert name in text
    assert "Found: none" in text


@pytest.mark.parametrize(
    ("env", "missing", "not_missing"),
    [
        (
            {"AZURE_POSTGRESQL_USER": "aad_conn", "AZURE_POSTGRESQL_PASSWORD": "s3cr3t-value"},
            ["AZURE_POSTGRESQL_HOST", "AZURE_POSTGRESQL_NAME or AZURE_POSTGRESQL_DATABASE"],
            [],
        ),
        (
            {"AZURE_POSTGRESQL_HOST": HOST, "AZURE_POSTGRESQL_USERNAME": "aad_conn"},
            ["AZURE_POSTGRESQL_NAME or AZURE_POSTGRESQL_DATABASE is missing"],
            ["AZURE_POSTGRESQL_HOST"],
        ),
        (
            {"AZURE_POSTGRESQL_NAME": "restaurant", "AZURE_POSTGRESQL_CLIENTID": "cid"},
            ["AZURE_POSTGRESQL_HOST is missing"],
            ["AZURE_POSTGRESQL_NAME or"],
        ),
        (
            {"AZURE_POSTGRESQL_CONNECTIONSTRING": "dbname=restaurant password=s3cr3t-value"},
            ["AZURE_POSTGRESQL_HOST (or host= in AZURE_POSTGRESQL_CONNECTIONSTRING) is missing"],
            ["DATABASE"],
        ),
    ],
)
def test_a_partial_set_names_the_missing_variables(
    env: dict[str, str], missing: list[str], not_missing: list[str]
) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        from_env(environ=env)
    text = str(info.value)
    assert "No Azure PostgreSQL settings" not in text  # some are there
    assert f"found {', '.join(sorted(env))}," in text
    for name in missing:
        assert name in text
    for name in not_missing:
        assert name not in text.split(", but ")[1]
    assert "s3cr3t-value" not in text


def test_contradictions() -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": "h",
        "AZURE_POSTGRESQL_NAME": "a",
        "AZURE_POSTGRESQL_DATABASE": "b",
    }
    with pytest.raises(ImproperlyConfigured, match="NAME and AZURE_POSTGRESQL_DATABASE"):
        from_env(environ=env)
    env = {"AZURE_POSTGRESQL_CONNECTIONSTRING": "host=a dbname=d", "AZURE_POSTGRESQL_HOST": "b"}
    with pytest.raises(ImproperlyConfigured, match="disagree about HOST"):
        from_env(environ=env)
    with pytest.raises(ImproperlyConfigured, match="true or false"):
        from_env(
            environ={
                "AZURE_POSTGRESQL_HOST": "h",
                "AZURE_POSTGRESQL_NAME": "d",
                "AZURE_POSTGRESQL_SSL": "maybe",
            }
        )


URL = f"azure-postgres://aad_conn@{HOST}:5432/restaurant?sslmode=verify-full&client_id=cid"


def assert_url_entry(entry: Mapping[str, Any]) -> None:
    """What both dj-database-url and django-environ must make of URL."""
    assert entry["ENGINE"] == "django_azure_pg"
    assert (entry["HOST"], entry["PORT"], entry["NAME"], entry["USER"]) == (
        HOST,
        5432,
        "restaurant",
        "aad_conn",
    )
    assert entry["OPTIONS"] == {"sslmode": "verify-full", "client_id": "cid"}


def test_url_scheme() -> None:
    entry = dj_database_url.parse(URL)
    assert_url_entry(entry)
    assert "PASSWORD" not in entry or not entry["PASSWORD"]
    assert dj_database_url.parse("azure-postgresql://u@h/d?currentSchema=app")["OPTIONS"] == {
        "options": "-c search_path=app"
    }


def test_database_url_fallback_for_laptops() -> None:
    entry = from_env(
        environ={"DATABASE_URL": f"azure-postgres://me%40contoso.com@{HOST}/restaurant"}
    )
    assert entry["ENGINE"] == "django_azure_pg"
    assert entry["USER"] == "me@contoso.com"
    entry = from_env(environ={}, default_url="postgres://u:p@localhost/dev", CONN_MAX_AGE=5)
    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert entry["CONN_MAX_AGE"] == 5


@pytest.mark.integration
def test_end_to_end_from_environment(
    postgres: LocalPostgres, make_wrapper: MakeWrapper, identity: object
) -> None:
    env = {
        "AZURE_POSTGRESQL_HOST": postgres.host,
        "AZURE_POSTGRESQL_PORT": str(postgres.port),
        "AZURE_POSTGRESQL_USERNAME": ROLE,
        "AZURE_POSTGRESQL_DATABASE": ITEST_DB,
        "AZURE_POSTGRESQL_SSL": "true",
        "AZURE_POSTGRESQL_CLIENTID": identity.client_id,  # type: ignore[attr-defined]
    }
    entry = from_env(environ=env)
    wrapper = make_wrapper(**entry)
    with wrapper.cursor() as cur:
        cur.execute(
            "SELECT current_user, current_database(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert cur.fetchone() == (ROLE, ITEST_DB, True)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:s3cret@host:abc/db",
        "nonsense",
        "foo://u:s3cret@h/db",
        "postgres://u:s3cret@[::1/db",
    ],
)
def test_bad_database_url_names_the_variable_not_the_url(url: str) -> None:
    with pytest.raises(
        ImproperlyConfigured, match=r"^DATABASE_URL is not a usable database URL"
    ) as info:
        from_env(environ={"DATABASE_URL": url})
    assert "s3cret" not in str(info.value) and info.value.__cause__ is None
    with pytest.raises(ImproperlyConfigured, match=r"^default_url is not"):
        from_env(environ={}, default_url=url)


def test_url_scheme_with_django_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = pytest.importorskip("environ")
    # The registration happened when django_azure_pg was imported; env.db() sees it.
    monkeypatch.setenv("DATABASE_URL", URL)
    entry = environ.Env().db()
    assert_url_entry(entry)
    assert not entry["PASSWORD"]
    assert environ.Env.db_url_config("azure-postgresql://u@h/d")["ENGINE"] == "django_azure_pg"
    # Parsed as PostgreSQL: several hosts for libpq's failover list.
    assert environ.Env.db_url_config("azure-postgres://u@h1:5432,h2:5433/d")["HOST"] == "h1,h2"

"""System checks fire when they should and stay silent otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_azure_pg.checks import check_alias

AZ = "myserver.postgres.database.azure.com"
MI_ENV = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token"}


def ids(entry: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    return [m.id for m in check_alias("default", entry, MI_ENV if environ is None else environ)]


def test_good_settings_are_silent() -> None:
    assert ids({"HOST": AZ, "USER": "aad_x", "OPTIONS": {"sslmode": "verify-full"}}) == []
    assert (
        ids({"HOST": AZ, "USER": "aad_x", "OPTIONS": {"pool": True, "application_name": "a"}}) == []
    )
    assert ids({"HOST": "localhost", "PASSWORD": "pw", "OPTIONS": {"sslmode": "disable"}}) == []


def test_misspelled_option() -> None:
    messages = check_alias(
        "default", {"HOST": AZ, "USER": "u", "OPTIONS": {"token_scopes": "x"}}, MI_ENV
    )
    assert [m.id for m in messages] == ["django_azure_pg.E004"]
    assert "Did you mean 'token_scope'" in messages[0].hint


def test_weak_sslmode_against_azure() -> None:
    assert ids({"HOST": AZ, "USER": "u", "OPTIONS": {"sslmode": "prefer"}}) == [
        "django_azure_pg.W002"
    ]
    assert ids({"HOST": "db.internal", "USER": "u", "OPTIONS": {"sslmode": "disable"}}) == []
    assert ids(
        {"HOST": "x.postgres.database.chinacloudapi.cn", "USER": "u"},
        {**MI_ENV, "PGSSLMODE": "disable"},
    ) == ["django_azure_pg.W002"]


def test_pool_with_conn_max_age() -> None:
    assert ids({"HOST": AZ, "USER": "u", "CONN_MAX_AGE": 60, "OPTIONS": {"pool": True}}) == [
        "django_azure_pg.E003"
    ]


def test_no_way_to_authenticate() -> None:
    messages = check_alias(
        "default", {"HOST": AZ, "USER": "u"}, {"AZURE_POSTGRESQL_CLIENTSECRET": "s"}
    )
    assert [m.id for m in messages] == ["django_azure_pg.E001"]
    assert "'s'" not in messages[0].msg


def test_default_credential_with_nothing_to_find(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("django_azure_pg.checks.shutil.which", lambda name: None)
    assert ids({"HOST": AZ, "USER": "u"}, {}) == ["django_azure_pg.W001"]
    monkeypatch.setattr("django_azure_pg.checks.shutil.which", lambda name: "/usr/bin/az")
    assert ids({"HOST": AZ, "USER": "u"}, {}) == []


def test_user_not_derivable_for_service_principal() -> None:
    env = {
        "AZURE_POSTGRESQL_CLIENTID": "c",
        "AZURE_POSTGRESQL_CLIENTSECRET": "s",
        "AZURE_POSTGRESQL_TENANTID": "t",
    }
    assert ids({"HOST": AZ, "USER": ""}, env) == ["django_azure_pg.E005"]
    assert ids({"HOST": AZ, "USER": "aad_sp"}, env) == []
    assert ids({"HOST": AZ, "USER": ""}, {"AZURE_POSTGRESQL_CLIENTID": "c", **MI_ENV}) == []


def test_registered_with_manage_py_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    bad = {
        "ENGINE": "django_azure_pg",
        "HOST": AZ,
        "NAME": "d",
        "USER": "u",
        "OPTIONS": {"token_timout": 5},
    }
    monkeypatch.setitem(settings.DATABASES, "bad", bad)
    with pytest.raises(SystemCheckError, match=r"django_azure_pg\.E004"):
        call_command("check")

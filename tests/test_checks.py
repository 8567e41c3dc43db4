"""System checks fire when they should and stay silent otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_azure_pg._checks import check_alias

from .conftest import BAD_OPTIONS

AZ = "myserver.postgres.database.azure.com"
MI_ENV = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token"}


def ids(entry: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    return [m.id for m in check_alias("default", entry, MI_ENV if environ is None else environ)]


def test_good_settings_are_silent() -> None:
    assert ids({"HOST": AZ, "USER": "aad_x", "OPTIONS": {"sslmode": "verify-full"}}) == []
    assert (
        ids({"HOST": AZ, "USER": "aad_x", "OPTIONS": {"pool": True, "application_name": "a"}}) == []
    )
    assert ids({"HOST": "localhost", "PASSWORD": "pw", "OPTIONS": {"sslmode": "disable"}}) == [
        "django_azure_pg.W010"  # a password login: only the note that tokens are off
    ]


def test_misspelled_option_is_a_warning() -> None:
    messages = check_alias(
        "default", {"HOST": AZ, "USER": "u", "OPTIONS": {"token_scopes": "x"}}, MI_ENV
    )
    assert [m.id for m in messages] == ["django_azure_pg.W004"]
    assert not messages[0].is_serious()  # a Warning: migrate still runs
    assert "Did you mean 'token_scope'" in messages[0].hint


def test_known_keys_come_from_the_installed_libpq_and_psycopg() -> None:
    import psycopg

    libpq_keys = [o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()]
    opts = {key: "x" for key in libpq_keys if key not in ("sslmode", "host", "hostaddr")}
    opts |= {"prepare_threshold": 5, "autocommit": False, "cursor_factory": None}
    assert "django_azure_pg.W004" not in ids({"HOST": AZ, "USER": "u", "OPTIONS": opts})


def test_token_over_plaintext_is_an_error() -> None:
    for mode in ("prefer", "allow", "disable"):
        messages = check_alias(
            "default", {"HOST": AZ, "USER": "u", "OPTIONS": {"sslmode": mode}}, MI_ENV
        )
        assert [m.id for m in messages] == ["django_azure_pg.E006"]
        assert "allow_plaintext_token" in messages[0].msg and repr(mode) in messages[0].msg
    assert ids({"HOST": "db.internal", "USER": "u", "OPTIONS": {"sslmode": "disable"}}) == [
        "django_azure_pg.E006"
    ]
    assert ids(
        {"HOST": "x.postgres.database.chinacloudapi.cn", "USER": "u"},
        {**MI_ENV, "PGSSLMODE": "disable"},
    ) == ["django_azure_pg.E006"]
    # Loopback and the local socket may go without TLS; so may an explicit opt-in.
    assert ids({"HOST": "127.0.0.1", "USER": "u", "OPTIONS": {"sslmode": "disable"}}) == []
    assert (
        ids({"HOST": "/var/run/postgresql", "USER": "u", "OPTIONS": {"sslmode": "disable"}}) == []
    )
    assert (
        ids(
            {
                "HOST": "db.internal",
                "USER": "u",
                "OPTIONS": {"sslmode": "disable", "allow_plaintext_token": True},
            }
        )
        == []
    )


def test_unverified_azure_is_a_warning() -> None:
    assert ids({"HOST": AZ, "USER": "u", "OPTIONS": {"sslmode": "require"}}) == [
        "django_azure_pg.W002"
    ]
    assert ids({"HOST": AZ, "PASSWORD": "pw", "OPTIONS": {"sslmode": "prefer"}}) == [
        "django_azure_pg.W002",
        "django_azure_pg.W010",
    ]
    assert ids({"HOST": AZ, "USER": "u"}) == []  # the default: verify-full


@pytest.mark.parametrize(
    ("opts", "key"),
    BAD_OPTIONS,
)
def test_bad_option_values_name_alias_and_key(opts: dict[str, Any], key: str) -> None:
    messages = [
        m
        for m in check_alias("reports", {"HOST": AZ, "USER": "u", "OPTIONS": opts}, MI_ENV)
        if m.id == "django_azure_pg.E007"
    ]
    assert len(messages) == 1, messages
    assert "DATABASES['reports']" in messages[0].msg
    assert f"OPTIONS[{key!r}]" in messages[0].msg
    value = opts[key]
    if isinstance(value, float) or key in ("token_timeout", "token_scope", "client_id"):
        assert repr(value) not in messages[0].msg.split(":", 1)[1].replace(f"OPTIONS[{key!r}]", "")


def test_good_credential_paths_pass() -> None:
    for value in ("azure.identity.DefaultAzureCredential", "tests.fakes.FakeCredential"):
        assert ids({"HOST": AZ, "USER": "u", "OPTIONS": {"credential": value}}) == []


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


def test_default_credential_with_nothing_to_find(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tag = tmp_path / "chassis_asset_tag"
    tag.write_text("No Asset Tag\n")  # a laptop or another cloud
    monkeypatch.setattr("django_azure_pg._core.credentials.CHASSIS_ASSET_TAG_FILE", str(tag))
    monkeypatch.setattr("django_azure_pg._checks.shutil.which", lambda name: None)
    assert ids({"HOST": AZ, "USER": "u"}, {}) == ["django_azure_pg.W001"]
    monkeypatch.setattr("django_azure_pg._checks.shutil.which", lambda name: "/usr/bin/az")
    assert ids({"HOST": AZ, "USER": "u"}, {}) == []


def test_no_false_w001_where_imds_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # IMDS sets no environment variable: an Azure VM is known by its chassis asset tag,
    # an AKS pod by Kubernetes' service variable.
    monkeypatch.setattr("django_azure_pg._checks.shutil.which", lambda name: None)
    tag = tmp_path / "chassis_asset_tag"
    tag.write_text("7783-7084-3265-9085-8269-3286-77\n")
    monkeypatch.setattr("django_azure_pg._core.credentials.CHASSIS_ASSET_TAG_FILE", str(tag))
    assert ids({"HOST": AZ, "USER": "u"}, {}) == []  # Azure VM
    monkeypatch.setattr(
        "django_azure_pg._core.credentials.CHASSIS_ASSET_TAG_FILE", str(tmp_path / "none")
    )
    assert ids({"HOST": AZ, "USER": "u"}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == []  # AKS
    assert ids({"HOST": AZ, "USER": "u"}, {}) == ["django_azure_pg.W001"]


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
        "OPTIONS": {"token_timout": 5, "token_timeout": "soon"},
    }
    monkeypatch.setitem(settings.DATABASES, "bad", bad)
    with pytest.raises(SystemCheckError, match=r"django_azure_pg\.E007"):
        call_command("check")  # token_timout is also misspelt: W004 alone would not fail


def test_manage_py_check_reports_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    for opts in ({"token_timeout": "abc"}, {"credential": "no.such.Mod"}):
        entry = {"ENGINE": "django_azure_pg", "HOST": AZ, "NAME": "d", "USER": "u", "OPTIONS": opts}
        monkeypatch.setitem(settings.DATABASES, "bad", entry)
        with pytest.raises(SystemCheckError, match=r"django_azure_pg\.E007"):
            call_command("check")


@pytest.mark.parametrize(
    "engine,checked",
    [
        ("django_azure_pg", True),
        ("django_azure_pg.postgis", True),
        ("tests.recipes.prometheus", True),  # a user's own backend module with the mixin
        ("django.db.backends.postgresql", False),
        ("django.contrib.gis.db.backends.postgis", False),
    ],
)
def test_checks_follow_the_token_login_not_the_engine_name(
    monkeypatch: pytest.MonkeyPatch, engine: str, checked: bool
) -> None:
    from django.conf import settings

    from django_azure_pg._checks import check_databases

    if "gis" in engine:
        pytest.importorskip("django.contrib.gis.gdal", reason="GDAL not installed")
    if "prometheus" in engine:
        pytest.importorskip("django_prometheus", reason="django-prometheus not installed")
    weak = {
        "ENGINE": engine,
        "HOST": AZ,
        "NAME": "d",
        "USER": "u",
        "OPTIONS": {"sslmode": "require"},
    }
    monkeypatch.setattr(settings, "DATABASES", {"weak": weak})
    monkeypatch.setenv("IDENTITY_ENDPOINT", MI_ENV["IDENTITY_ENDPOINT"])
    found = [m.id for m in check_databases()]
    assert found == (["django_azure_pg.W002"] if checked else [])


def test_verify_ca_to_an_azure_host_warns() -> None:
    messages = check_alias(
        "default", {"HOST": AZ, "USER": "u", "OPTIONS": {"sslmode": "verify-ca"}}, MI_ENV
    )
    assert [m.id for m in messages] == ["django_azure_pg.W002"]
    assert "not the name" in messages[0].msg


# -- what only failed at runtime before (issue 23) ----------------------------


def entra_like_token() -> str:
    """A JWT with an Entra access token's claims (unsigned; only its shape matters)."""
    import base64
    import json

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {
        "aud": "https://ossrdbms-aad.database.windows.net",
        "iss": "https://sts.windows.net/t/",
        "oid": "o",
        "tid": "t",
        "exp": 2000000000,
    }
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_leftover_password_says_tokens_are_off() -> None:
    messages = check_alias("default", {"HOST": AZ, "USER": "u", "PASSWORD": "hunter2"}, MI_ENV)
    assert [m.id for m in messages] == ["django_azure_pg.W010"]
    assert not messages[0].is_serious()  # a deliberate password login still migrates
    assert "token login is OFF" in messages[0].msg and "DATABASES['default']" in messages[0].msg
    assert "SILENCED_SYSTEM_CHECKS" in messages[0].hint and "W010" in messages[0].hint
    assert "hunter2" not in messages[0].msg + messages[0].hint


def test_token_pasted_into_password_is_an_error_that_never_shows_it() -> None:
    token = entra_like_token()
    messages = check_alias("default", {"HOST": AZ, "USER": "u", "PASSWORD": token}, MI_ENV)
    assert [m.id for m in messages] == ["django_azure_pg.E010"]
    assert messages[0].is_serious()
    for piece in token.split("."):
        assert piece not in messages[0].msg + messages[0].hint
    # A password that merely has two dots is a password.
    assert ids({"HOST": AZ, "USER": "u", "PASSWORD": "a.b.c"}) == ["django_azure_pg.W010"]


def test_password_silenced_deliberately(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings
    from django.core.management import call_command

    entry = {"ENGINE": "django_azure_pg", "HOST": AZ, "NAME": "d", "USER": "u", "PASSWORD": "pw"}
    monkeypatch.setattr(settings, "DATABASES", {"default": entry})
    monkeypatch.setattr(settings, "SILENCED_SYSTEM_CHECKS", ["django_azure_pg.W010"])
    call_command("check", fail_level="WARNING")  # nothing left to report


@pytest.mark.parametrize("host", [None, "", "  "])
def test_missing_host_names_the_service_connector_variable(host: str | None) -> None:
    entry: dict[str, Any] = {"USER": "u", "NAME": "d"}
    if host is not None:
        entry["HOST"] = host
    messages = check_alias("default", entry, MI_ENV)
    assert [m.id for m in messages] == ["django_azure_pg.E011"]
    assert "Unix socket" in messages[0].msg
    assert "AZURE_POSTGRESQL_HOST" in messages[0].hint


def test_host_from_elsewhere_is_not_missing() -> None:
    assert ids({"USER": "u", "OPTIONS": {"host": AZ}}) == []
    # Not E011; a service libpq cannot find is the route policy's E006 (no token).
    assert "django_azure_pg.E011" not in ids({"USER": "u", "OPTIONS": {"service": "mydb"}})
    assert ids({"USER": "u"}, {**MI_ENV, "PGHOST": AZ}) == []
    assert ids({"PASSWORD": "pw"}) == ["django_azure_pg.W010"]  # a local password login


def test_pool_needs_django_51(monkeypatch: pytest.MonkeyPatch) -> None:
    import django

    monkeypatch.setattr(django, "VERSION", (4, 2, 30, "final", 0))
    messages = check_alias("default", {"HOST": AZ, "USER": "u", "OPTIONS": {"pool": True}}, MI_ENV)
    assert [m.id for m in messages] == ["django_azure_pg.E012"]
    assert "Django 5.1" in messages[0].msg
    assert ids({"HOST": AZ, "USER": "u", "OPTIONS": {"pool": False}}) == []
    monkeypatch.setattr(django, "VERSION", (5, 1, 0, "final", 0))
    assert ids({"HOST": AZ, "USER": "u", "OPTIONS": {"pool": True}}) == []


def test_pool_needs_psycopg_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import django

    monkeypatch.setattr(django, "VERSION", (5, 2, 0, "final", 0))
    entry = {"HOST": AZ, "USER": "u", "OPTIONS": {"pool": {"max_size": 4}}}
    assert ids(entry) == []  # installed here
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # as if not installed
    messages = check_alias("default", entry, MI_ENV)
    assert [m.id for m in messages] == ["django_azure_pg.E013"]
    assert "psycopg_pool" in messages[0].msg and "psycopg[pool]" in str(messages[0].hint)
    assert ids({"HOST": AZ, "USER": "u", "OPTIONS": {"pool": False}}) == []
    password = {"HOST": AZ, "PASSWORD": "pw", "OPTIONS": {"pool": True}}
    assert "django_azure_pg.E013" in ids(password)  # Django's own pool needs it too


def test_the_pool_check_imports_nothing() -> None:
    """Looked up with find_spec, never imported: the checks stay cheap (test_imports)."""
    import subprocess
    import sys

    code = (
        "import sys; from django_azure_pg._checks import _pool_installed; "
        "assert _pool_installed(); assert 'psycopg_pool' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bad_azure_token_credentials_is_e001() -> None:
    messages = check_alias(
        "default", {"HOST": AZ, "USER": "u"}, {"AZURE_TOKEN_CREDENTIALS": "production"}
    )
    assert [m.id for m in messages] == ["django_azure_pg.E001"]
    assert "AZURE_TOKEN_CREDENTIALS" in messages[0].msg

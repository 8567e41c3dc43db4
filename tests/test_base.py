"""The ENGINE against a real PostgreSQL, with tokens from ManagedIdentityCredential over HTTP."""

from __future__ import annotations

import copy

import django
import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connection

from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE, MakeWrapper, all_at_once, run_for

pytestmark = pytest.mark.integration
requires_pool = pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs 5.1+")


def query(wrapper: object, sql: str) -> tuple[object, ...]:
    with wrapper.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(sql)
        return tuple(cur.fetchone())


def test_plain_connection_logs_in_with_a_token(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper()
    user, db, ssl = query(
        wrapper,
        "SELECT current_user, current_database(), ssl FROM pg_stat_ssl"
        " WHERE pid = pg_backend_pid()",
    )
    assert (user, db) == (ROLE, ITEST_DB)
    assert ssl is True  # sslmode defaults to require


def test_explicit_sslmode_is_respected(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper(OPTIONS={"sslmode": "disable"})
    (ssl,) = query(wrapper, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert ssl is False


def test_other_options_reach_libpq_and_django(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper(
        OPTIONS={
            "application_name": "azpg-test",
            "isolation_level": psycopg.IsolationLevel.SERIALIZABLE,
            "token_refresh_margin": 120,
            "token_timeout": 5,
        }
    )
    params = wrapper.get_connection_params()
    assert "token_refresh_margin" not in params and "client_id" not in params
    name, level = query(
        wrapper,
        "SELECT current_setting('application_name'), current_setting('transaction_isolation')",
    )
    assert name == "azpg-test"
    wrapper.set_autocommit(False)
    (level,) = query(wrapper, "SELECT current_setting('transaction_isolation')")
    assert level == "serializable"


def test_no_token_in_settings_or_params(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper()
    wrapper.ensure_connection()
    token = wrapper.azure_login.source.get()
    assert token not in repr(wrapper.settings_dict)
    assert token not in repr(wrapper.get_connection_params())
    assert token not in repr(wrapper.connection)
    assert token not in repr(wrapper.azure_login)


def test_password_means_password_auth(postgres: LocalPostgres, make_wrapper: MakeWrapper) -> None:
    postgres.create_password_role("pw_user", "s3cret-pw")
    wrapper = make_wrapper(USER="pw_user", PASSWORD="s3cret-pw", NAME="postgres")
    assert wrapper.azure_login is None
    assert query(wrapper, "SELECT current_user") == ("pw_user",)


MAX_ROTATION_CALLS = 1 + 6 * 4
"""6.5 s of 2 s tokens: a first fetch, then at most 6 per lifetime (a refresh no earlier
than a sixth of each token's life) over at most 4 lifetimes."""


def _rotation(
    emulator: IdentityEmulator,
    short_tokens: object,
    make_wrapper: MakeWrapper,
    step: object,
    **settings: object,
) -> tuple[int, int]:
    short_tokens(2.0)  # type: ignore[operator]
    before = emulator.stats.token_requests
    wrapper = make_wrapper(**settings)
    count = run_for(6.5, lambda: step(wrapper))  # type: ignore[operator]
    return count, emulator.stats.token_requests - before


def test_rotation_conn_max_age_0(
    emulator: IdentityEmulator, short_tokens: object, make_wrapper: MakeWrapper
) -> None:
    def step(w: object) -> None:
        assert query(w, "SELECT current_user") == (ROLE,)
        w.close()  # type: ignore[attr-defined]

    count, calls = _rotation(emulator, short_tokens, make_wrapper, step)
    assert count > 20
    # Refreshed between a sixth and half of each 2 s token's life: 2 to 6 calls per lifetime
    # over 3.25 lifetimes, never one per connection.
    assert 3 <= calls <= MAX_ROTATION_CALLS < count


def test_rotation_persistent_connections(
    emulator: IdentityEmulator, short_tokens: object, make_wrapper: MakeWrapper
) -> None:
    def step(w: object) -> None:
        w.close_if_unusable_or_obsolete()  # type: ignore[attr-defined]  # request boundary
        assert query(w, "SELECT current_user") == (ROLE,)

    before = emulator.stats.logins_accepted
    _, calls = _rotation(
        emulator, short_tokens, make_wrapper, step, CONN_MAX_AGE=0.5, CONN_HEALTH_CHECKS=True
    )
    assert emulator.stats.logins_accepted - before >= 8  # reconnected across rotations
    assert 3 <= calls <= MAX_ROTATION_CALLS


@requires_pool
def test_rotation_native_pool(
    emulator: IdentityEmulator, short_tokens: object, make_wrapper: MakeWrapper
) -> None:
    pytest.importorskip("psycopg_pool")
    pool_options = {"min_size": 1, "max_size": 4, "max_lifetime": 0.5, "timeout": 5}

    def step(w: object) -> None:
        assert query(w, "SELECT current_user") == (ROLE,)
        w.close()  # type: ignore[attr-defined]  # returns the connection to the pool

    before = emulator.stats.logins_accepted
    _, calls = _rotation(emulator, short_tokens, make_wrapper, step, OPTIONS={"pool": pool_options})
    assert emulator.stats.logins_accepted - before >= 6  # new physical connections after expiry
    assert 3 <= calls <= MAX_ROTATION_CALLS


@requires_pool
def test_pool_outlives_its_first_token(
    emulator: IdentityEmulator, short_tokens: object, make_wrapper: MakeWrapper
) -> None:
    pytest.importorskip("psycopg_pool")
    short_tokens(1.5)
    wrapper = make_wrapper(OPTIONS={"pool": {"min_size": 1, "max_size": 3, "timeout": 5}})
    wrapper.ensure_connection()
    first = wrapper.azure_login.source.get()
    # Hold the first connection while the first token expires.
    run_for(2.0, lambda: query(wrapper, "SELECT 1") and None)
    assert not emulator.check_login(ROLE, first)  # the server now refuses it
    others = [wrapper.pool.getconn() for _ in range(2)]  # new physical connections
    for conn in others:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE,)
        wrapper.pool.putconn(conn)


@requires_pool
def test_pool_options_not_mutated_and_pool_rules_kept(make_wrapper: MakeWrapper) -> None:
    pytest.importorskip("psycopg_pool")
    pool_options = {"min_size": 1, "max_size": 2}
    snapshot = copy.deepcopy(pool_options)
    wrapper = make_wrapper(OPTIONS={"pool": pool_options})
    assert query(wrapper, "SELECT current_user") == (ROLE,)
    assert wrapper.settings_dict["OPTIONS"]["pool"] is pool_options
    assert pool_options == snapshot
    assert wrapper.pool.kwargs.get("password") is None  # no token frozen into the pool

    bad = make_wrapper(CONN_MAX_AGE=60, OPTIONS={"pool": True})
    with pytest.raises(ImproperlyConfigured, match="Pooling doesn't support persistent"):
        bad.ensure_connection()


@requires_pool
def test_pool_true(make_wrapper: MakeWrapper) -> None:
    pytest.importorskip("psycopg_pool")
    wrapper = make_wrapper(OPTIONS={"pool": True})
    assert query(wrapper, "SELECT current_user") == (ROLE,)


@requires_pool
def test_pool_checkout_skips_the_tls_route_once_the_pool_exists(
    make_wrapper: MakeWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Django calls get_connection_params() on every checkout and drops the result: the
    route (service files, PG* variables) is worked out once, when the pool is built."""
    pytest.importorskip("psycopg_pool")
    from django_azure_pg._core import tls

    wrapper = make_wrapper(OPTIONS={"pool": True})
    query(wrapper, "SELECT 1")  # builds the pool, with the TLS defaults
    wrapper.close()

    def resolved(*args: object, **kwargs: object) -> None:
        raise AssertionError("route resolved on a pool checkout")

    monkeypatch.setattr(tls, "resolve", resolved)
    for _ in range(3):
        assert query(wrapper, "SELECT current_user") == (ROLE,)
        wrapper.close()


def test_32_threads_one_credential_call(
    emulator: IdentityEmulator, make_wrapper: MakeWrapper
) -> None:
    before = emulator.stats.token_requests
    wrapper = make_wrapper()  # only to build the settings; each thread gets its own below
    settings = wrapper.settings_dict

    def one() -> None:
        w = make_wrapper(OPTIONS=dict(settings["OPTIONS"]))
        query(w, "SELECT 1")
        w.close()

    all_at_once(32, one)
    assert emulator.stats.token_requests - before == 1


def test_refused_token_retried_once_without_stampede(
    emulator: IdentityEmulator, make_wrapper: MakeWrapper
) -> None:
    wrapper = make_wrapper()
    query(wrapper, "SELECT 1")
    wrapper.close()
    emulator.revoke_all()  # the server now refuses every token issued so far
    before_calls, before_refused = emulator.stats.token_requests, emulator.stats.logins_refused

    def one() -> None:
        w = make_wrapper(OPTIONS=dict(wrapper.settings_dict["OPTIONS"]))
        assert query(w, "SELECT current_user") == (ROLE,)
        w.close()

    all_at_once(16, one)
    assert emulator.stats.token_requests - before_calls == 1
    assert 1 <= emulator.stats.logins_refused - before_refused <= 16


def test_user_derived_from_token_claims(
    postgres: LocalPostgres, identity: Identity, make_wrapper: MakeWrapper
) -> None:
    postgres.create_entra_role(identity.name)
    wrapper = make_wrapper(USER="", NAME="postgres")
    assert query(wrapper, "SELECT current_user") == (identity.name,)


def test_identity_endpoint_failure_is_a_clear_database_error(
    emulator: IdentityEmulator, short_tokens: object, make_wrapper: MakeWrapper
) -> None:
    emulator.set_fault("hang")
    wrapper = make_wrapper(OPTIONS={"token_timeout": 1})
    with pytest.raises(OperationalError) as info:
        wrapper.ensure_connection()
    message = str(info.value)
    assert wrapper.alias in message
    assert "ManagedIdentityCredential" in message
    assert "https://ossrdbms-aad.database.windows.net/.default" in message
    assert "within 1 s" in message
    assert info.value.__cause__ is not None
    emulator.clear_faults()


def test_wrong_role_reads_differently_from_token_failure(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper(USER="aad_missing")
    with pytest.raises(OperationalError) as info:
        wrapper.ensure_connection()
    assert "aad_missing" in str(info.value)
    assert "could not get an Entra access token" not in str(info.value)


def test_misconfigured_credential_is_improperly_configured(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper(OPTIONS={"client_secret": "x"})
    with pytest.raises(ImproperlyConfigured, match=r"tenant_id .* is not set"):
        wrapper.ensure_connection()


@pytest.mark.django_db
def test_test_database_created_through_the_token_path() -> None:
    # pytest-django created test_app via the maintenance ("postgres") connection,
    # as aad_tests, whose only way in is a token (no password exists).
    with connection.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        user, db = cur.fetchone()
    assert (user, db) == (ROLE, "test_app")
    assert connection.azure_login is not None


@pytest.mark.django_db
def test_orm_round_trip() -> None:
    from django.contrib.auth.models import Group

    Group.objects.create(name="g")
    assert Group.objects.filter(name="g").count() == 1


@pytest.mark.skipif(django.VERSION >= (5, 1), reason="Django 5.1+ has a pool")
def test_pool_option_on_old_django_is_a_clear_error(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper(OPTIONS={"pool": True})
    with pytest.raises(ImproperlyConfigured, match=r"needs Django 5\.1"):
        wrapper.ensure_connection()


@pytest.mark.parametrize("mode", ["persistent", pytest.param("pool", marks=requires_pool)])
def test_recovers_after_a_postgres_restart(
    emulator: IdentityEmulator, identity: Identity, make_wrapper: MakeWrapper, mode: str
) -> None:
    # A server of its own: restarting the shared one would break other tests' connections.
    with LocalPostgres(ldap_port=emulator.ldap_port) as pg:
        pg.create_entra_role(ROLE)
        settings: dict[str, object] = {
            "PORT": str(pg.port),
            "NAME": "postgres",
            "CONN_HEALTH_CHECKS": True,
        }
        if mode == "pool":
            settings["OPTIONS"] = {"pool": {"min_size": 1, "max_size": 2, "timeout": 5}}
        else:
            settings["CONN_MAX_AGE"] = 600
        wrapper = make_wrapper(**settings)

        def request() -> tuple[object, ...]:
            wrapper.close_if_unusable_or_obsolete()  # request start, as Django's signal does
            result = query(wrapper, "SELECT pg_backend_pid()")
            if mode == "pool":
                wrapper.close()  # request end: back to the pool
            return result

        first = request()
        pg.restart()
        second = request()  # the broken connection is noticed and replaced, with a token
        assert second != first
        assert query(wrapper, "SELECT current_user") == (ROLE,)
        wrapper.close()
        if wrapper.alias in getattr(wrapper, "_connection_pools", {}):
            wrapper.close_pool()


@requires_pool
def test_pool_built_without_touching_settings_dict(make_wrapper: MakeWrapper) -> None:
    pytest.importorskip("psycopg_pool")
    from psycopg_pool import ConnectionPool

    wrapper = make_wrapper(
        CONN_HEALTH_CHECKS=True,
        OPTIONS={"pool": {"min_size": 1, "max_size": 2, "connection_class": psycopg.Connection}},
    )
    original = wrapper.settings_dict
    seen: list[bool] = []
    get_params = wrapper.raw_connection_params  # the pool reads Django's params through it

    def watching() -> dict[str, object]:
        seen.append(wrapper.settings_dict is original)
        return get_params()

    wrapper.raw_connection_params = watching  # type: ignore[method-assign]
    pool = wrapper.pool
    assert seen == [True]  # the pool read the real settings, not a swapped-in copy
    assert wrapper.settings_dict is original
    # Django's own rules and defaults, plus our class around the user's.
    assert issubclass(pool.connection_class, psycopg.Connection)
    assert pool.connection_class is not psycopg.Connection
    assert pool.connection_class.azure_login is wrapper.azure_login
    assert pool._check == ConnectionPool.check_connection  # CONN_HEALTH_CHECKS, as Django
    assert pool.kwargs["autocommit"] is True and "password" not in pool.kwargs
    assert query(wrapper, "SELECT current_user") == (ROLE,)

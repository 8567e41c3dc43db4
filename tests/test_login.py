"""Token login: one retry on a refused token, clear errors, role from claims."""

from __future__ import annotations

from typing import Any

import django.db
import psycopg
import pytest

from django_azure_pg import errors
from django_azure_pg._core import diagnosis
from django_azure_pg._core.login import RoleNameUnknown, TokenAcquisitionError, TokenLogin

from .fakes import FakeClock, FakeCredential


def login(cred: FakeCredential, user: str | None = "aad_app", **opts: Any) -> TokenLogin:
    return TokenLogin.from_settings("default", {"credential": cred, **opts}, user, environ={})


def aged(lg: TokenLogin, clock: FakeClock, seconds: float = 600) -> TokenLogin:
    """Give the login's source a cached token fetched ``seconds`` ago (not fetched for the login)."""
    object.__setattr__(lg.source, "clock", clock)
    lg.source.get_token()
    clock.advance(seconds)
    return lg


class FakeConnect:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **params: Any) -> str:
        self.calls.append(params)
        if self.errors:
            raise self.errors.pop(0)
        return "connection"


REFUSED = psycopg.OperationalError('FATAL:  password authentication failed for user "aad_app"')
EXPIRED = psycopg.OperationalError(
    "FATAL:  The access token has expired. Please acquire a new token and retry."
)


def test_token_and_user_injected_and_our_keys_removed() -> None:
    cred = FakeCredential()
    connect = FakeConnect()
    assert (
        login(cred).connect(connect, {"dbname": "d", "token_timeout": 3, "client_id": "x"})
        == "connection"
    )
    (params,) = connect.calls
    assert params["user"] == "aad_app"
    assert params["password"] == cred.issued[0]
    assert "token_timeout" not in params and "client_id" not in params


def test_stale_token_refused_is_refreshed_and_retried_once() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    connect = FakeConnect(REFUSED)
    assert lg.connect(connect, {}) == "connection"
    assert len(connect.calls) == 2
    assert connect.calls[0]["password"] != connect.calls[1]["password"]
    assert cred.calls == 2


def test_expired_at_server_is_refreshed_and_retried_once() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    assert lg.connect(FakeConnect(EXPIRED), {}) == "connection"
    assert cred.calls == 2


@pytest.mark.parametrize("refusal", [REFUSED, EXPIRED], ids=["stale", "expired"])
def test_no_second_token_to_a_server_that_was_not_verified(refusal: Exception) -> None:
    """``sslmode=require`` encrypts but does not check who answers: the one token it
    refused may have gone to an impostor, which must not get a fresh one as well."""
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    connect = FakeConnect(refusal)
    with pytest.raises(psycopg.OperationalError) as info:
        lg.connect(connect, {"host": "db.internal", "sslmode": "require"})
    assert info.value is refusal  # the server's own error, unchanged
    assert len(connect.calls) == 1 and cred.calls == 1  # no fresh token fetched or sent
    # The control: the same refusal from a verified server is retried with a fresh token.
    clock.advance(600)
    connect = FakeConnect(refusal)
    assert lg.connect(connect, {"host": "db.internal", "sslmode": "verify-full"}) == "connection"
    assert len(connect.calls) == 2 and cred.calls == 2


class SlowConnect(FakeConnect):
    """A login that takes ``seconds`` on the injected clock before the server answers."""

    def __init__(self, clock: FakeClock, seconds: float, *errors: BaseException) -> None:
        super().__init__(*errors)
        self.clock, self.seconds = clock, seconds

    def __call__(self, **params: Any) -> str:
        self.clock.advance(self.seconds)
        return super().__call__(**params)


def test_a_token_fetched_for_this_login_that_ran_out_during_it_is_retried_not_blamed() -> None:
    """6 s tokens and a login that takes 5.5 s: the server's generic refusal is about time."""
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=6)
    lg = login(cred)
    object.__setattr__(lg.source, "clock", clock)
    connect = SlowConnect(clock, 5.5, REFUSED)
    assert lg.connect(connect, {}) == "connection"
    assert cred.calls == 2 and len(connect.calls) == 2


def test_out_of_time_twice_is_an_expiry_not_a_wrong_user() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=6)
    lg = login(cred)
    object.__setattr__(lg.source, "clock", clock)
    with pytest.raises(errors.TokenExpiredAtServer, match=r"had expired \d\.\d s before") as info:
        lg.connect(SlowConnect(clock, 6.5, REFUSED, REFUSED), {})
    assert not isinstance(info.value, errors.TokenNotForRole)
    assert "clock" in str(info.value)


def test_expired_says_the_server_of_a_token_just_fetched_clock_skew_no_fetch() -> None:
    cred = FakeCredential()
    connect = FakeConnect(EXPIRED)
    with pytest.raises(errors.TokenExpiredAtServer, match=r"had 3\d{3}\.\d s left"):
        login(cred).connect(connect, {})
    assert cred.calls == 1 and len(connect.calls) == 1


def test_a_refusal_at_the_end_of_a_token_spends_no_refusal_budget() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock, seconds=3600 - 30)  # a login got it a moment earlier
    token = lg.source._token
    assert token is not None and not token.usable(clock.now)
    fresh = lg.source.refresh_after_refusal(token, timed=True)
    assert fresh is not None and cred.calls == 2
    # Moments later the new token is refused as stale (revoked): still cured by a forced
    # refresh, because the refusal about time spent nothing.
    clock.advance(1)
    assert lg.connect(FakeConnect(REFUSED), {}) == "connection"
    assert cred.calls == 3


def test_refused_again_after_refresh_is_a_configuration_error() -> None:
    clock = FakeClock()
    cred = FakeCredential(
        clock, claims={"xms_mirid": "/x/userAssignedIdentities/my-uami", "oid": "o-1"}
    )
    lg = aged(login(cred, user="aad_typo"), clock)
    connect = FakeConnect(REFUSED, REFUSED, REFUSED)
    with pytest.raises(errors.TokenNotForRole) as info:
        lg.connect(connect, {})
    assert len(connect.calls) == 2  # never a loop
    text = str(info.value)
    assert "'default'" in text and "USER 'aad_typo'" in text
    assert "'my-uami'" in text and "o-1" in text  # the principal, from the claims
    assert "create_aad_principal" in text and "aad_<connection name>" in text
    for token in cred.issued:
        assert token not in text


def test_refusal_of_a_token_fetched_for_this_login_fails_fast() -> None:
    cred = FakeCredential()
    connect = FakeConnect(REFUSED)
    with pytest.raises(errors.TokenNotForRole, match="USER 'aad_app'"):
        login(cred).connect(connect, {})
    assert len(connect.calls) == 1 and cred.calls == 1  # no second fetch, no retry


def test_refusals_within_the_interval_do_not_fetch_again() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred, user="aad_typo"), clock)
    with pytest.raises(errors.TokenNotForRole):
        lg.connect(FakeConnect(REFUSED, REFUSED), {})
    assert cred.calls == 2
    for _ in range(50):
        clock.advance(0.5)
        with pytest.raises(errors.TokenNotForRole):
            lg.connect(FakeConnect(REFUSED), {})
    assert cred.calls == 2  # 25 s of refusals: no more identity calls
    clock.advance(3600 / 120)  # the refusal interval: a 120th of the token's lifetime
    with pytest.raises(errors.TokenNotForRole):
        lg.connect(FakeConnect(REFUSED, REFUSED), {})
    assert cred.calls == 3  # one more per interval, at most


def test_a_failed_forced_refresh_is_no_token_not_a_wrong_user() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    cred.error = RuntimeError("HTTP 500 emulated outage")
    connect = FakeConnect(REFUSED, REFUSED)
    with pytest.raises(TokenAcquisitionError, match="emulated outage") as info:
        lg.connect(connect, {})
    assert not isinstance(info.value, errors.LoginRefused)
    assert "'default'" in str(info.value) and "FakeCredential" in str(info.value)
    assert len(connect.calls) == 1  # no second login without a new token
    clock.advance(5)
    with pytest.raises(TokenAcquisitionError, match="emulated outage"):
        lg.connect(FakeConnect(REFUSED), {})  # a failed refresh spent nothing: asked again
    assert cred.calls == 3
    cred.error = None  # the endpoint is back: the very next login works
    assert lg.connect(FakeConnect(REFUSED), {}) == "connection"
    assert cred.calls == 4


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ('FATAL:  role "aad_x" does not exist', errors.RoleMissing),
        (
            "FATAL:  Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens "
            "for role[aad_x]",
            errors.RoleTypeMismatch,
        ),
        ("FATAL:  Service Principal oid mismatch for role[aad_x].", errors.TokenNotForRole),
    ],
)
def test_refusals_no_token_cures_are_not_retried(text: str, cause: type[Exception]) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    connect = FakeConnect(psycopg.OperationalError(text))
    with pytest.raises(cause) as info:
        lg.connect(connect, {})
    assert len(connect.calls) == 1 and cred.calls == 1
    # The fix names the role (FakeCredential's tokens carry no oid: that stays a placeholder).
    assert diagnosis.ADVICE[cause].filled("aad_app", None).fix in str(info.value)


def test_other_errors_not_retried() -> None:
    cred = FakeCredential()
    connect = FakeConnect(psycopg.OperationalError("Connection refused"))
    with pytest.raises(psycopg.OperationalError, match="Connection refused"):
        login(cred).connect(connect, {})
    assert len(connect.calls) == 1 and cred.calls == 1


def test_credential_failure_names_alias_credential_and_scope() -> None:
    cred = FakeCredential()
    cred.error = RuntimeError("no identity here")
    with pytest.raises(TokenAcquisitionError) as info:
        login(cred).connect(FakeConnect(), {})
    text = str(info.value)
    assert "'default'" in text and "FakeCredential" in text
    assert "https://ossrdbms-aad.database.windows.net/.default" in text
    assert "no identity here" in text
    assert info.value.__cause__ is not None


def test_role_from_claims_when_user_unset() -> None:
    mirid = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my-uami"
    connect = FakeConnect()
    login(FakeCredential(claims={"xms_mirid": mirid, "upn": "ignored"}), user=None).connect(
        connect, {}
    )
    assert connect.calls[0]["user"] == "my-uami"

    connect = FakeConnect()
    login(FakeCredential(claims={"upn": "dev@contoso.com"}), user="").connect(connect, {})
    assert connect.calls[0]["user"] == "dev@contoso.com"

    with pytest.raises(RoleNameUnknown, match="Set DATABASES"):
        login(FakeCredential(claims={"oid": "x"}), user=None).connect(FakeConnect(), {})


def test_sovereign_scope_option() -> None:
    lg = login(FakeCredential(), token_scope="china")
    assert lg.scope == "https://ossrdbms-aad.database.chinacloudapi.cn/.default"


def test_bad_numbers_rejected() -> None:
    with pytest.raises(ValueError, match="token_timeout"):
        login(FakeCredential(), token_timeout="soon")
    with pytest.raises(ValueError, match="greater than 0"):
        login(FakeCredential(), token_refresh_margin=-1)


# -- refusals by PostgreSQL's meaning, not Azure's wording only (issue 30) -------------

LDAP_REFUSED = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    'FATAL:  LDAP authentication failed for user "aad_app"'
)
POOLER_REFUSED = psycopg.OperationalError("FATAL:  SASL authentication failed")


def _refused_28p01() -> psycopg.OperationalError:
    exc = psycopg.OperationalError("FATAL:  la autenticación falló")
    exc.sqlstate = "28P01"  # type: ignore[misc]  # where psycopg gives one
    return exc


@pytest.mark.parametrize(
    "refusal",
    [LDAP_REFUSED, POOLER_REFUSED, _refused_28p01()],
    ids=["ldap", "pooler", "28P01"],
)
def test_any_refusal_of_a_stale_token_is_refreshed_and_retried(refusal: Exception) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    connect = FakeConnect(refusal)
    assert lg.connect(connect, {}) == "connection"
    assert len(connect.calls) == 2 and cred.calls == 2


@pytest.mark.parametrize(
    "refusal", [LDAP_REFUSED, POOLER_REFUSED, _refused_28p01()], ids=["ldap", "pooler", "28P01"]
)
def test_any_refusal_of_a_token_fetched_for_this_login_is_the_wrong_role(
    refusal: Exception,
) -> None:
    cred = FakeCredential()
    connect = FakeConnect(refusal)
    with pytest.raises(errors.TokenNotForRole, match="USER 'aad_app'"):
        login(cred).connect(connect, {})
    assert len(connect.calls) == 1 and cred.calls == 1


def test_a_server_out_of_slots_is_named_not_retried() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    lg = aged(login(cred), clock)
    connect = FakeConnect(
        psycopg.OperationalError(
            "FATAL:  remaining connection slots are reserved for non-replication superuser "
            "connections"
        )
    )
    with pytest.raises(errors.TooManyConnections) as info:
        lg.connect(connect, {})
    assert len(connect.calls) == 1 and cred.calls == 1  # no fresh token, no budget spent
    text = str(info.value)
    assert "'default'" in text and "remaining connection slots" in text
    assert diagnosis.ADVICE[errors.TooManyConnections].fix in text
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


@pytest.mark.integration
def test_postgresql_own_refusal_text_against_a_real_server(
    plain_postgres: Any, emulator: Any, make_wrapper: Any
) -> None:
    """The server's own 'LDAP authentication failed for user' (no Azure front): a stale
    token is refreshed and the login retried; a role mapped to another principal is
    named as such, at once."""
    at = {"HOST": plain_postgres.host, "PORT": str(plain_postgres.port)}
    wrapper = make_wrapper(**at)
    wrapper.ensure_connection()
    wrapper.close()
    emulator.revoke_all()  # the cached token is refused now
    before = emulator.stats.token_requests
    wrapper.ensure_connection()  # refused in PostgreSQL's words, refreshed, retried
    assert emulator.stats.token_requests - before == 1
    wrapper.close()

    plain_postgres.create_entra_role("aad_plain_not_mine")  # mapped to no identity of ours
    other = make_wrapper(USER="aad_plain_not_mine", **at)
    with pytest.raises(django.db.OperationalError) as info:
        other.ensure_connection()
    assert isinstance(info.value.__cause__, errors.TokenNotForRole)
    assert 'LDAP authentication failed for user "aad_plain_not_mine"' in str(info.value)


@pytest.mark.integration
def test_a_role_out_of_connection_slots_against_a_real_server(
    postgres: Any, emulator: Any, identity: Any, make_wrapper: Any
) -> None:
    postgres.create_entra_role("aad_no_slots")
    emulator.allow_role("aad_no_slots", identity)
    postgres.execute('ALTER ROLE "aad_no_slots" CONNECTION LIMIT 0')  # 53300 at every login
    wrapper = make_wrapper(USER="aad_no_slots")
    with pytest.raises(django.db.OperationalError) as info:
        wrapper.ensure_connection()
    assert isinstance(info.value.__cause__, errors.TooManyConnections)
    assert "too many connections for role" in str(info.value)
    assert "6432" in str(info.value)  # the advice: PgBouncer, a pool, a bigger tier


@pytest.mark.integration
def test_a_refused_password_says_password_turns_tokens_off(
    postgres: Any, make_wrapper: Any
) -> None:
    """ENGINE django_azure_pg with a PASSWORD: the password login's refusal names the cause."""
    postgres.create_password_role("pw_leftover", "the-right-one")
    wrapper = make_wrapper(USER="pw_leftover", PASSWORD="a-leftover-password")
    with pytest.raises(django.db.OperationalError) as info:
        wrapper.ensure_connection()
    assert isinstance(info.value.__cause__, errors.PasswordRefused)
    text = str(info.value)
    assert "PASSWORD" in text and "password authentication failed" in text
    assert diagnosis.ADVICE[errors.PasswordRefused].fix in text
    assert "a-leftover-password" not in text
    right = make_wrapper(USER="pw_leftover", PASSWORD="the-right-one")
    right.ensure_connection()  # a deliberate password login still works
    right.close()

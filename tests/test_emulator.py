"""The local identity emulator: both protocols, faults, and the LDAP token check."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import psycopg
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

from django_azure_pg._core import claims, timing
from django_azure_pg._core import token_source as tokens
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres
from django_azure_pg_testing.ldap import INVALID_CREDENTIALS, SUCCESS, role_from_dn

from .conftest import ROLE, SCOPE
from .fakes import FakeClock

pytestmark = pytest.mark.integration


def test_app_service_protocol_with_real_credential(emulator: IdentityEmulator) -> None:
    token = ManagedIdentityCredential().get_token(SCOPE)
    found = claims.decode(token.token)
    assert found["aud"] == "https://ossrdbms-aad.database.windows.net"
    assert found["oid"] == emulator.system.object_id
    assert claims.role_name(found) == emulator.system.name
    assert abs(token.expires_on - (time.time() + emulator.lifetime)) < 5


def test_imds_protocol_with_real_credential(
    emulator: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    for key, value in emulator.imds_env().items():
        monkeypatch.setenv(key, value)
    ident = emulator.add_identity("uami-imds")
    token = ManagedIdentityCredential(client_id=ident.client_id).get_token(SCOPE)
    assert claims.role_name(claims.decode(token.token)) == "uami-imds"


def test_identity_header_is_checked(
    emulator: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises((ClientAuthenticationError, CredentialUnavailableError)):
        ManagedIdentityCredential().get_token(SCOPE)


@pytest.mark.parametrize("mode", ["malformed", "error"])
def test_fault_modes_fail_the_real_credential(emulator: IdentityEmulator, mode: str) -> None:
    ident = emulator.add_identity(f"uami-{mode}")
    before = emulator.stats.faulted_requests
    emulator.set_fault(mode)
    try:
        with pytest.raises(Exception) as info:
            ManagedIdentityCredential(client_id=ident.client_id, retry_total=0).get_token(SCOPE)
    finally:
        emulator.clear_faults()
    assert emulator.stats.faulted_requests > before
    assert "Traceback" not in str(info.value)


def test_latency_switch(emulator: IdentityEmulator) -> None:
    emulator.set_fault(latency=0.3)
    try:
        started = time.monotonic()
        ManagedIdentityCredential(client_id=emulator.add_identity("slow").client_id).get_token(
            SCOPE
        )
        assert time.monotonic() - started >= 0.3
    finally:
        emulator.clear_faults()


def test_login_check_rules() -> None:
    clock = FakeClock()
    emu = IdentityEmulator(lifetime=60, clock=clock)
    other = emu.add_identity("uami-other")
    token, _ = emu.issue(emu.system)
    emu.allow_role("aad_app")
    assert emu.check_login("aad_app", token)
    assert emu.check_login(emu.system.name, token)  # a role named after the principal
    assert not emu.check_login("aad_other", token)  # not mapped to this principal
    other_token, _ = emu.issue(other)
    assert not emu.check_login("aad_app", other_token)
    assert not emu.check_login("aad_app", "not-a-token")
    second, _ = emu.issue(emu.system)
    assert emu.check_login("aad_app", token) and emu.check_login("aad_app", second)  # both valid
    clock.advance(61)
    assert not emu.check_login("aad_app", token)
    emu._http.server_close()
    emu._ldap.server_close()


def _bind(port: int, dn: str, password: str) -> int:
    def tlv(tag: int, value: bytes) -> bytes:
        n = len(value)
        length = bytes([n]) if n < 128 else bytes([0x82]) + n.to_bytes(2, "big")
        return bytes([tag]) + length + value

    bind = tlv(0x02, b"\x03") + tlv(0x04, dn.encode()) + tlv(0x80, password.encode())
    message = tlv(0x30, tlv(0x02, b"\x07") + tlv(0x60, bind))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(message)
        reply = s.recv(4096)
    # 30 LL 02 01 07 61 LL 0a 01 <code>
    return reply[reply.index(b"\x0a\x01") + 2]


def test_ldap_wire_protocol(emulator: IdentityEmulator, postgres: LocalPostgres) -> None:
    token, _ = emulator.issue(emulator.system)
    assert role_from_dn("cn=aad_tests,dc=emulator,dc=local") == "aad_tests"
    assert _bind(emulator.ldap_port, f"cn={ROLE},dc=emulator,dc=local", token) == SUCCESS
    assert _bind(emulator.ldap_port, f"cn={ROLE},dc=emulator,dc=local", "x" * 300) == (
        INVALID_CREDENTIALS
    )
    assert _bind(emulator.ldap_port, "cn=someone-else,dc=x", token) == INVALID_CREDENTIALS


def test_postgres_refuses_expired_tokens_and_accepts_overlapping_ones(
    emulator: IdentityEmulator, postgres: LocalPostgres
) -> None:
    old, _ = emulator.issue(emulator.system)
    new, _ = emulator.issue(emulator.system)

    def login(token: str) -> str:
        with psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            user=ROLE,
            password=token,
            dbname="postgres",
            sslmode="require",
        ) as conn:
            return str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]

    assert login(old) == ROLE and login(new) == ROLE  # rotation does not void the older token
    real_clock = emulator.clock
    emulator.clock = lambda: real_clock() + emulator.lifetime + 1
    try:
        # Azure's text, not PostgreSQL's "LDAP authentication failed": the kit's front sends it.
        with pytest.raises(psycopg.OperationalError, match="The access token has expired"):
            login(new)
    finally:
        emulator.clock = real_clock


def test_postgres_refusals_read_as_azure_sends_them(
    emulator: IdentityEmulator, postgres: LocalPostgres
) -> None:
    token, _ = emulator.issue(emulator.system)
    postgres.create_entra_role("aad_not_mine")  # an Entra role mapped to no one we issue for

    def login(user: str, password: str) -> None:
        psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            user=user,
            password=password,
            dbname="postgres",
            sslmode="require",
        ).close()

    with pytest.raises(
        psycopg.OperationalError, match='password authentication failed for user "aad_not_mine"'
    ):
        login("aad_not_mine", token)
    with pytest.raises(psycopg.OperationalError, match='role "aad_nobody" does not exist'):
        login("aad_nobody", token)
    emulator.revoke_all()
    with pytest.raises(
        psycopg.OperationalError, match=f'password authentication failed for user "{ROLE}"'
    ):
        login(ROLE, token)


def test_postgres_requires_password_for_other_roles(postgres: LocalPostgres) -> None:
    postgres.create_password_role("plain_pw", "pw-123")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            user="plain_pw",
            password="wrong",
            dbname="postgres",
            sslmode="require",
        )


def test_sticky_azure_identity_failure_is_recovered(
    emulator: IdentityEmulator, identity: Identity, short_tokens: Callable[[float], None]
) -> None:
    short_tokens(60)  # under 5 minutes: MSAL's cache does not answer, the endpoint does

    # azure-identity's App Service credential keeps failing after one HTTP 500, even once
    # the endpoint has recovered; the token source must start over with a new object.
    def factory() -> ManagedIdentityCredential:
        return ManagedIdentityCredential(client_id=identity.client_id, retry_total=0)

    stuck = factory()
    stuck.get_token(SCOPE)
    clock = FakeClock(time.time())
    source = tokens.TokenSource(factory, SCOPE, label="ManagedIdentityCredential", clock=clock)
    emulator.set_fault("error")
    try:
        with pytest.raises(Exception):  # noqa: B017 — azure-identity's own types
            stuck.get_token(SCOPE)
        with pytest.raises(tokens.TokenError):
            source.get()
    finally:
        emulator.clear_faults()
    with pytest.raises(Exception):  # noqa: B017 — the library's own object stays stuck
        stuck.get_token(SCOPE)
    clock.advance(timing.outage_retry_delay(1))  # the outage cadence (fail fast until then)
    assert source.get()  # ours recovers on the very next attempt


def test_a_client_that_went_away_leaves_no_traceback(
    emulator: IdentityEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker stopped mid-request: the kit's log stays free of tracebacks that read like
    the emulator failing; any other error is still printed."""
    server = emulator._http
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert "Traceback" not in capsys.readouterr().err
    try:
        raise ValueError("a real bug")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a real bug" in capsys.readouterr().err

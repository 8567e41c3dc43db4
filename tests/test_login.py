"""Token login: one retry on a refused token, clear errors, role from claims."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from django_azure_pg.login import (
    RoleNameUnknown,
    TokenAcquisitionError,
    TokenLogin,
    is_refused_login,
)

from .fakes import FakeCredential


def login(cred: FakeCredential, user: str | None = "aad_app", **opts: Any) -> TokenLogin:
    return TokenLogin.from_settings("default", {"credential": cred, **opts}, user, environ={})


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


@pytest.mark.parametrize(
    "text",
    [
        'FATAL:  password authentication failed for user "x"',
        "FATAL: The access token has expired. Please acquire a new token and retry.",
        'FATAL:  LDAP authentication failed for user "x"',
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    assert is_refused_login(psycopg.OperationalError(text))


@pytest.mark.parametrize(
    "text",
    [
        'FATAL:  role "x" does not exist',
        "could not connect to server: Connection refused",
        "SSL connection is required",
        'database "x" does not exist',
    ],
)
def test_other_failures_are_not_refusals(text: str) -> None:
    assert not is_refused_login(psycopg.OperationalError(text))


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


def test_refused_token_retried_exactly_once() -> None:
    cred = FakeCredential()
    connect = FakeConnect(REFUSED)
    assert login(cred).connect(connect, {}) == "connection"
    assert len(connect.calls) == 2
    assert connect.calls[0]["password"] != connect.calls[1]["password"]
    assert cred.calls == 2

    connect = FakeConnect(REFUSED, REFUSED, REFUSED)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(FakeCredential()).connect(connect, {})
    assert len(connect.calls) == 2  # never a loop


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

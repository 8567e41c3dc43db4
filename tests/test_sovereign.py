"""Sovereign clouds: the scope follows the HOST, and the credential asks that cloud's authority."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport

from django_azure_pg._core.clouds import SCOPES, scope_for
from django_azure_pg._core.credentials import choose
from django_azure_pg._core.login import TokenLogin

CHINA_HOST = "shop.postgres.database.chinacloudapi.cn"
USGOV_HOST = "shop.postgres.database.usgovcloudapi.net"
PUBLIC_HOST = "shop.postgres.database.azure.com"
SP = {
    "AZURE_POSTGRESQL_CLIENTID": "00000000-0000-0000-0000-0000000000c1",
    "AZURE_POSTGRESQL_CLIENTSECRET": "not-a-real-secret",
    "AZURE_POSTGRESQL_TENANTID": "00000000-0000-0000-0000-0000000000a1",
}


def test_scope_follows_the_host() -> None:
    assert scope_for(None, CHINA_HOST) == SCOPES["china"]
    assert scope_for("", USGOV_HOST.upper()) == SCOPES["usgov"]
    assert scope_for(None, PUBLIC_HOST) == SCOPES["public"]
    assert scope_for(None, "127.0.0.1") == SCOPES["public"]
    assert scope_for("china", "127.0.0.1") == SCOPES["china"]


def test_scope_of_another_cloud_than_the_host_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="django_azure_pg"):
        assert scope_for("public", CHINA_HOST) == SCOPES["public"]  # kept, but named
    assert "china cloud" in caplog.text and "public cloud" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="django_azure_pg"):
        scope_for("china", CHINA_HOST)
        scope_for("https://example.test/.default", CHINA_HOST)  # a custom scope: no opinion
    assert caplog.text == ""


def test_token_login_takes_the_scope_from_the_host() -> None:
    login = TokenLogin.from_settings("sov", {}, "u", environ=SP, host=CHINA_HOST)
    assert login.scope == SCOPES["china"]
    assert login.choice.authority == "login.chinacloudapi.cn"


@pytest.mark.parametrize(
    ("scope", "environ", "authority"),
    [
        (SCOPES["china"], SP, "login.chinacloudapi.cn"),
        (SCOPES["usgov"], SP, "login.microsoftonline.us"),
        (SCOPES["public"], SP, None),
        (SCOPES["china"], {**SP, "AZURE_AUTHORITY_HOST": "login.example.test"}, None),
        (SCOPES["china"], {"AZURE_POSTGRESQL_CLIENTID": "c"}, None),  # managed identity
    ],
)
def test_authority_matches_the_scope(
    scope: str, environ: dict[str, str], authority: str | None
) -> None:
    assert choose({}, environ, scope).authority == authority


class Offline(Exception):
    """Raised instead of sending: not an azure-core error, so no retry and no wait."""


@pytest.fixture
def first_request_host(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record where a real azure-identity credential sends its first request, then fail it."""
    hosts: list[str] = []

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        hosts.append(urlsplit(request.url).hostname or "")
        raise Offline(request.url)

    monkeypatch.setattr(RequestsTransport, "send", send)
    return hosts


def test_service_principal_asks_the_china_authority(first_request_host: list[str]) -> None:
    credential = choose({}, SP, SCOPES["china"]).factory()()
    with pytest.raises((Offline, ClientAuthenticationError)):  # MSAL wraps what it saw
        credential.get_token(SCOPES["china"])
    assert first_request_host and set(first_request_host) == {"login.chinacloudapi.cn"}


def test_workload_identity_asks_the_usgov_authority(
    first_request_host: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("federated-token")
    environ = {
        "AZURE_POSTGRESQL_CLIENTID": "c",
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000000a1",
    }
    for name, value in environ.items():  # azure-identity reads the token file from os.environ
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AZURE_AUTHORITY_HOST", raising=False)
    choice = choose({}, environ, SCOPES["usgov"])
    assert choice.kind == "workload_identity"
    credential = choice.factory()()
    with pytest.raises(Offline):
        credential.get_token(SCOPES["usgov"])
    assert first_request_host and set(first_request_host) == {"login.microsoftonline.us"}


def test_bleu_france_sovereign_cloud() -> None:
    bleu_host = "shop.postgres.database.sovcloud-api.fr"
    assert scope_for(None, bleu_host) == "https://ossrdbms-aad.database.sovcloud-api.fr/.default"
    login = TokenLogin.from_settings("bleu", {}, "u", environ=SP, host=bleu_host)
    assert login.choice.authority == "login.sovcloud-identity.fr"
    managed = TokenLogin.from_settings(
        "bleu", {}, "u", environ={"IDENTITY_ENDPOINT": "http://127.0.0.1:1/"}, host=bleu_host
    )
    assert managed.choice.authority is None  # a managed identity's endpoint is local

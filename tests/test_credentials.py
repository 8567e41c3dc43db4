"""Which credential is chosen, and why."""

from __future__ import annotations

import pytest
from azure.identity import (
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

from django_azure_pg.clouds import PUBLIC_SCOPE, scope_for
from django_azure_pg.credentials import CredentialConfigError, choose

from .fakes import FakeCredential

SC = "AZURE_POSTGRESQL_"
module_credential = FakeCredential()


def make_credential() -> FakeCredential:
    return FakeCredential()


def test_nothing_means_default_azure_credential() -> None:
    choice = choose({}, {})
    assert choice.kind == "default"
    assert isinstance(choice.factory()(), DefaultAzureCredential)
    assert "AZURE_POSTGRESQL_CLIENTID" in choice.reason


def test_client_id_alone_is_user_assigned_managed_identity() -> None:
    choice = choose({}, {SC + "CLIENTID": "abc"})
    assert choice.kind == "managed_identity"
    assert choice.name == "ManagedIdentityCredential(client_id=abc)"
    assert isinstance(choice.factory()(), ManagedIdentityCredential)


def test_service_principal_from_service_connector_variables() -> None:
    env = {SC + "CLIENTID": "abc", SC + "CLIENTSECRET": "shh-secret", SC + "TENANTID": "t1"}
    choice = choose({}, env)
    assert choice.kind == "service_principal"
    assert isinstance(choice.factory()(), ClientSecretCredential)
    assert "shh-secret" not in repr(choice)
    assert "shh-secret" not in choice.reason + choice.name
    assert "shh-secret" not in repr(choice.key())


def test_workload_identity_on_aks(tmp_path: object) -> None:
    env = {
        SC + "CLIENTID": "abc",
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
        "AZURE_TENANT_ID": "t1",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    }
    choice = choose({}, env)
    assert choice.kind == "workload_identity"
    assert choice.tenant_id == "t1"


def test_options_win_over_environment() -> None:
    choice = choose({"client_id": "from-options"}, {SC + "CLIENTID": "from-env"})
    assert choice.client_id == "from-options"


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({SC + "CLIENTSECRET": "s"}, "AZURE_POSTGRESQL_CLIENTID\\) and tenant_id"),
        ({SC + "CLIENTSECRET": "s", SC + "CLIENTID": "c"}, "AZURE_POSTGRESQL_TENANTID\\) is not set"),
    ],
)
def test_contradictory_variables_are_named(env: dict[str, str], missing: str) -> None:
    with pytest.raises(CredentialConfigError, match=missing) as info:
        choose({}, env)
    assert "'s'" not in str(info.value)


def test_options_win_key_by_key_and_variables_fill_the_rest() -> None:
    env = {SC + "CLIENTID": "from-env", SC + "CLIENTSECRET": "s", SC + "TENANTID": "t-env"}
    choice = choose({"tenant_id": "t-opt"}, env)
    assert choice.kind == "service_principal"
    assert (choice.client_id, choice.tenant_id) == ("from-env", "t-opt")
    assert "OPTIONS['tenant_id']" in choice.reason and SC + "CLIENTID" in choice.reason
    assert choose({"client_id": "mine"}, {SC + "CLIENTID": "theirs"}).client_id == "mine"


def test_explicit_object_callable_and_path() -> None:
    obj = FakeCredential()
    choice = choose({"credential": obj}, {SC + "CLIENTID": "ignored"})
    assert choice.kind == "explicit" and choice.factory()() is obj
    assert not choice.rebuilds

    choice = choose({"credential": make_credential}, {})
    assert choice.rebuilds
    assert isinstance(choice.factory()(), FakeCredential)
    assert choice.factory()() is not choice.factory()()

    choice = choose({"credential": "tests.test_credentials.module_credential"}, {})
    assert choice.factory()() is module_credential
    choice = choose({"credential": "tests.test_credentials.make_credential"}, {})
    assert isinstance(choice.factory()(), FakeCredential)


def test_bad_explicit_credentials() -> None:
    with pytest.raises(CredentialConfigError, match="must be a TokenCredential"):
        choose({"credential": 42}, {})
    with pytest.raises(CredentialConfigError, match="Cannot import"):
        choose({"credential": "tests.nowhere.cred"}, {}).factory()
    with pytest.raises(CredentialConfigError, match="returned int"):
        choose({"credential": lambda: 3}, {}).factory()()


def test_scopes() -> None:
    assert scope_for(None) == PUBLIC_SCOPE
    assert scope_for("china").endswith("chinacloudapi.cn/.default")
    assert scope_for("usgov").endswith("usgovcloudapi.net/.default")
    assert scope_for("https://example/.default") == "https://example/.default"

"""Which credential is chosen, and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import (
    ClientSecretCredential,
    DefaultAzureCredential,
    EnvironmentCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from django_azure_pg._core.clouds import PUBLIC_SCOPE, scope_for
from django_azure_pg._core.credentials import CredentialConfigError, choose

from .fakes import FakeCredential

SC = "AZURE_POSTGRESQL_"
module_credential = FakeCredential()


def make_credential() -> FakeCredential:
    return FakeCredential()


@pytest.fixture(autouse=True)
def _not_an_azure_vm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """This machine's own chassis must not decide the tests (they set the sign themselves)."""
    tag = tmp_path / "chassis_asset_tag"
    tag.write_text("No Asset Tag\n")
    monkeypatch.setattr("django_azure_pg._core.credentials.CHASSIS_ASSET_TAG_FILE", str(tag))
    yield tag


def test_nothing_means_default_azure_credential() -> None:
    choice = choose({}, {})
    assert choice.kind == "default"
    assert isinstance(choice.factory()(), DefaultAzureCredential)
    assert "nothing here says Azure" in choice.reason


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
        (
            {SC + "CLIENTSECRET": "s", SC + "CLIENTID": "c"},
            "AZURE_POSTGRESQL_TENANTID\\) is not set",
        ),
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


# -- the environment's own credential: deterministic inside Azure (issue 23) ---

APP_SERVICE = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token", "IDENTITY_HEADER": "h"}
WORKLOAD = {
    "AZURE_CLIENT_ID": "wi-client",
    "AZURE_TENANT_ID": "t1",
    "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
    "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    "KUBERNETES_SERVICE_HOST": "10.0.0.1",
}


@pytest.mark.parametrize(
    ("where", "env", "kind", "cls", "says"),
    [
        (
            "App Service / Functions",
            {**APP_SERVICE, "WEBSITE_SITE_NAME": "app"},
            "managed_identity",
            ManagedIdentityCredential,
            "IDENTITY_ENDPOINT",
        ),
        (
            "Container Apps",
            {**APP_SERVICE, "CONTAINER_APP_NAME": "app"},
            "managed_identity",
            ManagedIdentityCredential,
            "IDENTITY_ENDPOINT",
        ),
        (
            "Cloud Shell / Azure ML",
            {"MSI_ENDPOINT": "http://127.0.0.1:1/"},
            "managed_identity",
            ManagedIdentityCredential,
            "MSI_ENDPOINT",
        ),
        (
            "AKS pod, node identity",
            {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
            "managed_identity",
            ManagedIdentityCredential,
            "KUBERNETES_SERVICE_HOST",
        ),
        (
            "AKS workload identity",
            WORKLOAD,
            "workload_identity",
            WorkloadIdentityCredential,
            "AZURE_FEDERATED_TOKEN_FILE",
        ),
        (
            "service principal variables",
            {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "shh"},
            "environment",
            EnvironmentCredential,
            "AZURE_CLIENT_SECRET",
        ),
        (
            "laptop",
            {"PATH": "/usr/bin"},
            "default",
            DefaultAzureCredential,
            "nothing here says Azure",
        ),
    ],
)
def test_credential_per_environment(
    where: str,
    env: dict[str, str],
    kind: str,
    cls: type,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():  # WorkloadIdentityCredential reads them when built
        monkeypatch.setenv(name, value)
    choice = choose({}, env)
    assert choice.kind == kind, where
    assert says in choice.reason, choice.reason
    assert isinstance(choice.factory()(), cls)
    assert "shh" not in choice.reason + repr(choice)


def test_azure_vm_is_known_by_its_chassis(_not_an_azure_vm: Path) -> None:
    _not_an_azure_vm.write_text("7783-7084-3265-9085-8269-3286-77\n")
    choice = choose({}, {})
    assert (choice.kind, choice.name) == ("managed_identity", "ManagedIdentityCredential")
    assert "asset tag" in choice.reason
    user_assigned = choose({}, {"AZURE_CLIENT_ID": "uami"})
    assert user_assigned.name == "ManagedIdentityCredential(client_id=uami)"


def test_service_connector_still_wins_inside_azure() -> None:
    choice = choose({}, {**APP_SERVICE, SC + "CLIENTID": "sc-uami"})
    assert (choice.kind, choice.client_id) == ("managed_identity", "sc-uami")


@pytest.mark.parametrize(
    ("value", "env", "kind"),
    [
        ("ManagedIdentityCredential", {}, "managed_identity"),  # names are case-insensitive
        (
            "managedidentitycredential",
            {"AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"},
            "managed_identity",
        ),
        ("workloadidentitycredential", {}, "workload_identity"),
        ("environmentcredential", APP_SERVICE, "environment"),
        ("dev", APP_SERVICE, "default"),  # the user asks for the developer chain, even in Azure
        ("azureclicredential", APP_SERVICE, "default"),  # azure-identity narrows it to the CLI
        ("prod", APP_SERVICE, "managed_identity"),
        (
            "prod",
            {},
            "default",
        ),  # narrowed to Environment/Workload/ManagedIdentity by azure-identity
    ],
)
def test_azure_token_credentials_is_honoured(value: str, env: dict[str, str], kind: str) -> None:
    choice = choose({}, {**env, "AZURE_TOKEN_CREDENTIALS": value})
    assert choice.kind == kind
    assert f"AZURE_TOKEN_CREDENTIALS={value.lower()}" in choice.reason


def test_azure_token_credentials_narrows_default_azure_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "azureclicredential")
    built = choose({}, {"AZURE_TOKEN_CREDENTIALS": "azureclicredential"}).factory()()
    assert [type(c).__name__ for c in built.credentials] == ["AzureCliCredential"]


def test_bad_azure_token_credentials_is_named() -> None:
    with pytest.raises(
        CredentialConfigError, match=r"AZURE_TOKEN_CREDENTIALS='production'.*prod, dev"
    ):
        choose({}, {"AZURE_TOKEN_CREDENTIALS": "production"})


# -- the credentials we build: one HTTP call per attempt, calls that end ------------------


def test_bounded_pipeline_keywords() -> None:
    from django_azure_pg._core import credentials

    assert credentials.bounded(None) == {"retry_total": credentials.CREDENTIAL_RETRIES}
    found = credentials.bounded(4.0)
    assert (
        found["connection_timeout"]
        == found["read_timeout"]
        == 4.0 * (credentials.HTTP_TIMEOUT_SHARE)
    )


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["error", "hang"])
def test_a_built_managed_identity_makes_one_call_that_ends_within_the_timeout(
    fault: str, emulator: Any, identity: Any
) -> None:
    """azure-identity's own cycle (retries after 0, 1.6 and 3.2 s on HTTP 500; 300 s reads
    on a hang) is not what a fetch waits for: the token cache retries instead."""
    import time

    from azure.core.exceptions import AzureError

    from django_azure_pg._core import credentials

    choice = credentials.choose({"client_id": identity.client_id}, {**emulator.app_service_env()})
    credential = choice.factory(timeout=0.6)()
    before = emulator.stats.token_requests
    emulator.set_fault(fault)
    began = time.monotonic()
    try:
        with pytest.raises((AzureError, ValueError)):
            credential.get_token(PUBLIC_SCOPE)
        took = time.monotonic() - began
        asked = emulator.stats.token_requests - before
    finally:
        emulator.clear_faults()
    assert asked == 1 + credentials.CREDENTIAL_RETRIES
    assert took < 0.6 + 0.3, took

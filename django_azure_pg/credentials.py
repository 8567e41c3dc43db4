"""Choose the azure-identity credential for a database alias.

Order: an explicit credential in OPTIONS; otherwise what Service Connector put
in the environment (client id + secret + tenant → service principal; client id
alone → user-assigned managed identity, or workload identity on AKS); nothing →
``DefaultAzureCredential`` (system-assigned identity in Azure, ``az login`` on a
laptop). One credential object per configuration and process, so the
credential's own cache works too.

No Django import here.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure import identity
from azure.core.credentials import TokenCredential

from .tokens import CredentialFactory

PUBLIC_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
SCOPES = {
    "public": PUBLIC_SCOPE,
    "china": "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
    "usgov": "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
}
"""Token scope per cloud; ``OPTIONS["token_scope"]`` takes a URL or one of these names."""

SERVICE_CONNECTOR_PREFIX = "AZURE_POSTGRESQL_"
CLIENT_ID, CLIENT_SECRET, TENANT_ID = "CLIENTID", "CLIENTSECRET", "TENANTID"
FEDERATED_TOKEN_FILE = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 — a variable name


class CredentialConfigError(ValueError):
    """The settings and environment do not describe one usable credential."""


@dataclass(frozen=True)
class CredentialChoice:
    """Which credential to build, and why — printable, never holding a secret."""

    kind: str
    reason: str
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    explicit: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        if self.kind == "explicit":
            return _describe_explicit(self.explicit)
        cls = {
            "service_principal": "ClientSecretCredential",
            "workload_identity": "WorkloadIdentityCredential",
            "managed_identity": "ManagedIdentityCredential",
            "default": "DefaultAzureCredential",
        }[self.kind]
        return f"{cls}(client_id={self.client_id})" if self.client_id else cls

    def key(self) -> Hashable:
        if self.kind == "explicit":
            try:
                hash(self.explicit)
            except TypeError:
                return ("explicit", id(self.explicit))
            return ("explicit", self.explicit)
        digest = (
            hashlib.sha256(self.client_secret.encode()).hexdigest() if self.client_secret else None
        )
        return (self.kind, self.client_id, self.tenant_id, digest)

    @property
    def rebuilds(self) -> bool:
        """Whether the factory makes a new object (so a forked child gets its own)."""
        return not (self.kind == "explicit" and _is_credential(_resolve(self.explicit)))

    def factory(self) -> CredentialFactory:
        if self.kind == "explicit":
            return _explicit_factory(self.explicit)
        if self.kind == "service_principal":
            assert self.tenant_id and self.client_id and self.client_secret
            tenant, client, secret = self.tenant_id, self.client_id, self.client_secret
            return lambda: identity.ClientSecretCredential(tenant, client, secret)
        if self.kind == "workload_identity":
            client_id, tenant_id = self.client_id, self.tenant_id
            kwargs = {"tenant_id": tenant_id} if tenant_id else {}
            return lambda: identity.WorkloadIdentityCredential(client_id=client_id, **kwargs)
        if self.kind == "managed_identity":
            client_id = self.client_id
            return lambda: identity.ManagedIdentityCredential(client_id=client_id)
        return lambda: identity.DefaultAzureCredential()


def env_names(prefix: str = SERVICE_CONNECTOR_PREFIX) -> tuple[str, str, str]:
    return prefix + CLIENT_ID, prefix + CLIENT_SECRET, prefix + TENANT_ID


def choose(options: Mapping[str, Any], environ: Mapping[str, str]) -> CredentialChoice:
    """Pick the credential for one alias from its OPTIONS and the environment."""
    explicit = options.get("credential")
    if explicit is not None:
        if not (isinstance(explicit, str) or callable(explicit) or _is_credential(explicit)):
            raise CredentialConfigError(
                "OPTIONS['credential'] must be a TokenCredential, a zero-argument callable "
                f"returning one, or a dotted import path; got {type(explicit).__name__}"
            )
        return CredentialChoice("explicit", "OPTIONS['credential'] is set", explicit=explicit)

    from_options = {k: options.get(k) for k in ("client_id", "client_secret", "tenant_id")}
    if any(from_options.values()):
        client_id, secret, tenant = (
            from_options[k] for k in ("client_id", "client_secret", "tenant_id")
        )
        where = "OPTIONS"
        names = {
            "client_id": "client_id",
            "client_secret": "client_secret",
            "tenant_id": "tenant_id",
        }
    else:
        id_var, secret_var, tenant_var = env_names()
        client_id, secret, tenant = (
            environ.get(id_var),
            environ.get(secret_var),
            environ.get(tenant_var),
        )
        where = "environment"
        names = {"client_id": id_var, "client_secret": secret_var, "tenant_id": tenant_var}

    if secret and not (client_id and tenant):
        missing = [names[k] for k, v in (("client_id", client_id), ("tenant_id", tenant)) if not v]
        raise CredentialConfigError(
            f"A client secret is set ({names['client_secret']}) but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing from the {where}; a service principal "
            "needs all three"
        )
    if client_id and secret and tenant:
        return CredentialChoice(
            "service_principal",
            f"{names['client_id']}, {names['client_secret']} and {names['tenant_id']} are set",
            client_id=client_id,
            tenant_id=tenant,
            client_secret=secret,
        )
    if client_id and environ.get(FEDERATED_TOKEN_FILE):
        return CredentialChoice(
            "workload_identity",
            f"{names['client_id']} and {FEDERATED_TOKEN_FILE} are set",
            client_id=client_id,
            tenant_id=tenant or environ.get("AZURE_TENANT_ID"),
        )
    if client_id:
        return CredentialChoice(
            "managed_identity",
            f"{names['client_id']} is set (user-assigned managed identity)",
            client_id=client_id,
        )
    return CredentialChoice(
        "default",
        f"no credential in OPTIONS and none of {', '.join(env_names())} in the environment",
    )


def scope_for(value: str | None) -> str:
    if not value:
        return PUBLIC_SCOPE
    return SCOPES.get(value, value)


def _is_credential(obj: Any) -> bool:
    return callable(getattr(obj, "get_token", None)) and not isinstance(obj, type)


def _resolve(explicit: Any) -> Any:
    if not isinstance(explicit, str):
        return explicit
    module_name, _, attr = explicit.rpartition(".")
    if not module_name:
        raise CredentialConfigError(f"OPTIONS['credential'] {explicit!r} is not a dotted path")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CredentialConfigError(
            f"Cannot import OPTIONS['credential'] {explicit!r}: {exc}"
        ) from exc


def _explicit_factory(explicit: Any) -> CredentialFactory:
    resolved = _resolve(explicit)
    if _is_credential(resolved):
        return lambda: resolved
    if callable(resolved):
        return _checked(resolved)
    raise CredentialConfigError(
        f"OPTIONS['credential'] {explicit!r} is neither a TokenCredential nor a callable"
    )


def _checked(make: Callable[[], Any]) -> CredentialFactory:
    def build() -> TokenCredential:
        credential = make()
        if not _is_credential(credential):
            raise CredentialConfigError(
                f"OPTIONS['credential'] callable {make!r} returned "
                f"{type(credential).__name__}, not a TokenCredential"
            )
        return credential  # type: ignore[no-any-return]

    return build


def _describe_explicit(explicit: Any) -> str:
    if isinstance(explicit, str):
        return explicit
    if isinstance(explicit, type):
        return explicit.__name__
    if _is_credential(explicit):
        return type(explicit).__name__
    return getattr(explicit, "__qualname__", type(explicit).__name__)

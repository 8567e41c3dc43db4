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

import dataclasses
import hashlib
import importlib
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure import identity
from azure.core.credentials import TokenCredential

from . import clouds, forksafe
from ._names import SERVICE_CONNECTOR_PREFIX as SERVICE_CONNECTOR_PREFIX
from ._names import SERVICE_CONNECTOR_SUFFIXES
from .redaction import install_log_redaction
from .tokens import CredentialFactory, observe_response

_OBSERVED: dict[str, Any] = {"raw_response_hook": observe_response}
"""Lets the token cache see HTTP 429 / Retry-After from the identity endpoint."""

logger = logging.getLogger("django_azure_pg.credentials")

FEDERATED_TOKEN_FILE = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 — a variable name
IDENTITY_HINTS = (
    "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_CLIENT_ID", FEDERATED_TOKEN_FILE,
    "AZURE_POD_IDENTITY_AUTHORITY_HOST", "WEBSITE_SITE_NAME", "AZURE_TOKEN_CREDENTIALS",
)  # fmt: skip
"""Variables through which azure-identity finds an identity (or App Service announces one).
IMDS on VMs and AKS nodes sets none: their absence proves nothing there."""


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
    authority: str | None = None

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
        return (self.kind, self.client_id, self.tenant_id, digest, self.authority)

    @property
    def rebuilds(self) -> bool:
        """Whether the factory makes a new object (so a forked child gets its own)."""
        return not (self.kind == "explicit" and _is_credential(_resolve(self.explicit)))

    def factory(self) -> CredentialFactory:
        if self.kind == "explicit":
            return _explicit_factory(self.explicit)
        cloud: dict[str, Any] = {"authority": self.authority} if self.authority else {}
        if self.kind == "service_principal":
            assert self.tenant_id and self.client_id and self.client_secret
            tenant, client, secret = self.tenant_id, self.client_id, self.client_secret
            return lambda: identity.ClientSecretCredential(
                tenant, client, secret, **cloud, **_OBSERVED
            )
        if self.kind == "workload_identity":
            client_id, tenant_id = self.client_id, self.tenant_id
            kwargs: dict[str, Any] = {"tenant_id": tenant_id} if tenant_id else {}
            return lambda: identity.WorkloadIdentityCredential(
                client_id=client_id, **kwargs, **cloud, **_OBSERVED
            )
        if self.kind == "managed_identity":
            client_id = self.client_id
            return lambda: identity.ManagedIdentityCredential(client_id=client_id, **_OBSERVED)
        return lambda: identity.DefaultAzureCredential(**cloud, **_OBSERVED)


def env_names(prefix: str = SERVICE_CONNECTOR_PREFIX) -> dict[str, str]:
    """Credential key → the Service Connector variable standing for it."""
    return {key: prefix + suffix for key, suffix in SERVICE_CONNECTOR_SUFFIXES.items()}


def choose(
    options: Mapping[str, Any], environ: Mapping[str, str], scope: str | None = None
) -> CredentialChoice:
    """Pick the credential for one alias from its OPTIONS and the environment.

    ``scope`` (from :func:`clouds.scope_for`) selects the Entra authority for a
    sovereign cloud unless ``AZURE_AUTHORITY_HOST`` already names one.
    """
    choice = _choose(options, environ)
    authority = clouds.authority_for(scope, environ)
    if authority and choice.kind in {"service_principal", "workload_identity", "default"}:
        return dataclasses.replace(choice, authority=authority)
    return choice


def _choose(options: Mapping[str, Any], environ: Mapping[str, str]) -> CredentialChoice:
    explicit = options.get("credential")
    if explicit is not None:
        if not (isinstance(explicit, str) or callable(explicit) or _is_credential(explicit)):
            raise CredentialConfigError(
                "OPTIONS['credential'] must be a TokenCredential, a zero-argument callable "
                f"returning one, or a dotted import path; got {type(explicit).__name__}"
            )
        return CredentialChoice("explicit", "OPTIONS['credential'] is set", explicit=explicit)

    # Key by key: OPTIONS wins, Service Connector's variable fills what OPTIONS leaves out.
    names: dict[str, str] = {}
    values: dict[str, str | None] = {}
    for key, var in env_names().items():
        if options.get(key):
            names[key], values[key] = f"OPTIONS[{key!r}]", options[key]
        elif environ.get(var):
            names[key], values[key] = var, environ[var]
        else:
            names[key], values[key] = f"{key} (OPTIONS[{key!r}] or {var})", None
    client_id, secret, tenant = values["client_id"], values["client_secret"], values["tenant_id"]

    if secret and not (client_id and tenant):
        missing = [names[k] for k, v in (("client_id", client_id), ("tenant_id", tenant)) if not v]
        raise CredentialConfigError(
            f"A client secret is set ({names['client_secret']}) but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; a service principal needs all three"
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
        "no credential, client_id, client_secret or tenant_id in OPTIONS and none of "
        f"{', '.join(env_names().values())} in the environment",
    )


def is_credential(obj: Any) -> bool:
    """An object (not a class) with a ``get_token`` method."""
    return callable(getattr(obj, "get_token", None)) and not isinstance(obj, type)


_is_credential = is_credential


def resolve_explicit(explicit: Any) -> Any:
    """``OPTIONS["credential"]`` with a dotted path imported (a path is not a secret)."""
    if not isinstance(explicit, str):
        return explicit
    module_name, _, attr = explicit.rpartition(".")
    if not module_name or not attr or "\x00" in explicit:
        raise CredentialConfigError(
            f"OPTIONS['credential'] {explicit!r} is not a dotted import path (module.name)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CredentialConfigError(
            f"Cannot import OPTIONS['credential'] {explicit!r}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        resolved = getattr(module, attr)
    except AttributeError:
        raise CredentialConfigError(
            f"Cannot import OPTIONS['credential'] {explicit!r}: module {module_name!r} has no "
            f"attribute {attr!r}"
        ) from None
    return resolved


_resolve = resolve_explicit


def _explicit_factory(explicit: Any) -> CredentialFactory:
    resolved = _resolve(explicit)
    if _is_credential(resolved):
        forksafe.watch(resolved)
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


install_log_redaction()  # azure-identity's and msal's loggers exist now that they are imported

"""Choose the azure-identity credential for a database alias.

Order: an explicit credential in OPTIONS; otherwise what Service Connector put
in the environment (client id + secret + tenant → service principal; client id
alone → user-assigned managed identity, or workload identity on AKS); otherwise
what the environment itself says (``AZURE_TOKEN_CREDENTIALS``; service-principal
variables; workload identity; a managed-identity endpoint; an Azure VM or a
Kubernetes pod, where IMDS answers) → that one credential; and
``DefaultAzureCredential`` only where nothing says "Azure" (a laptop: ``az
login``). One credential object per configuration and process, so the
credential's own cache works too.

Why not ``DefaultAzureCredential`` everywhere: Microsoft's authentication best
practices, "Use deterministic credentials in production environments"
(https://learn.microsoft.com/dotnet/azure/sdk/authentication/best-practices
#use-deterministic-credentials-in-production-environments): the chain hides a
failing managed identity behind the next credential — an ``az login`` someone
ran on the VM silently becomes the app's identity — and a failure walks (and
prints) the whole chain. Aspire 13.2 chooses the same way
(https://aspire.dev/integrations/cloud/azure/azure-default-credential/).

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

from ..redaction import install_log_redaction
from . import clouds, forksafe, telemetry
from .names import SERVICE_CONNECTOR_PREFIX as SERVICE_CONNECTOR_PREFIX
from .names import SERVICE_CONNECTOR_SUFFIXES
from .token_source import CredentialFactory, observe_response

_OBSERVED: dict[str, Any] = {"raw_response_hook": telemetry.observing(observe_response)}
"""Lets the token cache see HTTP 429 / Retry-After from the identity endpoint."""

CREDENTIAL_RETRIES = 0
"""Retries azure-core makes inside one fetch by a credential we build (``retry_total``).

azure-identity builds each credential's HTTP pipeline from its keyword arguments:
``build_pipeline(**kwargs)`` makes ``RetryPolicy(**kwargs)`` (IMDS:
``ImdsRetryPolicy(**dict(PIPELINE_SETTINGS, **kwargs))``, so ours win) and
``RequestsTransport(**kwargs)`` (sdk/identity/azure-identity/azure/identity/_internal/
pipeline.py and _credentials/imds.py, azure-identity 1.27.0; the 1.16.0 release notes:
"Users can customize this setting with the retry_backoff_factor parameter:
ManagedIdentityCredential(retry_backoff_factor=2)"). Left alone, an endpoint answering
HTTP 500 holds each fetch for azure-core's whole cycle — retries after 0 s, 1.6 s and
3.2 s (``RetryPolicy``: ``retry_status`` 3, ``retry_backoff_factor`` 0.8, no wait
before the first retry: ``get_backoff_time``; sdk/core/azure-core/azure/core/pipeline/
policies/_retry.py, azure-core 1.41.0), 4.86 s measured; IMDS's five retries take 24 s,
75 s on HTTP 410 — and every request waited for it. Retrying is the token cache's job
instead (timing.outage_retry_delay: 0.125 s, 0.25 s, then every 0.5 s while requests
arrive), callers failing at once meanwhile; a Retry-After is honoured there too."""

HTTP_TIMEOUT_SHARE = 1 / (1 + CREDENTIAL_RETRIES)
"""Each HTTP call of a fetch may take this share of ``OPTIONS["token_timeout"]``
(azure-core ``ConnectionConfiguration``: ``connection_timeout`` and ``read_timeout``,
300 s each by default, sdk/core/azure-core/azure/core/configuration.py): a fetch from an
endpoint that accepts and never answers ends by itself within the timeout, so the next
attempt is not held back until the cache abandons it (``TokenSource.stuck_after``)."""


def bounded(timeout: float | None) -> dict[str, Any]:
    """The pipeline keywords for credentials we build: few retries, HTTP calls that end."""
    found: dict[str, Any] = {"retry_total": CREDENTIAL_RETRIES}
    if timeout is not None:
        per_call = max(timeout * HTTP_TIMEOUT_SHARE, 0.05)
        found.update(connection_timeout=per_call, read_timeout=per_call)
    return found


logger = logging.getLogger(__name__)

FEDERATED_TOKEN_FILE = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 — a variable name
TOKEN_CREDENTIALS_VAR = "AZURE_TOKEN_CREDENTIALS"  # noqa: S105 — a variable name
IDENTITY_HINTS = (
    "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_CLIENT_ID", FEDERATED_TOKEN_FILE,
    "AZURE_POD_IDENTITY_AUTHORITY_HOST", "WEBSITE_SITE_NAME", TOKEN_CREDENTIALS_VAR,
)  # fmt: skip
"""Variables through which azure-identity finds an identity (or App Service announces one).
IMDS on VMs and AKS nodes sets none: their absence proves nothing there."""

MANAGED_IDENTITY_ENDPOINTS = {
    "IDENTITY_ENDPOINT": "an App Service, Functions or Container Apps managed-identity "
    "endpoint (or Azure Arc / Service Fabric)",
    "MSI_ENDPOINT": "a Cloud Shell or Azure Machine Learning managed-identity endpoint",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST": "an Instance Metadata Service address",
}
"""Variables from which ManagedIdentityCredential picks its protocol (azure-identity
``_credentials/managed_identity.py``), and where they come from."""

# IMDS sets no environment variable: on an Azure VM (AKS nodes included) it is only an
# address, 169.254.169.254. Offline signs of such a host: Azure's chassis asset tag
# (MicrosoftDocs/azure-docs, articles/automation/troubleshoot/update-agent-issues-linux.md,
# "Dmidecode check") and, inside a pod, Kubernetes' own service variable.
AZURE_CHASSIS_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
CHASSIS_ASSET_TAG_FILE = "/sys/class/dmi/id/chassis_asset_tag"

# AZURE_TOKEN_CREDENTIALS as azure-identity reads it (azure-identity 1.27,
# _internal/utils.py process_credential_exclusions; "Exclude a credential type
# category", https://learn.microsoft.com/azure/developer/python/sdk/authentication/
# credential-chains): "prod" keeps Environment, WorkloadIdentity and ManagedIdentity,
# "dev" the developer tools, and a credential's name (lower case) keeps that one alone.
TOKEN_CREDENTIAL_NAMES = (
    "environmentcredential", "workloadidentitycredential", "managedidentitycredential",
    "visualstudiocodecredential", "azureclicredential", "azuredeveloperclicredential",
    "azurepowershellcredential", "interactivebrowsercredential",
)  # fmt: skip


def may_have_imds(environ: Mapping[str, str]) -> bool:
    """Whether the Instance Metadata Service probably answers here: an Azure VM or a pod."""
    return _imds_sign(environ) is not None


def _imds_sign(environ: Mapping[str, str]) -> str | None:
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "KUBERNETES_SERVICE_HOST is set (a Kubernetes pod: AKS nodes answer IMDS)"
    try:
        with open(CHASSIS_ASSET_TAG_FILE, encoding="ascii", errors="replace") as f:
            if f.read().strip() == AZURE_CHASSIS_ASSET_TAG:
                return f"{CHASSIS_ASSET_TAG_FILE} carries Azure's asset tag (an Azure VM: IMDS)"
    except OSError:
        pass
    return None


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
            "environment": "EnvironmentCredential",
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

    def factory(self, timeout: float | None = None) -> CredentialFactory:
        """Builds this credential. Those talking HTTP to an identity endpoint retry at most
        :data:`CREDENTIAL_RETRIES` times, each call bounded by a share of ``timeout``
        (:func:`bounded`); ``DefaultAzureCredential`` (a laptop: developer tools) and an
        explicit credential are left as they are."""
        if self.kind == "explicit":
            return _explicit_factory(self.explicit)
        cloud: dict[str, Any] = {"authority": self.authority} if self.authority else {}
        extra = {**_OBSERVED, **bounded(timeout)}
        if self.kind == "service_principal":
            assert self.tenant_id and self.client_id and self.client_secret
            tenant, client, secret = self.tenant_id, self.client_id, self.client_secret
            return lambda: identity.ClientSecretCredential(tenant, client, secret, **cloud, **extra)
        if self.kind == "workload_identity":
            client_id, tenant_id = self.client_id, self.tenant_id
            kwargs: dict[str, Any] = {"tenant_id": tenant_id} if tenant_id else {}
            return lambda: identity.WorkloadIdentityCredential(
                client_id=client_id, **kwargs, **cloud, **extra
            )
        if self.kind == "managed_identity":
            client_id = self.client_id
            return lambda: identity.ManagedIdentityCredential(client_id=client_id, **extra)
        if self.kind == "environment":
            return lambda: identity.EnvironmentCredential(**cloud, **extra)
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
    if authority and choice.kind in {
        "service_principal",
        "environment",
        "workload_identity",
        "default",
    }:
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
    return from_environment(environ)


def from_environment(environ: Mapping[str, str]) -> CredentialChoice:
    """The credential this environment itself calls for, when settings name none.

    Deterministic wherever something says "Azure"; ``DefaultAzureCredential``
    only where nothing does (a laptop) or ``AZURE_TOKEN_CREDENTIALS`` asks for a
    chain ("dev", a developer tool's name).
    """
    wanted = environ.get(TOKEN_CREDENTIALS_VAR, "").strip().lower()
    if wanted and wanted not in ("prod", "dev", *TOKEN_CREDENTIAL_NAMES):
        raise CredentialConfigError(
            f"{TOKEN_CREDENTIALS_VAR}={wanted!r} is not a value azure-identity accepts: "
            f"prod, dev or one of {', '.join(TOKEN_CREDENTIAL_NAMES)}"
        )
    setting = f"{TOKEN_CREDENTIALS_VAR}={wanted}"
    client_id = environ.get("AZURE_CLIENT_ID") or None
    user_assigned = " (user-assigned: AZURE_CLIENT_ID)" if client_id else ""
    if wanted == "managedidentitycredential":
        return CredentialChoice("managed_identity", setting + user_assigned, client_id=client_id)
    if wanted == "workloadidentitycredential":
        return _workload(environ, setting)
    if wanted == "environmentcredential":
        return CredentialChoice("environment", setting)
    if wanted and wanted != "prod":  # dev, or one developer tool: azure-identity narrows the chain
        return CredentialChoice(
            "default", f"{setting}: DefaultAzureCredential, narrowed by azure-identity"
        )
    suffix = f" ({setting})" if wanted else ""

    if (
        environ.get("AZURE_TENANT_ID")
        and client_id
        and (environ.get("AZURE_CLIENT_SECRET") or environ.get("AZURE_CLIENT_CERTIFICATE_PATH"))
    ):
        return CredentialChoice(
            "environment",
            "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or "
            "AZURE_CLIENT_CERTIFICATE_PATH) are set (a service principal)" + suffix,
        )
    if environ.get(FEDERATED_TOKEN_FILE) and client_id:
        return _workload(environ, f"{FEDERATED_TOKEN_FILE} and AZURE_CLIENT_ID are set" + suffix)
    for var, what in MANAGED_IDENTITY_ENDPOINTS.items():
        if environ.get(var):
            return CredentialChoice(
                "managed_identity",
                f"{var} is set ({what}){user_assigned}{suffix}",
                client_id=client_id,
            )
    sign = _imds_sign(environ)
    if sign is not None:
        return CredentialChoice(
            "managed_identity", f"{sign}{user_assigned}{suffix}", client_id=client_id
        )
    if wanted == "prod":
        return CredentialChoice(
            "default",
            f"{setting} and no managed-identity, workload-identity or service-principal "
            "sign here: DefaultAzureCredential, narrowed by azure-identity to those three",
        )
    return CredentialChoice(
        "default",
        "nothing here says Azure (no credential in OPTIONS, no Service Connector, "
        "service-principal or workload-identity variables, no managed-identity endpoint, "
        "no Azure VM or Kubernetes pod): DefaultAzureCredential, e.g. for 'az login'",
    )


def _workload(environ: Mapping[str, str], reason: str) -> CredentialChoice:
    return CredentialChoice(
        "workload_identity",
        reason,
        client_id=environ.get("AZURE_CLIENT_ID") or None,
        tenant_id=environ.get("AZURE_TENANT_ID") or None,
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


TOKEN_THREAD_PREFIX = "django-azure-pg-token"  # noqa: S105 — a thread name
"""Name of the threads token_source.py fetches in (``threading.Thread(name=...)`` there)."""

AZURE_IDENTITY_FAILURE_LOGGERS = (
    "azure.identity._internal.decorators",
    "azure.identity._internal.get_token_mixin",
    "azure.identity._internal.msal_managed_identity_client",
    "azure.identity._internal.managed_identity_client",
    "azure.identity._credentials.managed_identity",
)
"""azure-identity's loggers that WARN "<credential>.get_token failed: …" (1.27)."""


class _ReportedOnce(logging.Filter):
    """Drops azure-identity's own WARNING about a failed fetch made by our token thread.

    django_azure_pg._core.token_source logs that same failure (credential, scope, time waited and
    azure-identity's text) and the login error carries it, so without this filter one
    outage prints it three times (twice from azure-identity, nested in each other).
    Left alone: fetches by other code in the process, and everything when the logger
    is enabled for DEBUG (someone is looking closely).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.WARNING
            and (record.threadName or "").startswith(TOKEN_THREAD_PREFIX)
            and not logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        )


_REPORTED_ONCE = _ReportedOnce()


def install_failure_filter() -> None:
    for name in AZURE_IDENTITY_FAILURE_LOGGERS:
        target = logging.getLogger(name)
        if _REPORTED_ONCE not in target.filters:
            target.addFilter(_REPORTED_ONCE)


install_failure_filter()
install_log_redaction()  # azure-identity's and msal's loggers exist now that they are imported

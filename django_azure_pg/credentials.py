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
import os
import socket
import types
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure import identity
from azure.core.credentials import TokenCredential

from .redaction import install_log_redaction
from .tokens import CredentialFactory, observe_response

_OBSERVED: dict[str, Any] = {"raw_response_hook": observe_response}
"""Lets the token cache see HTTP 429 / Retry-After from the identity endpoint."""

logger = logging.getLogger("django_azure_pg.credentials")

PUBLIC_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
SCOPES = {
    "public": PUBLIC_SCOPE,
    "china": "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
    "usgov": "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
}
"""Token scope per cloud; ``OPTIONS["token_scope"]`` takes a URL or one of these names."""

HOST_SUFFIXES = {
    ".postgres.database.azure.com": "public",
    ".postgres.database.chinacloudapi.cn": "china",
    ".postgres.database.usgovcloudapi.net": "usgov",
}
"""Flexible Server host name suffix per cloud (AZURE_FACTS; azure-cli's cloud suffixes)."""

AUTHORITY_HOSTS = {
    "public": identity.AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
    "china": identity.AzureAuthorityHosts.AZURE_CHINA,
    "usgov": identity.AzureAuthorityHosts.AZURE_GOVERNMENT,
}
"""Entra authority per cloud. A service principal or workload identity asks the
authority for its token; without ``authority=`` (or ``AZURE_AUTHORITY_HOST``)
azure-identity uses the public one, which does not know a sovereign cloud's
tenants (azure-sdk-for-python, sdk/identity/azure-identity, AzureAuthorityHosts)."""

AUTHORITY_HOST_VAR = "AZURE_AUTHORITY_HOST"

SERVICE_CONNECTOR_PREFIX = "AZURE_POSTGRESQL_"
CLIENT_ID, CLIENT_SECRET, TENANT_ID = "CLIENTID", "CLIENTSECRET", "TENANTID"
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


def env_names(prefix: str = SERVICE_CONNECTOR_PREFIX) -> tuple[str, str, str]:
    return prefix + CLIENT_ID, prefix + CLIENT_SECRET, prefix + TENANT_ID


def choose(
    options: Mapping[str, Any], environ: Mapping[str, str], scope: str | None = None
) -> CredentialChoice:
    """Pick the credential for one alias from its OPTIONS and the environment.

    ``scope`` (from :func:`scope_for`) selects the Entra authority for a
    sovereign cloud unless ``AZURE_AUTHORITY_HOST`` already names one.
    """
    choice = _choose(options, environ)
    authority = authority_for(scope, environ)
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


def cloud_of_host(host: str | None) -> str | None:
    """``"public"``, ``"china"`` or ``"usgov"`` from a Flexible Server host name, else None."""
    lowered = (host or "").lower().rstrip(".")
    return next((c for suffix, c in HOST_SUFFIXES.items() if lowered.endswith(suffix)), None)


def cloud_of_scope(scope: str) -> str | None:
    return next((c for c, known in SCOPES.items() if known == scope), None)


def scope_for(value: str | None, host: str | None = None) -> str:
    """The token scope: ``OPTIONS["token_scope"]``, else the one of the HOST's cloud.

    An explicit scope of another cloud than the HOST's is kept (a custom
    endpoint may need it) but logged: the server would refuse every token.
    """
    host_cloud = cloud_of_host(host)
    if not value:
        return SCOPES[host_cloud] if host_cloud else PUBLIC_SCOPE
    scope = SCOPES.get(value, value)
    scope_cloud = cloud_of_scope(scope)
    if host_cloud and scope_cloud and host_cloud != scope_cloud:
        logger.warning(
            "token_scope %r is the %s cloud's but HOST %r is in the %s cloud; the server "
            "will refuse those tokens. Leave token_scope unset to follow the HOST.",
            scope,
            scope_cloud,
            host,
            host_cloud,
        )
    return scope


def authority_for(scope: str | None, environ: Mapping[str, str]) -> str | None:
    """The Entra authority matching a sovereign-cloud scope, unless the environment sets one."""
    cloud = cloud_of_scope(scope) if scope else None
    if cloud in (None, "public") or environ.get(AUTHORITY_HOST_VAR):
        return None
    return AUTHORITY_HOSTS[cloud]


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
        _fork_watch(resolved)
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


# -- fork safety for credential objects we did not build ---------------------
#
# A credential we build is rebuilt in a forked child (tokens.py). An object the
# settings hand us (or a dotted path to an instance) cannot be rebuilt, so in
# the child every requests.Session inside it gets new connection pools: the
# child never reads or writes the parent's keep-alive socket to the identity
# endpoint. The old pools are kept, untouched, so no finalizer takes a lock a
# parent thread may have held at fork time. A transport we do not know how to
# renew is reported once, at runtime.

_explicit_objects: dict[int, Any] = {}
_retired: list[Any] = []
_warned: set[str] = set()
_MAX_NODES = 5000


def _fork_watch(credential: Any) -> None:
    _explicit_objects.setdefault(id(credential), credential)


def _transports(root: Any) -> tuple[list[Any], list[str]]:
    """The requests sessions inside ``root``, and names of transports we cannot renew."""
    try:
        import requests
    except ImportError:  # pragma: no cover — azure-core depends on requests
        requests = None  # type: ignore[assignment]
    import http.client

    sessions: list[Any] = []
    unknown: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    leaves = (str, bytes, int, float, complex, bool, type(None), type, types.ModuleType,
              types.FunctionType, types.BuiltinFunctionType, types.MethodType)  # fmt: skip
    while stack and len(seen) < _MAX_NODES:
        obj, depth = stack.pop()
        if id(obj) in seen or isinstance(obj, leaves) or depth > 10:
            continue
        seen.add(id(obj))
        if requests is not None and isinstance(obj, requests.Session):
            sessions.append(obj)
            continue
        module = type(obj).__module__ or ""
        if isinstance(obj, (socket.socket, http.client.HTTPConnection)) or module.split(".")[0] in (
            "httpx",
            "aiohttp",
            "urllib3",
            "httpcore",
        ):
            unknown.append(f"{module}.{type(obj).__qualname__}")
            continue
        if isinstance(obj, dict):
            children: Any = obj.values()
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = obj
        else:
            try:
                children = vars(obj).values()
            except TypeError:
                continue
        stack.extend((child, depth + 1) for child in list(children))
    return sessions, unknown


def _renew(session: Any) -> None:
    for adapter in list(session.adapters.values()):
        if not hasattr(adapter, "init_poolmanager"):
            continue
        _retired.append((adapter.poolmanager, adapter.proxy_manager))
        adapter.proxy_manager = {}
        adapter.init_poolmanager(
            adapter._pool_connections, adapter._pool_maxsize, block=adapter._pool_block
        )


def make_fork_safe(credential: Any) -> bool:
    """In a forked child: give ``credential`` connections of its own; False if we cannot."""
    sessions, unknown = _transports(credential)
    for session in sessions:
        _renew(session)
    return not unknown


def _after_fork_in_child() -> None:
    for credential in list(_explicit_objects.values()):
        try:
            safe = make_fork_safe(credential)
        except Exception:  # never break the child over this
            safe = False
        name = type(credential).__qualname__
        if not safe and name not in _warned:
            _warned.add(name)
            logger.warning(
                "After fork(), the credential object %s in OPTIONS['credential'] may share its "
                "parent's connection to the identity endpoint: it holds a transport "
                "django-azure-pg cannot renew. Pass its class, a factory or a dotted path to "
                "one instead, so each process builds its own.",
                name,
            )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

install_log_redaction()  # azure-identity's and msal's loggers exist now that they are imported

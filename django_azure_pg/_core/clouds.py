"""Azure's clouds: the database host suffix, token scope and Entra authority of each.

A token is scoped to one cloud's database service, and a service principal or
workload identity must ask that cloud's authority for it. No Django import here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from azure import identity

logger = logging.getLogger(__name__)

PUBLIC_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
SCOPES = {
    "public": PUBLIC_SCOPE,
    "china": "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
    "usgov": "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
    "bleu": "https://ossrdbms-aad.database.sovcloud-api.fr/.default",  # France (see below)
}
"""Token scope per cloud; ``OPTIONS["token_scope"]`` takes a URL or one of these names."""

HOST_SUFFIXES = {
    ".postgres.database.azure.com": "public",
    ".postgres.database.chinacloudapi.cn": "china",
    ".postgres.database.usgovcloudapi.net": "usgov",
    # Bleu, France's sovereign cloud: AZURE_BLEU_CLOUD in azure-cli 2.91's cloud.py
    # (postgresql_server_endpoint, ossrdbms_resource_id; /work/shared/AZURE_FACTS.md,
    # checked 2026-12-02). Its TLS roots are not documented where we looked: unverified.
    ".postgres.database.sovcloud-api.fr": "bleu",
}
"""Flexible Server host name suffix per cloud (Azure/azure-cli,
src/azure-cli-core/azure/cli/core/cloud.py: postgresql_server_endpoint)."""

AUTHORITY_HOSTS = {
    "public": identity.AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
    "china": identity.AzureAuthorityHosts.AZURE_CHINA,
    "usgov": identity.AzureAuthorityHosts.AZURE_GOVERNMENT,
    "bleu": "login.sovcloud-identity.fr",  # azure-identity has no constant for it (1.27)
}
"""Entra authority per cloud. A service principal or workload identity asks the
authority for its token; without ``authority=`` (or ``AZURE_AUTHORITY_HOST``)
azure-identity uses the public one, which does not know a sovereign cloud's
tenants (azure-sdk-for-python, sdk/identity/azure-identity, AzureAuthorityHosts)."""

AUTHORITY_HOST_VAR = "AZURE_AUTHORITY_HOST"


def cloud_of_host(host: str | None) -> str | None:
    """``"public"``, ``"china"`` or ``"usgov"`` from a Flexible Server host name, else None."""
    lowered = (host or "").lower().rstrip(".")
    return next((c for suffix, c in HOST_SUFFIXES.items() if lowered.endswith(suffix)), None)


def is_known_scope(value: str) -> bool:
    """A cloud's name in :data:`SCOPES` or the Azure Database for PostgreSQL scope of one."""
    return value in SCOPES or value in SCOPES.values()


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

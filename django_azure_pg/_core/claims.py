"""Read the (unverified) claims of an Entra access token.

The server verifies the token; we only need its non-secret claims to name
the PostgreSQL role when ``USER`` is not set, and to describe the identity
in diagnostics.

How Flexible Server names Entra roles (MicrosoftDocs/azure-databases-docs,
articles/postgresql/security/security-manage-entra-users.md): users by their
User Principal Name — guests by their UPN *in this tenant*, the ``#EXT#``
form; groups and service principals (managed identities included) by their
display name. Service Connector does not follow that rule: it creates
``aad_<connection name>`` mapped by object id (azure-cli-extensions,
src/serviceconnector-passwordless/.../_credential_free.py,
``self.aad_username = "aad_" + connection_name``), and no claim carries that
name.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

NAME_CLAIMS = ("upn", "preferred_username", "unique_name")
"""Claims naming a human principal, in the order they are preferred."""

PUBLIC_CLAIMS = (
    "aud", "iss", "tid", "oid", "appid", "azp", "idtyp", "idp", "xms_mirid", *NAME_CLAIMS,
)  # fmt: skip
"""Claims safe to show in diagnostics."""


def decode(token: str) -> dict[str, Any]:
    """The payload of a JWT, or ``{}`` when the token is not JWT-shaped."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def managed_identity_name(resource_id: str) -> str | None:
    """The display name Entra gives a managed identity, from its ARM resource id.

    The identity is named after the resource *below the provider namespace*:
    ``…/providers/Microsoft.Web/sites/shop`` → ``shop``, a deployment slot
    ``…/sites/shop/slots/staging`` → ``shop/slots/staging``, a Spring app
    ``…/Microsoft.AppPlatform/Spring/svc/apps/api`` → ``svc/apps/api``; a
    user-assigned identity ``…/userAssignedIdentities/id-shop`` → ``id-shop``.
    MicrosoftDocs/azure-docs, articles/app-service/overview-managed-identity.md:
    the service principal "has the same name that you gave to your App Service";
    a slot's is "similar to ``<app name>/slots/<slot name>``".
    """
    segments = [s for s in resource_id.split("/") if s]
    lowered = [s.lower() for s in segments]
    if "providers" not in lowered:
        return segments[-1] if segments else None
    # The last "providers" wins: extension resources nest a second provider.
    start = len(lowered) - 1 - lowered[::-1].index("providers")
    # providers / <Namespace> / <type> / <name> [/ <child type> / <child name> …]
    tail = segments[start + 3 :]
    return "/".join(tail) if tail else None


def is_guest(claims: dict[str, Any]) -> bool:
    """Whether the token is a guest user's (a B2B account from another directory).

    ``idp`` differs from ``iss`` only when the account is not in the issuing
    tenant; ``acct`` is 1 for guests (Microsoft identity platform, "Access
    token claims reference"). A guest's ``unique_name`` looks like
    ``live.com#alice@outlook.com`` and its role is ``alice_outlook.com#EXT#@…``.
    """
    idp, iss = claims.get("idp"), claims.get("iss")
    if isinstance(idp, str) and idp and idp != iss:
        return True
    if claims.get("acct") == 1:
        return True
    unique_name = claims.get("unique_name")
    return not claims.get("upn") and isinstance(unique_name, str) and "#" in unique_name


def role_name(claims: dict[str, Any]) -> str | None:
    """The PostgreSQL role an Entra principal logs in as, when a claim names it.

    ``None`` when no claim does: service principals (their display name is
    not in the token), guest users (no claim holds the ``#EXT#`` UPN) and any
    role named by hand, such as Service Connector's ``aad_<connection>``.
    """
    mirid = claims.get("xms_mirid")
    if isinstance(mirid, str) and mirid.strip("/"):
        return managed_identity_name(mirid)
    if is_guest(claims):
        return None
    for claim in NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return None


def missing_role_hint(claims: dict[str, Any]) -> str:
    """Why :func:`role_name` found nothing, and which USER to set instead."""
    if not claims:
        return "The token is not a JWT, so it has no claims to read a name from."
    if is_guest(claims):
        found = claims.get("unique_name") or claims.get("preferred_username") or claims.get("email")
        return (
            f"The token is a guest user's ({found}); a guest's role is their UPN in this "
            "tenant, the #EXT# form (e.g. alice_outlook.com#EXT#@contoso.onmicrosoft.com), "
            "which no claim carries."
        )
    named = any(claims.get(c) for c in NAME_CLAIMS)
    if claims.get("idtyp") == "app" or not (named or claims.get("scp")):
        who = claims.get("appid") or claims.get("azp") or "?"
        return (
            f"The token is an application's (appid {who}) without a managed-identity "
            "resource id: a service principal's role is its display name, or the name "
            "it was created with, which no claim carries."
        )
    names = ("xms_mirid", *NAME_CLAIMS)
    return f"No {', '.join(names[:-1])} or {names[-1]} claim names a principal."


SERVICE_CONNECTOR_NOTE = (
    "Roles created by Service Connector are named aad_<connection name> and no token "
    "claim carries that name: set USER (AZURE_POSTGRESQL_USER) to it."
)


def public(claims: dict[str, Any]) -> dict[str, Any]:
    return {k: claims[k] for k in PUBLIC_CLAIMS if k in claims} | {
        k: claims[k] for k in ("iat", "nbf", "exp") if k in claims
    }

"""Read the (unverified) claims of an Entra access token.

The server verifies the token; we only need its non-secret claims to name
the PostgreSQL role when ``USER`` is not set, and to describe the identity
in diagnostics.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

NAME_CLAIMS = ("upn", "preferred_username", "unique_name")
"""Claims naming a human principal, in the order they are preferred."""

PUBLIC_CLAIMS = ("aud", "iss", "tid", "oid", "appid", "azp", "idtyp", "xms_mirid", *NAME_CLAIMS)
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


def role_name(claims: dict[str, Any]) -> str | None:
    """The PostgreSQL role an Entra principal logs in as.

    Managed identities carry their Azure resource id in ``xms_mirid``; the role
    Azure creates for them is named after the resource (the identity's name
    for a user-assigned identity, the app's name for a system-assigned one).
    Users are named by their UPN.
    """
    mirid = claims.get("xms_mirid")
    if isinstance(mirid, str) and mirid.strip("/"):
        return mirid.rstrip("/").rsplit("/", 1)[-1]
    for claim in NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return None


def public(claims: dict[str, Any]) -> dict[str, Any]:
    return {k: claims[k] for k in PUBLIC_CLAIMS if k in claims} | {
        k: claims[k] for k in ("iat", "nbf", "exp") if k in claims
    }

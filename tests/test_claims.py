from __future__ import annotations

import pytest

from django_azure_pg._core import claims
from django_azure_pg_testing import jwt

SUB = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-shop/providers"
TENANT_ISS = "https://sts.windows.net/11111111-1111-1111-1111-111111111111/"

# Claim shapes as Entra issues them for the ossrdbms-aad audience (v1 tokens), trimmed
# to the claims that matter here. Expected: the role Flexible Server maps, or None where
# no claim carries it.
SHAPES = {
    "system-assigned app": (
        {"idtyp": "app", "appid": "a1", "iss": TENANT_ISS,
         "xms_mirid": f"{SUB}/Microsoft.Web/sites/shop"},
        "shop",
    ),
    "deployment slot": (
        {"idtyp": "app", "appid": "a2", "iss": TENANT_ISS,
         "xms_mirid": f"{SUB}/Microsoft.Web/sites/shop/slots/staging"},
        "shop/slots/staging",
    ),
    "container app": (
        {"idtyp": "app", "appid": "a3", "iss": TENANT_ISS,
         "xms_mirid": f"{SUB}/Microsoft.App/containerApps/shop-api"},
        "shop-api",
    ),
    "spring app": (
        {"idtyp": "app", "appid": "a4", "iss": TENANT_ISS,
         "xms_mirid": f"{SUB}/Microsoft.AppPlatform/Spring/svc/apps/api"},
        "svc/apps/api",
    ),
    "virtual machine": (
        {"appid": "a5", "iss": TENANT_ISS,
         "xms_mirid": f"{SUB}/Microsoft.Compute/virtualMachines/vm-1"},
        "vm-1",
    ),
    "user-assigned identity": (
        {"idtyp": "app", "appid": "a6", "iss": TENANT_ISS,
         "xms_mirid": f"{SUB}/Microsoft.ManagedIdentity/userAssignedIdentities/id-shop"},
        "id-shop",
    ),
    "service principal": (
        {"idtyp": "app", "appid": "a7", "appidacr": "1", "oid": "o7", "iss": TENANT_ISS},
        None,
    ),
    "member user": (
        {"idtyp": "user", "scp": "user_impersonation", "iss": TENANT_ISS,
         "upn": "alice@contoso.com", "unique_name": "alice@contoso.com"},
        "alice@contoso.com",
    ),
    "member user, v2 token": (
        {"scp": "user_impersonation", "preferred_username": "alice@contoso.com"},
        "alice@contoso.com",
    ),
    "guest user": (
        {"idtyp": "user", "scp": "user_impersonation", "iss": TENANT_ISS, "acct": 1,
         "idp": "live.com", "unique_name": "live.com#bob@outlook.com",
         "email": "bob@outlook.com"},
        None,
    ),
    "guest from another tenant": (
        {"scp": "user_impersonation", "iss": TENANT_ISS,
         "idp": "https://sts.windows.net/22222222-2222-2222-2222-222222222222/",
         "unique_name": "carol@fabrikam.com", "preferred_username": "carol@fabrikam.com"},
        None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
def test_role_name_from_real_claim_shapes(shape: str) -> None:
    found, expected = SHAPES[shape]
    assert claims.role_name(found) == expected
    # Through a real JWT too: the same claims survive encoding and decoding.
    assert claims.role_name(claims.decode(jwt.mint(found))) == expected


@pytest.mark.parametrize("shape", ["service principal", "guest user", "guest from another tenant"])
def test_no_role_explains_why(shape: str) -> None:
    found, _ = SHAPES[shape]
    hint = claims.missing_role_hint(found)
    if "guest" in shape:
        assert "#EXT#" in hint
    else:
        assert "display name" in hint and "a7" in hint
    assert "aad_<connection name>" in claims.SERVICE_CONNECTOR_NOTE


def test_managed_identity_names() -> None:
    assert claims.managed_identity_name(f"{SUB}/Microsoft.Web/sites/shop/") == "shop"
    assert claims.managed_identity_name("/no/provider/here") == "here"
    assert claims.managed_identity_name(f"{SUB}/Microsoft.Web") is None


def test_decode_and_role_names() -> None:
    token = jwt.mint({"preferred_username": "dev@contoso.com", "oid": "o"})
    found = claims.decode(token)
    assert found["oid"] == "o"
    assert claims.role_name(found) == "dev@contoso.com"
    assert claims.role_name({"unique_name": "u"}) == "u"
    assert claims.role_name({}) is None
    assert "not a JWT" in claims.missing_role_hint({})


def test_not_a_jwt() -> None:
    assert claims.decode("opaque-token") == {}
    assert claims.decode("a.!!!.c") == {}


def test_public_claims_have_no_secret_parts() -> None:
    shown = claims.public({"oid": "o", "exp": 1, "signature": "x", "aio": "y"})
    assert shown == {"oid": "o", "exp": 1}

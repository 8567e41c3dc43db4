from __future__ import annotations

from django_azure_pg import claims
from django_azure_pg_testing import jwt


def test_decode_and_role_names() -> None:
    token = jwt.mint({"preferred_username": "dev@contoso.com", "oid": "o"})
    found = claims.decode(token)
    assert found["oid"] == "o"
    assert claims.role_name(found) == "dev@contoso.com"
    assert claims.role_name({"unique_name": "u"}) == "u"
    assert claims.role_name({"xms_mirid": "/a/b/sites/my-app/"}) == "my-app"
    assert claims.role_name({}) is None


def test_not_a_jwt() -> None:
    assert claims.decode("opaque-token") == {}
    assert claims.decode("a.!!!.c") == {}


def test_public_claims_have_no_secret_parts() -> None:
    shown = claims.public({"oid": "o", "exp": 1, "signature": "x", "aio": "y"})
    assert shown == {"oid": "o", "exp": 1}

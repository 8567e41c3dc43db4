from __future__ import annotations

from django_azure_pg.redaction import MASK, redact
from django_azure_pg_testing import jwt


def test_jwts_and_token_fields_are_masked() -> None:
    token = jwt.mint({"a": 1})
    assert redact(f"bad reply {token} here") == f"bad reply {MASK} here"
    assert redact('{"access_token": "opaque123", "expires_in": 5}') == (
        '{"access_token": "' + MASK + '", "expires_in": 5}'
    )
    assert redact("password=hunter2 host=x") == f"password={MASK} host=x"
    assert redact("nothing secret") == "nothing secret"

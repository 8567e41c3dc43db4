"""Every bad OPTIONS value is refused at first use with a message naming alias and key."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import ConnectionHandler

from django_azure_pg._core import options
from django_azure_pg.base import DatabaseWrapper

from .conftest import BAD_OPTIONS


def wrapper(alias: str, **opts: Any) -> DatabaseWrapper:
    entry = {
        "ENGINE": "django_azure_pg",
        "HOST": "myserver.postgres.database.azure.com",
        "NAME": "db",
        "USER": "aad_app",
        "OPTIONS": opts,
    }
    return DatabaseWrapper(
        ConnectionHandler().configure_settings({"default": entry})["default"], alias
    )


@pytest.mark.parametrize(
    ("opts", "key"),
    BAD_OPTIONS,
)
def test_first_use_names_alias_and_key(opts: dict[str, Any], key: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        wrapper("reports", **opts).azure_login  # noqa: B018
    message = str(info.value)
    assert message.startswith("DATABASES['reports']: ")
    assert f"OPTIONS[{key!r}]" in message
    assert "inf" not in message.lower().replace("info", "") and "nan" not in message.lower()


def test_numbers_from_urls_are_accepted() -> None:
    assert options.number({"token_timeout": "2.5"}, "token_timeout", 10) == 2.5
    assert options.number({"token_timeout": 600}, "token_timeout", 10) == 600
    assert options.flag({"allow_plaintext_token": "true"}, "allow_plaintext_token") is True


def test_secret_values_never_appear() -> None:
    found = options.problems({"client_secret": 12345, "token_timeout": "hunter2"})
    assert {p.key for p in found} == {"client_secret", "token_timeout"}
    assert all("12345" not in str(p) and "hunter2" not in str(p) for p in found)

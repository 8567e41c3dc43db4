"""The public surface: every name README's API section promises exists, and the docs name
every name a public module exports."""

from __future__ import annotations

import importlib
import importlib.resources
import re
from pathlib import Path

import pytest

import django_azure_pg

README = Path(__file__).resolve().parent.parent / "README.md"
PUBLIC_MODULES = (
    "django_azure_pg",
    "django_azure_pg.env",
    "django_azure_pg.errors",
    "django_azure_pg.health",
    "django_azure_pg.mixin",
    "django_azure_pg.redaction",
    "django_azure_pg.registry",
    "django_azure_pg.tokens",
)


def api_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## API\n(.*?)^## ", text, re.S | re.M)
    assert match, "README lost its API section"
    return match.group(1)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_exported_name_exists_and_is_documented(module: str) -> None:
    mod = importlib.import_module(module)
    section = api_section()
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"
        if name.startswith("__"):
            continue
        assert f"`{name}" in section or f".{name}`" in section or f".{name}(" in section, (
            f"{module}.{name} is exported but README's API section does not name it"
        )


def test_the_package_top_level() -> None:
    assert django_azure_pg.ENGINE == "django_azure_pg"
    from django_azure_pg.mixin import TokenLoginMixin

    assert django_azure_pg.TokenLoginMixin is TokenLoginMixin
    with pytest.raises(AttributeError):
        django_azure_pg.no_such_name  # noqa: B018


def test_the_roots_file_ships_with_the_package() -> None:
    roots = importlib.resources.files("django_azure_pg") / "certs/azure-roots.pem"
    assert "BEGIN CERTIFICATE" in roots.read_text()

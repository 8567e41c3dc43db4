"""The public surface: every name README's API section promises exists, and the docs name
every name a public module exports."""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil
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
DJANGO_ENTRY_POINTS = (
    "django_azure_pg.apps",  # INSTALLED_APPS
    "django_azure_pg.base",  # ENGINE
    "django_azure_pg.management",
    "django_azure_pg.management.commands",  # and each command module below it
    "django_azure_pg.postgis",
    "django_azure_pg.postgis.base",
)
"""Modules Django finds by their path: public by necessity, exporting nothing of their own."""
FACADES = ("django_azure_pg.registry", "django_azure_pg.tokens")
"""Public names of internal modules, re-exported where README's API section lists them."""


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


def test_everything_else_is_underscore_private() -> None:
    """A module is public (in README's API section), a Django entry point, or has a
    leading underscore somewhere in its path."""
    found = [
        info.name
        for info in pkgutil.walk_packages(django_azure_pg.__path__, "django_azure_pg.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    stray = [
        name
        for name in found
        if name not in PUBLIC_MODULES
        and name not in DJANGO_ENTRY_POINTS
        and not name.startswith("django_azure_pg.management.commands.")
    ]
    assert stray == [], f"public-looking modules that README's API section does not list: {stray}"
    assert "django_azure_pg.base" in found  # the walk did find the package's modules


@pytest.mark.parametrize("module", FACADES)
def test_a_facade_exports_its_public_names_and_nothing_else(module: str) -> None:
    mod = importlib.import_module(module)
    own = {n for n in vars(mod) if not n.startswith("_")} - {"annotations"}
    assert own == set(mod.__all__)

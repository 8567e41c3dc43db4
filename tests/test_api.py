"""The public surface: every name the API page (docs/api.md) promises exists, and the docs name
every name a public module exports."""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil
import re
from pathlib import Path

import pytest

import django_azure_pg

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "api.md"
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
"""Public names of internal modules, re-exported where the API page lists them."""


def api_section() -> str:
    """The API page's table of public names (before its generated reference)."""
    text = API_PAGE.read_text(encoding="utf-8")
    match = re.search(r"^# API\n(.*?)^## Reference\n", text, re.S | re.M)
    assert match, "docs/api.md lost its table of public names"
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
            f"{module}.{name} is exported but docs/api.md does not name it"
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
    """A module is public (on the API page), a Django entry point, or has a
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
    assert stray == [], f"public-looking modules that docs/api.md does not list: {stray}"
    assert "django_azure_pg.base" in found  # the walk did find the package's modules


@pytest.mark.parametrize("module", FACADES)
def test_a_facade_exports_its_public_names_and_nothing_else(module: str) -> None:
    mod = importlib.import_module(module)
    own = {n for n in vars(mod) if not n.startswith("_")} - {"annotations"}
    assert own == set(mod.__all__)


USERS_OF_THE_API = ("testing/django_azure_pg_testing", "harness", "sample_project")
"""Code that drives the package as its users do: it may use the public surface only."""


def _package_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` of every import from this package in ``path``."""
    import ast

    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return [f for f in found if f[1].split(".")[0] == "django_azure_pg"]


def _private_uses(path: Path) -> list[str]:
    public = set(PUBLIC_MODULES) | set(DJANGO_ENTRY_POINTS)
    out = []
    for line, module, name in _package_imports(path):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{line}"
        if module not in public and not module.startswith("django_azure_pg.management.commands"):
            out.append(f"{where}: module {module}")
        elif name is not None and name.startswith("_"):
            out.append(f"{where}: {module}.{name}")
    return out


def test_the_kit_the_harness_and_the_sample_use_public_names_only() -> None:
    files = [p for d in USERS_OF_THE_API for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 10
    private = [use for path in files for use in _private_uses(path)]
    assert private == [], "\n".join(private)


def test_the_public_names_check_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from django_azure_pg._core import timing\nfrom django_azure_pg.env import from_env\n"
        "from django_azure_pg import _checks\nimport django_azure_pg._pool\n"
    )
    found = _private_uses(probe)
    assert [f.split(": ", 1)[1] for f in found] == [
        "module django_azure_pg._core",
        "django_azure_pg._checks",
        "module django_azure_pg._pool",
    ]

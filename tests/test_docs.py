"""The documentation: the site's nav, the README's size and links, and the one migration
story — its commands, as the docs print them, run against the real test PostgreSQL.

The site itself is built strictly by ``make docs`` (part of ``make test``): a broken link,
anchor or API name fails there.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from django_azure_pg_testing import IdentityEmulator, LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 200
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def nav_pages(node: Any) -> list[str]:
    """Every page file named in a mkdocs ``nav`` (nested sections included)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return []


def site_nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return nav_pages(config["nav"])


def test_every_page_in_the_nav_exists() -> None:
    pages = site_nav()
    assert len(pages) >= 20
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert missing == [], f"mkdocs.yml names pages docs/ does not have: {missing}"
    assert len(set(pages)) == len(pages), "a page is listed twice in the nav"


def test_every_page_is_in_the_nav() -> None:
    listed = set(site_nav())
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(pages - listed) == [], "pages in docs/ that the site's nav does not list"


def test_the_nav_has_a_page_per_task() -> None:
    """The pages issue 31 asks for, by their file names (other pages link to them)."""
    expected = {
        "index.md", "install.md", "quickstart.md", "how-it-works.md", "settings.md",
        "environment.md", "moving-from-password.md", "grants.md", "observability.md",
        "security.md", "deploy-app-service.md", "deploy-container-apps.md", "engines.md",
        "testing-kit.md", "troubleshooting.md", "benchmarks.md", "reliability.md",
        "conformance.md", "api.md", "architecture.md", "changelog.md",
        "background-workers.md", "asgi.md", "deploy-your-app.md",
    }  # fmt: skip
    assert expected <= set(site_nav())


def readme_links() -> list[str]:
    return LINK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_is_read_in_five_minutes() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines"


def test_the_readme_links_only_to_files_that_exist() -> None:
    local = [link for link in readme_links() if not re.match(r"[a-z]+:", link)]
    assert len(local) >= 15  # the links to the docs pages are there
    broken = [
        link
        for link in local
        if not link.startswith("#") and not (ROOT / link.split("#", 1)[0]).exists()
    ]
    assert broken == [], f"README.md links to files that do not exist: {broken}"


def test_the_readme_links_to_every_task_page() -> None:
    linked = {link.split("#", 1)[0] for link in readme_links()}
    pages = {f"docs/{page}" for page in site_nav() if page not in ("index.md", "changelog.md")}
    assert sorted(pages - linked) == []


def test_shell_lines_joins_continued_lines() -> None:
    text = "```bash\nA=1 \\\n  python manage.py migrate  # as the owner\n# a comment\n```\n"
    assert shell_lines(text) == ["A=1 python manage.py migrate"]


def test_the_link_checks_can_fail(tmp_path: Path) -> None:
    """The README check sees a link to a missing page; the nav check a missing nav entry."""
    text = "[Gone](docs/no-such-page.md) and [Here](docs/install.md)"
    links = [link for link in LINK.findall(text) if not (ROOT / link).exists()]
    assert links == ["docs/no-such-page.md"]
    assert nav_pages({"nav": [{"A": "a.md"}, {"B": [{"C": "c.md"}, "d.md"]}]}) == [
        "a.md",
        "c.md",
        "d.md",
    ]


# --- One migration story: the owner migrates, the app role gets DML --------------------

STORY_PAGES = (
    "README.md",
    "testing/README.md",
    "docs/quickstart.md",
    "docs/moving-from-password.md",
    "docs/grants.md",
    "docs/deploy-app-service.md",
    "docs/deploy-container-apps.md",
    "docs/deploy-your-app.md",
)
"""Pages whose commands tell the migration story (docs/engines.md's django-tenants is the
documented exception: there the app role creates schemas itself)."""


def shell_lines(text: str) -> list[str]:
    """The command lines of the ```bash blocks of a Markdown text (comments dropped, lines
    continued with a backslash joined)."""
    lines: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(line.split(" #", 1)[0].split())
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def test_every_page_tells_one_migration_story() -> None:
    """No page grants the app role CREATE for migrate, and every migrate runs as the owner."""
    migrates = 0
    for name in STORY_PAGES:
        for line in shell_lines((ROOT / name).read_text(encoding="utf-8")):
            if "grant_aad_privileges" in line:
                assert "--migrate" not in line, f"{name}: {line}"
            if re.search(r"manage\.py (migrate|migrate_locked)\b", line):
                migrates += 1
                assert line.startswith("AZURE_POSTGRESQL_USER="), (
                    f"{name}: migrate must run as the owner: {line}"
                )
    assert migrates >= 6


def rehearsal(path: str, heading: str) -> list[str]:
    """The grant, migrate and check lines of the first ```bash block under ``heading``."""
    text = (ROOT / path).read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return [
        line
        for line in shell_lines(section.split("\n## ", 1)[0])
        if "grant_aad_privileges" in line or "manage.py migrate" in line
    ]


def test_the_kit_readme_and_the_quick_start_rehearse_the_same_commands() -> None:
    kit = rehearsal("testing/README.md", "## Rehearse your grants")
    quick = rehearsal("docs/quickstart.md", "## Try it locally")
    assert len(kit) == 3 and kit == quick


@pytest.mark.integration
def test_the_rehearsal_commands_run_as_printed(
    postgres: LocalPostgres, emulator: IdentityEmulator
) -> None:
    """testing/README.md's "Rehearse your grants", run as printed (``python manage.py`` is
    ``python -m django`` with a ``from_env()`` settings module): afterwards the owner owns
    every table, and the app role, logging in with a token, reads and writes them — those of
    the migration that ran after the grant included — and cannot create any."""
    owner, role, db, password = "myadmin", "aad_myapp", "rehearsal_docs", "owner-pw-docs"
    commands = rehearsal("testing/README.md", "## Rehearse your grants")
    assert all(owner in c or role in c for c in commands)
    if not postgres.role_exists(owner):
        postgres.create_password_role(owner, password, createdb=True)
    if not postgres.role_exists(role):
        postgres.create_entra_role(role)
    emulator.allow_role(role)  # the system-assigned identity, as the kit's stack does
    postgres.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    postgres.create_database(db, owner=owner)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "PG", "DJANGO_", "IDENTITY_", "MSI_"))
    }
    env |= emulator.app_service_env() | {
        "AZURE_POSTGRESQL_HOST": postgres.host,
        "AZURE_POSTGRESQL_PORT": str(postgres.port),
        "AZURE_POSTGRESQL_NAME": db,
        "AZURE_POSTGRESQL_USER": role,
        "AZURE_PG_OWNER_PASSWORD": password,
        "DJANGO_SETTINGS_MODULE": "tests.docs_story_settings",
        "PYTHONPATH": str(ROOT),
    }
    try:
        for command in commands:
            line = command.replace("python manage.py", f"{shlex.quote(sys.executable)} -m django")
            done = subprocess.run(
                ["bash", "-c", line],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

        with postgres.admin_connect(db) as conn:
            owners = conn.execute(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
            create = conn.execute(
                "SELECT has_schema_privilege(%s, 'public', 'CREATE')", (role,)
            ).fetchone()
        assert owners == [(owner,)]  # the migrations ran as the owner
        assert create == (False,)  # the app role got DML, not CREATE

        token, _ = emulator.issue(emulator.system)
        with psycopg.connect(
            host=postgres.host, port=postgres.port, dbname=db, user=role, password=token,
            sslmode="require", autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute("INSERT INTO auth_group (name) VALUES ('cooks')")
            assert conn.execute("SELECT name FROM auth_group").fetchall() == [("cooks",)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE mine (id int)")
    finally:
        postgres.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

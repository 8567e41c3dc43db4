"""The version matrix: `nox` runs it all; `nox -l` lists sessions.

Tests run against the real PostgreSQL and identity emulator the suite starts itself.
Django 6.x needs Python >= 3.12. `.github/workflows/ci.yml` mirrors these sessions.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DJANGOS = {"4.2": "django>=4.2,<5.0", "5.2": "django>=5.2,<6.0", "6.1": "django>=6.1,<6.2"}


def _supported(python: str, django: str) -> bool:
    return not (django.startswith("6") and python in ("3.10", "3.11"))


@nox.session
@nox.parametrize(
    "python,django",
    [(p, d) for p in PYTHONS for d in DJANGOS if _supported(p, d)],
)
def tests(session: nox.Session, django: str) -> None:
    """The test suite on one Python x Django combination (psycopg_pool >= 3.3)."""
    session.install("-e", ".[test]", "-e", "./testing", DJANGOS[django])
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python="3.12")
def pool32(session: nox.Session) -> None:
    """The pool and rotation tests with psycopg_pool 3.2 (no callable kwargs there)."""
    session.install("-e", ".[test]", "-e", "./testing", DJANGOS["5.2"], "psycopg-pool>=3.2,<3.3")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_base.py", *session.posargs)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python="3.12")
def types(session: nox.Session) -> None:
    session.install("-e", ".[test]", "-e", "./testing")
    session.run("mypy")

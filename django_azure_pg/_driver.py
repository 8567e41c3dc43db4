"""psycopg 3 is this backend's driver: say so plainly when it is missing.

Django 4.2+ imports psycopg 3 when it is installed and falls back to psycopg2
(``django/db/backends/postgresql/base.py``), so an app that had only psycopg2
keeps working with Django's own ENGINE — but every module of this package uses
psycopg 3 (its errors, its connection class, the pool's callable ``kwargs``).
Without this check the first sign is ``ModuleNotFoundError: No module named
'psycopg'`` from deep inside an import, or Django's "isn't an available
database backend" around it.

Django 4.2 release notes, "Psycopg 3 support":
https://docs.djangoproject.com/en/5.2/releases/4.2/#psycopg-3-support
"""

from __future__ import annotations

import importlib.util

MISSING = (
    "django-azure-pg needs psycopg 3 (the 'psycopg' package, 3.1.8 or later), which is not "
    "installed in this environment. Install it with: pip install 'psycopg[binary]>=3.1.8' "
    "(or 'psycopg[c]' to build against the system libpq). psycopg2 alone is not enough; "
    "with both installed, Django uses psycopg 3 for every PostgreSQL alias — see 'Moving "
    "from a password' in the documentation (docs/moving-from-password.md) for what changes."
)


def require_psycopg3() -> None:
    """Raise ``ImproperlyConfigured`` (``ImportError`` without Django) if psycopg 3 is absent."""
    if importlib.util.find_spec("psycopg") is not None:
        return
    try:
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        raise ImportError(MISSING) from None
    raise ImproperlyConfigured(MISSING)

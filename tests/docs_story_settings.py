"""Settings of an app that follows the docs: ``from_env()`` (tests/test_docs.py runs the
rehearsal commands of testing/README.md with them)."""

import django_azure_pg

SECRET_KEY = "django-azure-pg-docs-story"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_azure_pg",
]
DATABASES = {"default": django_azure_pg.from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

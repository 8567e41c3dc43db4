"""Settings for the test suite. conftest.py fills in the port of the server it starts."""

import os

SECRET_KEY = "django-azure-pg-tests"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_azure_pg",
]
DATABASES = {
    "default": {
        "ENGINE": "django_azure_pg",
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("DJANGO_AZURE_PG_TEST_PORT", "5432"),
        "NAME": "app",
        "USER": "aad_tests",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"

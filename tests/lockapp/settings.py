"""Settings for the processes tests/test_migrate_locked.py starts: the suite's server, tokens
from the suite's identity emulator (IDENTITY_ENDPOINT/IDENTITY_HEADER in the environment)."""

from tests.subprocess_db import database

SECRET_KEY = "lockapp-tests"
USE_TZ = True
INSTALLED_APPS = ["django_azure_pg", "tests.lockapp"]
DATABASES = {"default": database("LOCKAPP")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

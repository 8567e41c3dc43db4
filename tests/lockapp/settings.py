"""Settings for the processes tests/test_migrate_locked.py starts: the suite's server, tokens
from the suite's identity emulator (IDENTITY_ENDPOINT/IDENTITY_HEADER in the environment)."""

import os

SECRET_KEY = "lockapp-tests"
USE_TZ = True
INSTALLED_APPS = ["django_azure_pg", "tests.lockapp"]
DATABASES = {
    "default": {
        "ENGINE": "django_azure_pg",
        "HOST": "127.0.0.1",
        "PORT": os.environ["LOCKAPP_PORT"],
        "NAME": os.environ["LOCKAPP_DB"],
        "USER": os.environ["LOCKAPP_USER"],
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

"""Settings for the worker processes tests/test_workers.py starts: the suite's server, tokens
from the suite's identity emulator (IDENTITY_ENDPOINT/IDENTITY_HEADER in the environment).

WORKERS_CONN_MAX_AGE and WORKERS_HEALTH_CHECKS let a test take the recipe apart."""

import os

from tests.subprocess_db import database

SECRET_KEY = "workers-app-tests"
USE_TZ = True
INSTALLED_APPS = ["django_azure_pg", "tests.workers_app"]
DATABASES = {
    "default": database(
        "WORKERS",
        CONN_MAX_AGE=float(os.environ.get("WORKERS_CONN_MAX_AGE", "60")),
        CONN_HEALTH_CHECKS=os.environ.get("WORKERS_HEALTH_CHECKS", "1") == "1",
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

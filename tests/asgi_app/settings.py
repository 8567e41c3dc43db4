"""Settings for the uvicorn process tests/test_asgi.py starts: the suite's server, tokens from
the suite's identity emulator (IDENTITY_ENDPOINT/IDENTITY_HEADER in the environment)."""

import os

from tests.subprocess_db import database

SECRET_KEY = "asgi-app-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = ["django_azure_pg", "tests.asgi_app"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.asgi_app.urls"
DATABASES = {
    "default": database(
        "ASGI_APP",
        # Under ASGI, Django's docs say: no persistent connections (CONN_MAX_AGE=0, the
        # default) — each request's connection is closed when it finishes — or a pool.
        CONN_MAX_AGE=0,
        CONN_HEALTH_CHECKS=True,  # with the pool: a pooled connection is checked first
    )
}
if os.environ.get("ASGI_APP_POOL") == "1":
    # max_lifetime: pooled sessions are replaced every second, so new logins need tokens
    # across the rotations (in production: the default hour, or less).
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 2, "max_size": 4, "timeout": 10, "max_lifetime": 1.0}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

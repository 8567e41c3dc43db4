"""Settings for the sample site: the same file runs on a laptop, in `make demo` and on App Service.

The database comes from Service Connector's variables (AZURE_POSTGRESQL_HOST, _NAME,
_USER, …) through django_azure_pg.from_env(); with none set, DATABASE_URL is used.
"""

import os
from pathlib import Path

import django_azure_pg

BASE_DIR = Path(__file__).resolve().parent.parent

# Telemetry to Application Insights (infra/main.bicep sets the connection string). The
# Azure Monitor distro installs the OpenTelemetry SDK; django-azure-pg only reports through
# the API: token fetches, logins, refused logins, throttling (README "Observability").
# Each gunicorn worker imports this file after the fork (no --preload), so each has its
# own exporter threads.
if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:  # not installed: the site runs without telemetry
        pass
    else:
        configure_azure_monitor()  # reads APPLICATIONINSIGHTS_CONNECTION_STRING


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "insecure-local-development-key" if DEBUG or not os.environ.get("WEBSITE_HOSTNAME") else ""
)
if not SECRET_KEY:
    raise RuntimeError("Set the SECRET_KEY app setting")

ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
if os.environ.get("WEBSITE_HOSTNAME"):  # set by App Service
    ALLOWED_HOSTS.append(os.environ["WEBSITE_HOSTNAME"])
    CSRF_TRUSTED_ORIGINS = [f"https://{os.environ['WEBSITE_HOSTNAME']}"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_azure_pg",
    "restaurants",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Passwordless PostgreSQL. DJANGO_DB_POOL=1 switches to Django's native pool.
_pool = env_bool("DJANGO_DB_POOL")
DATABASES = {
    "default": django_azure_pg.from_env(
        CONN_MAX_AGE=0 if _pool else int(os.environ.get("DJANGO_CONN_MAX_AGE", "600")),
        CONN_HEALTH_CHECKS=True,
        OPTIONS={
            "pool": {
                "min_size": 2,
                "max_size": 8,
                "timeout": 10,
                "max_lifetime": float(os.environ.get("DJANGO_POOL_MAX_LIFETIME", "3600")),
            }
        }
        if _pool
        else {},
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_azure_pg": {
            "handlers": ["console"],
            "level": os.environ.get("AZURE_PG_LOG_LEVEL", "INFO"),
        },
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}

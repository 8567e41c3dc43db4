"""Settings for an app run against the kit's command-line stack: only the variables it prints."""

import django_azure_pg

SECRET_KEY = "kit-cli-tests"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django_azure_pg"]
DATABASES = {"default": django_azure_pg.from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

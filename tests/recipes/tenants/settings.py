"""django-tenants on the token login: the recipe is the ORIGINAL_BACKEND line.

The test fills the server, database, role and identity in through the environment.
"""

import os

SECRET_KEY = "tenants-recipe"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-tenants builds its wrapper on ours ("django_azure_pg.postgis" for GeoDjango)
ORIGINAL_BACKEND = os.environ.get("RECIPE_ORIGINAL_BACKEND", "django_azure_pg")
DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("RECIPE_PG_PORT", "5432"),
        "NAME": os.environ.get("RECIPE_DB", "tenants"),
        "USER": os.environ.get("RECIPE_ROLE", "aad_tests"),
        "OPTIONS": {"client_id": os.environ.get("RECIPE_CLIENT_ID")},
    }
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]

SHARED_APPS = [
    "django_tenants",
    "tests.recipes.tenants.customers",
    "django.contrib.contenttypes",
    "django_azure_pg",
]
TENANT_APPS = ["django.contrib.contenttypes", "tests.recipes.tenants.notes"]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

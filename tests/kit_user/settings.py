"""A user's Django settings, as they would be in production (the plugin fills in the server)."""

SECRET_KEY = "kit-user"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {
    "default": {
        "ENGINE": "django_azure_pg",
        "HOST": "myserver.postgres.database.azure.com",
        "NAME": "app",
    }
}
USE_TZ = True

"""A tiny project run by ``manage.py test`` with the kit's runner (tests/test_kit_runner.py).

The DATABASES entry points where no server listens (loopback, port 1) on purpose: the
runner must point it at the kit's server.
"""

SECRET_KEY = "runner-app-tests"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django_azure_pg", "tests.runner_app"]
DATABASES = {
    "default": {
        "ENGINE": "django_azure_pg",
        "HOST": "127.0.0.1",
        "PORT": "1",
        "NAME": "menu",
        "USER": "aad_menu",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEST_RUNNER = "django_azure_pg_testing.runner.AzurePgTestRunner"

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(azure_pg_database):
    from django.conf import settings

    settings.DATABASES["default"].update(azure_pg_database)

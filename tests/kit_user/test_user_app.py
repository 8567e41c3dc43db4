"""A user's tests, run through real token logins by the django-azure-pg-testing plugin."""

import pytest
from django.contrib.auth.models import User
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_logs_in_with_a_token():
    User.objects.create(username="ada")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == "aad_app"
    assert User.objects.count() == 1


def test_survives_a_token_rotation(azure_pg_faults):
    issued = azure_pg_faults.stats.tokens_issued
    azure_pg_faults.revoke_all()  # the server now refuses every token issued so far
    connection.close()
    assert User.objects.count() == 0  # a new login: one refusal, one fresh token, retried
    assert azure_pg_faults.stats.tokens_issued == issued + 1


def test_identity_outage_while_the_token_is_valid(azure_pg_faults):
    azure_pg_faults.set_fault("error")  # the identity endpoint answers HTTP 500
    connection.close()
    assert User.objects.count() == 0  # the cached token still logs in

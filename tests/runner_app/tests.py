"""Run by ``manage.py test`` (Django's runner), not by pytest."""

import os
from pathlib import Path

from django.db import connection
from django.test import TestCase, TransactionTestCase

from django_azure_pg_testing.runner import kit

from .models import Dish


class OrmTests(TestCase):
    def test_orm_on_the_test_database(self) -> None:
        Dish.objects.create(name="soup")
        self.assertEqual(Dish.objects.count(), 1)
        self.assertEqual(connection.settings_dict["NAME"], "test_menu")

    def test_logged_in_with_a_token_as_the_role(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, pg_has_role(current_user, 'azure_ad_user', 'member'), "
                "inet_server_addr()::text"
            )
            self.assertEqual(cursor.fetchone(), ("aad_menu", True, "127.0.0.1/32"))
        self.assertEqual(connection.settings_dict["PASSWORD"], "")


class FaultTests(TransactionTestCase):
    def test_an_identity_outage_with_a_cached_token(self) -> None:
        emulator, server = kit()
        self.assertEqual(emulator.lifetime, 120.0)  # --azure-pg-token-lifetime 120
        self.assertEqual(connection.settings_dict["PORT"], str(server.port))
        Path(os.environ["RUNNER_APP_REPORT"]).write_text(str(server.root))  # gone at the end?
        Dish.objects.create(name="bread")  # a token is cached now
        emulator.set_fault("error")  # the endpoint answers HTTP 500
        try:
            connection.close()  # the next query logs in again, with the cached token
            self.assertEqual(Dish.objects.count(), 1)
        finally:
            emulator.set_fault(None)

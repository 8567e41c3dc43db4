"""Django's own test runner (``manage.py test``) through real Entra-token logins, locally.

In settings::

    TEST_RUNNER = "django_azure_pg_testing.runner.AzurePgTestRunner"

Before the test databases are made, the runner starts the identity emulator and a
throwaway PostgreSQL that accepts only its tokens, and points every alias whose ENGINE is
django-azure-pg's (``django_azure_pg``, ``django_azure_pg.postgis``) at that server: HOST,
PORT and an empty PASSWORD; USER stays (its role is created, token-login, with CREATEDB,
so Django can make ``test_<NAME>``). The app's managed identity is the emulator's: its
``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` replace this machine's identity variables for the
run. An alias with ``OPTIONS["client_id"]`` gets a user-assigned identity of that id.
Everything stops, and the environment is restored, after the test databases are
destroyed. ``--azure-pg-token-lifetime SECONDS`` makes tokens expire during the run;
``kit()`` hands a test the running emulator (faults, ``revoke_all()``) and server.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.test.runner import DiscoverRunner

from .identity import Identity, IdentityEmulator
from .postgres import LocalPostgres

DEFAULT_ROLE = "aad_app"
_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "WEBSITE_SITE_NAME",
)  # fmt: skip
"""Where azure-identity (and Service Connector's AZURE_POSTGRESQL_* names) could find another
identity than the emulator's: set aside for the run."""


_RUNNING: list[AzurePgTestRunner] = []


def kit() -> tuple[IdentityEmulator, LocalPostgres]:
    """The running emulator and server, for a test that injects faults or rotates tokens::

    emulator, server = kit()
    emulator.set_fault("error")  # the identity endpoint answers HTTP 500
    """
    if not _RUNNING or _RUNNING[-1].emulator is None or _RUNNING[-1].postgres is None:
        raise RuntimeError("no AzurePgTestRunner is running (settings.TEST_RUNNER)")
    return _RUNNING[-1].emulator, _RUNNING[-1].postgres


def _ours(entry: dict[str, Any]) -> bool:
    return str(entry.get("ENGINE", "")).startswith("django_azure_pg")


class AzurePgTestRunner(DiscoverRunner):
    """A ``DiscoverRunner`` whose test databases live on the kit's token-checked PostgreSQL."""

    token_lifetime = 3600.0

    def __init__(self, *args: Any, azure_pg_token_lifetime: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if azure_pg_token_lifetime is not None:
            self.token_lifetime = azure_pg_token_lifetime
        self.emulator: IdentityEmulator | None = None
        self.postgres: LocalPostgres | None = None
        self._saved_environ: dict[str, str] = {}

    @classmethod
    def add_arguments(cls, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--azure-pg-token-lifetime",
            type=float,
            metavar="SECONDS",
            help="Lifetime of the emulator's tokens (default 3600): short ones rotate mid-run.",
        )

    def setup_databases(self, **kwargs: Any) -> Any:
        self.start_kit()
        try:
            return super().setup_databases(**kwargs)
        except BaseException:
            self.stop_kit()
            raise

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        try:
            super().teardown_databases(old_config, **kwargs)
        finally:
            self.stop_kit()

    def start_kit(self) -> None:
        """Start the emulator and server; point django-azure-pg's aliases at them."""
        emulator = IdentityEmulator(lifetime=self.token_lifetime).start()
        self.emulator = emulator
        _RUNNING.append(self)
        self.postgres = LocalPostgres(ldap_port=emulator.ldap_port).start()
        for key in [
            *_IDENTITY_VARIABLES,
            *(k for k in os.environ if k.startswith("AZURE_POSTGRESQL_")),
        ]:
            if key in os.environ:
                self._saved_environ[key] = os.environ.pop(key)
        os.environ.update(emulator.app_service_env())
        roles: set[str] = set()
        databases: dict[str, dict[str, Any]] = settings.DATABASES
        for entry in databases.values():
            if not _ours(entry):
                continue
            role = str(entry.get("USER") or DEFAULT_ROLE)
            if role not in roles:
                self.postgres.create_entra_role(role, createdb=True)
                roles.add(role)
            options: dict[str, Any] = entry.get("OPTIONS") or {}
            client_id = options.get("client_id")
            identity = None
            if client_id:  # a user-assigned identity with that client id
                identity = Identity(f"uami-{role}", client_id=str(client_id))
                emulator.identities[identity.client_id] = identity
            emulator.allow_role(role, identity)
            # In place: Django's connection handler holds these very dicts.
            entry.update(
                HOST=self.postgres.host, PORT=str(self.postgres.port), USER=role, PASSWORD=""
            )

    def stop_kit(self) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.emulator is not None:
            self.emulator.stop()
            for key in self.emulator.app_service_env():
                os.environ.pop(key, None)
            self.emulator = None
        os.environ.update(self._saved_environ)
        self._saved_environ = {}

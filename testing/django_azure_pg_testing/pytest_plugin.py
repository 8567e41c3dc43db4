"""pytest fixtures: a local identity endpoint and a token-checked PostgreSQL for Django tests.

Installed with ``pip install "django-azure-pg[testing]"`` and loaded by pytest
automatically. Every fixture is lazy: nothing starts unless a test asks for it.

* ``azure_pg_emulator`` (session) — the identity endpoint; while it runs,
  ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` point azure-identity at it, exactly as
  App Service sets them, so the ENGINE builds ``ManagedIdentityCredential`` for it.
* ``azure_pg_server`` (session) — a throwaway PostgreSQL that accepts only
  tokens the emulator issued, for the role they were issued to, until expiry.
* ``azure_pg_database`` (session) — a ready ``DATABASES`` entry (no PASSWORD)
  for the role ``aad_app`` on that server.
* ``azure_pg_faults`` — the emulator, with faults and token lifetime restored
  after the test (``set_fault("error"|"hang"|"malformed"|"throttle")``,
  ``latency``, ``revoke_all()``, ``stats``), and what the faults left in
  django-azure-pg's token cache forgotten (``registry.reset(keep_tokens=True)``:
  fetches in flight, the refusal budget, a ``Retry-After``), so the next test
  does not inherit them; still-valid cached tokens stay.

A user's ``conftest.py`` needs five lines::

    @pytest.fixture(scope="session")
    def django_db_modify_db_settings(azure_pg_database):
        from django.conf import settings

        settings.DATABASES["default"].update(azure_pg_database)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from django_azure_pg.env import ENGINE

from .identity import IdentityEmulator
from .postgres import LocalPostgres

APP_ROLE = "aad_app"
APP_DATABASE = "app"


@pytest.fixture(scope="session")
def azure_pg_emulator() -> Iterator[IdentityEmulator]:
    emulator = IdentityEmulator().start()
    env = emulator.app_service_env()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield emulator
    finally:
        emulator.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def azure_pg_server(azure_pg_emulator: IdentityEmulator) -> Iterator[LocalPostgres]:
    with LocalPostgres(ldap_port=azure_pg_emulator.ldap_port) as server:
        server.create_entra_role(APP_ROLE, createdb=True)
        azure_pg_emulator.allow_role(APP_ROLE)
        server.create_database(APP_DATABASE, owner=APP_ROLE)
        yield server


@pytest.fixture(scope="session")
def azure_pg_database(azure_pg_server: LocalPostgres) -> dict[str, Any]:
    return {
        "ENGINE": ENGINE,
        "HOST": azure_pg_server.host,
        "PORT": str(azure_pg_server.port),
        "NAME": APP_DATABASE,
        "USER": APP_ROLE,
        "PASSWORD": "",
    }


@pytest.fixture
def azure_pg_faults(azure_pg_emulator: IdentityEmulator) -> Iterator[IdentityEmulator]:
    lifetime = azure_pg_emulator.lifetime
    try:
        yield azure_pg_emulator
    finally:
        azure_pg_emulator.clear_faults()
        azure_pg_emulator.lifetime = lifetime
        # A test that revoked tokens spent the refusal budget of the token sources
        # its connections hold, one that throttled left a Retry-After: the next test
        # must not inherit them. Still-valid tokens stay, as in a running process.
        from django_azure_pg import registry

        registry.reset(keep_tokens=True)

"""The pool closes quietly at interpreter exit (_pool.close_at_exit), in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import django
import pytest

from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs 5.1+"),
]

# A management command's life with the pool: one query (or a failed login), then exit.
# An exit hook registered before the pool is built runs after the package's own (atexit
# is last in, first out): it stands for the rest of a slow exit, during which a pool that
# is still open keeps logging in (after a failure psycopg_pool retries in ~1 s).
CHILD = textwrap.dedent(
    """
    import atexit, logging, os, sys, time
    import django
    from django.conf import settings

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    pool = None

    def the_rest_of_a_slow_exit():
        print("EXITING", file=sys.stderr, flush=True)
        time.sleep(1.5)
        print(f"closed={pool is not None and pool.closed}", flush=True)

    atexit.register(the_rest_of_a_slow_exit)
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django_azure_pg",
            "HOST": os.environ["T_HOST"], "PORT": os.environ["T_PORT"],
            "NAME": os.environ["T_NAME"], "USER": os.environ["T_USER"],
            "OPTIONS": {
                "client_id": os.environ["T_CLIENT_ID"],
                "pool": {"min_size": 2, "max_size": 4, "timeout": 0.3},
            },
        }},
        INSTALLED_APPS=["django_azure_pg"],
    )
    django.setup()
    from django.db import OperationalError, connection

    pool = connection.pool
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        print("query ok", flush=True)
    except OperationalError as exc:
        print(f"login failed: {type(exc.__cause__).__name__}", flush=True)
    """
)


def run_child(
    postgres: LocalPostgres, identity: Identity, emulator: IdentityEmulator, user: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **emulator.app_service_env(),
        "T_HOST": postgres.host,
        "T_PORT": str(postgres.port),
        "T_NAME": ITEST_DB,
        "T_USER": user,
        "T_CLIENT_ID": identity.client_id,
    }
    return subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_pool_that_worked_closes_at_exit(
    postgres: LocalPostgres, identity: Identity, emulator: IdentityEmulator
) -> None:
    done = run_child(postgres, identity, emulator, ROLE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["query", "ok", "closed=True"]
    assert "error connecting" not in done.stderr, done.stderr


def test_a_failing_pool_stops_logging_in_at_exit(
    postgres: LocalPostgres, identity: Identity, emulator: IdentityEmulator
) -> None:
    done = run_child(postgres, identity, emulator, "aad_pool_exit_ghost")  # no such role
    assert done.returncode == 0, done.stderr
    assert "login failed" in done.stdout and "closed=True" in done.stdout
    before, _, after = done.stderr.partition("EXITING")
    assert "error connecting in 'pool-" in before  # psycopg_pool's retries while it ran
    assert "error connecting" not in after, after  # none once the interpreter exits

"""``migrate`` that several instances (or overlapping deploys) may start at the same moment.

App Service runs the startup command on every instance, a deploy pipeline can overlap
the previous one, a Container Apps job can start twice. Two ``migrate`` runs at once
both see a migration as unapplied and both try to apply it. Here, each run first takes
a PostgreSQL session advisory lock (``pg_advisory_lock(LOCK_KEY)``) on the very
connection ``migrate`` then uses: one run migrates, the others wait for it and then run
``migrate`` too — by then a no-op ("No migrations to apply"), but not skipped, so a run
that failed halfway is finished by the next one instead of being taken for done.

The lock belongs to the session: it is released at the end, or by the server when the
session ends, so a killed run cannot leave it held. Advisory locks are per database, so
one fixed key serves every project. Options are ``migrate``'s own, plus
``--lock-timeout``.

A session lock needs a session of its own: connect directly (Flexible Server's port
5432), not through PgBouncer in transaction mode (port 6432), which hands each
transaction a server connection of its choosing.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.core.management.base import CommandError, CommandParser
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import DatabaseError, connections

LOCK_KEY = 88256283
"""The advisory lock key: ``zlib.crc32(b"django_azure_pg:migrate")``. Fixed and documented, so
an operator can see a running migration in ``pg_locks`` (``objid = 88256283``) or wait
for it with ``SELECT pg_advisory_lock(88256283)``."""


class Command(MigrateCommand):
    help = (
        "Apply migrations while holding a PostgreSQL advisory lock: when several instances "
        "start it at once, one migrates and the others wait, then find nothing left to do. "
        "Takes every option migrate takes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="Give up (exit 1) after waiting this long for another run's lock. "
            "Default: wait as long as it takes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":  # nothing to lock with: a plain migrate
            super().handle(*args, **options)
            return
        timeout = options["lock_timeout"]
        if timeout < 0:
            raise CommandError("--lock-timeout must be zero (no limit) or more seconds")
        loud = options["verbosity"] >= 1
        self._lock(connection, timeout, loud)
        try:
            super().handle(*args, **options)
        finally:
            self._unlock(connection, loud)

    def _lock(self, connection: Any, timeout: float, loud: bool) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            if cursor.fetchone()[0]:
                return
            if loud:
                self.stdout.write(
                    f"Another migrate holds the migration lock (pg_advisory_lock {LOCK_KEY}); "
                    "waiting for it to finish…"
                )
            started = time.monotonic()
            # lock_timeout bounds any lock wait, advisory ones included (SQLSTATE 55P03).
            limit_ms = max(1, round(timeout * 1000)) if timeout else 0  # 0: no limit
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [str(limit_ms)])
            try:
                cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
            except DatabaseError as exc:
                if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                    raise
                raise CommandError(
                    f"Another migrate still held the migration lock after {timeout:g} s "
                    "(--lock-timeout); nothing was migrated by this run."
                ) from exc
            finally:
                cursor.execute("RESET lock_timeout")
            if loud:
                self.stdout.write(
                    f"Migration lock taken after {time.monotonic() - started:.1f} s of waiting."
                )

    def _unlock(self, connection: Any, loud: bool) -> None:
        if connection.connection is None:  # closed meanwhile: the server released the lock
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
            held = cursor.fetchone()[0]
        if not held and loud:
            # The session that took the lock ended during migrate (a dropped connection,
            # reopened since): the server released the lock then, before migrate finished.
            self.stderr.write("The migration lock was lost while migrating (the session ended).")

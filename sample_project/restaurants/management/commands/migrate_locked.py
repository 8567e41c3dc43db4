"""``migrate`` that waits for a PostgreSQL advisory lock, so two runs never migrate at once.

The deploy step (deploy.sh, the azd predeploy hook, a CI job) runs it — not the
container start-up — but two deploys can still overlap. The lock is a session
lock on the same connection migrate uses; it is released at the end, or by the
server when the session ends, so a killed run cannot leave it held.
"""

from __future__ import annotations

import zlib
from typing import Any

from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import connections

# One fixed key for "this project's migrations" (any constant works; pg_advisory_lock takes a bigint).
LOCK_KEY = zlib.crc32(b"restaurants:migrate")


class Command(MigrateCommand):
    help = "Apply migrations while holding a PostgreSQL advisory lock (one migrator at a time)."

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            super().handle(*args, **options)
            return
        with connection.cursor() as cursor:
            if options["verbosity"] >= 1:
                self.stdout.write("Waiting for the migration lock…")
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            super().handle(*args, **options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

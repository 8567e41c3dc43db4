"""A long-running command, driven one iteration per line on stdin (the test's clock, not ours).

``--recipe``: ``close_old_connections()`` at the start of every iteration, as the docs say.
Without it, a naive loop. Prints one JSON line per iteration: ok, or the error's type."""

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection


class Command(BaseCommand):
    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--recipe", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        print(json.dumps({"ready": True}), flush=True)
        for _ in sys.stdin:
            if options["recipe"]:
                close_old_connections()
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    (backend,) = cursor.fetchone()
            except Exception as exc:  # reported, and the loop goes on, as a worker's would
                print(json.dumps({"ok": False, "error": type(exc).__name__}), flush=True)
            else:
                print(json.dumps({"ok": True, "backend": backend}), flush=True)

"""``manage.py dbshell`` along the app's own route, with a fresh token in ``PGPASSWORD``.

Django's client hands psql ``-h``/``-p``/``-U``, the database name as an
argument and the TLS settings as ``PG*`` variables. Those variables rank below
a service file in libpq, so a file's ``sslmode=disable`` would beat the app's
``verify-full``; and psql expands a database name that looks like a connection
string (``NAME="host=elsewhere sslmode=disable"``). So psql gets instead one
connection string, built from the very parameters the app connects with
(routed and guarded by _core/tls.py): explicit parameters outrank every file and
variable, and NAME is quoted as the value of ``dbname``, never parsed. The
token goes in the child's environment (never in its argument list).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable
from typing import Any

from django.db.backends.postgresql.client import DatabaseClient as PostgresClient
from psycopg.conninfo import make_conninfo

from ._core import tls


class DatabaseClient(PostgresClient):
    def runshell(self, parameters: Iterable[str]) -> None:
        login = getattr(self.connection, "azure_login", None)
        settings_dict: dict[str, Any] = self.connection.settings_dict
        # The app's own parameters: our keys removed, the alias's pinned route written in,
        # and (tls.Routed) the route they take.
        app_params = self.connection.get_connection_params()
        env: dict[str, str] = {}
        if login is not None:
            app_params, _ = login.guard(app_params)  # the route found with them
        params = tls.libpq_params(app_params)
        params.pop("password", None)
        if login is not None:
            token = login.token()
            params["user"] = login.role_for(token)
            env["PGPASSWORD"] = token
        elif settings_dict.get("PASSWORD"):
            env["PGPASSWORD"] = str(settings_dict["PASSWORD"])
        args = [self.executable_name, make_conninfo("", **params), *parameters]
        self._run(args, env)

    def _run(self, args: list[str], env: dict[str, str] | None) -> None:
        # Django's own runshell, minus reading PASSWORD from the settings.
        sigint_handler = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            subprocess.run(args, env={**os.environ, **env} if env else None, check=True)
        finally:
            signal.signal(signal.SIGINT, sigint_handler)

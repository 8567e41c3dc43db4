"""``manage.py dbshell`` with a fresh token in ``PGPASSWORD``.

Django's client reads ``settings_dict["PASSWORD"]``; ours puts the token in the
child's environment (never in its argument list) and the role name in ``-U``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable
from typing import Any

from django.db.backends.postgresql.client import DatabaseClient as PostgresClient

from . import options, tls


class DatabaseClient(PostgresClient):
    def runshell(self, parameters: Iterable[str]) -> None:
        login = getattr(self.connection, "azure_login", None)
        settings_dict: dict[str, Any] = self.connection.settings_dict
        # The same sslmode and root file as the app's own connections (tls.py).
        params = self.connection.get_connection_params()
        opts = options.strip(dict(settings_dict["OPTIONS"]))
        for key in ("sslmode", "sslrootcert"):
            if params.get(key):
                opts[key] = params[key]
        if login is not None:
            tls.guard(self.connection.alias, params, allow_plaintext=login.allow_plaintext)
            token = login.token()
            settings_dict = {
                **settings_dict,
                "USER": login.role_for(token),
                "PASSWORD": token,
            }
        settings_dict = {**settings_dict, "OPTIONS": opts}
        args, env = self.settings_to_cmd_args_env(settings_dict, parameters)
        if params.get("hostaddr"):  # Django's client does not pass it; psql must dial the same
            env = {**(env or {}), "PGHOSTADDR": str(params["hostaddr"])}
        self._run(args, env)

    def _run(self, args: list[str], env: dict[str, str] | None) -> None:
        # Django's own runshell, minus reading PASSWORD from the settings.
        sigint_handler = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            subprocess.run(args, env={**os.environ, **env} if env else None, check=True)
        finally:
            signal.signal(signal.SIGINT, sigint_handler)

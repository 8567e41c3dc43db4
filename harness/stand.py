"""A local stand-in for the sample's Azure deployment, used by the demo and the soak suite.

What Azure does at deploy time happens here, in the same order:

1. the identity endpoint (App Service protocol) and an Entra-enabled PostgreSQL start;
2. the server admin creates the app database (owned by a password role);
3. the app's role ``aad_<connection>`` is created the way Service Connector does it
   (``create_aad_principal`` → ``pgaadauth_create_principal_with_oid``);
4. migrations run as the owner, then ``grant_aad_privileges`` gives the role access;
5. the site runs under gunicorn with App Service's environment variables and no password.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django_azure_pg_testing import IdentityEmulator, LocalPostgres
from django_azure_pg_testing.postgres import free_port

SITE_DIR = Path(__file__).resolve().parent.parent / "sample_project"
CONNECTION = "demo"
ROLE = f"aad_{CONNECTION}"
OWNER = "restaurant_owner"
DATABASE = "restaurant"
MODES = {
    "conn_max_age_0": {"DJANGO_CONN_MAX_AGE": "0"},
    "persistent": {"DJANGO_CONN_MAX_AGE": "600"},
    "pool": {"DJANGO_DB_POOL": "1"},
}


def _clean_environ() -> dict[str, str]:
    drop = ("AZURE_POSTGRESQL_", "IDENTITY_", "MSI_", "AZURE_CLIENT", "DJANGO_", "PG")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class Site:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Stand:
    lifetime: float = 60.0
    workers: int = 2
    threads: int = 4
    emulator: IdentityEmulator = field(init=False)
    postgres: LocalPostgres = field(init=False)
    owner_password: str = field(init=False, default_factory=lambda: secrets.token_urlsafe(16))
    _stack: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)

    def __enter__(self) -> Stand:
        try:
            self.emulator = self._stack.enter_context(
                IdentityEmulator(lifetime=self.lifetime, system_identity="app-restaurant-demo")
            )
            self.postgres = self._stack.enter_context(
                LocalPostgres(ldap_port=self.emulator.ldap_port)
            )
            self._provision()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # -- provisioning ----------------------------------------------------------

    def _provision(self) -> None:
        pg = self.postgres
        pg.create_password_role(OWNER, self.owner_password, createdb=True)
        pg.create_database(DATABASE, owner=OWNER)
        pg.install_pgaadauth_stand_in()
        oid = self.emulator.system.object_id
        self.manage(
            "create_aad_principal",
            ROLE,
            "--oid",
            oid,
            "--type",
            "service",
            "--owner-user",
            OWNER,
            owner=True,
        )
        self.emulator.allow_role(ROLE)  # Entra side of pgaadauth_create_principal_with_oid
        self.manage("migrate_locked", "--noinput", owner=True, password_auth=True)
        self.manage("grant_aad_privileges", "--owner-user", OWNER, owner=True)

    def app_env(self, mode: str = "conn_max_age_0", **extra: str) -> dict[str, str]:
        """What App Service + Service Connector (client type django) give the app."""
        return {
            **_clean_environ(),
            **self.emulator.app_service_env(),
            "AZURE_POSTGRESQL_HOST": self.postgres.host,
            "AZURE_POSTGRESQL_PORT": str(self.postgres.port),
            "AZURE_POSTGRESQL_NAME": DATABASE,
            "AZURE_POSTGRESQL_USER": ROLE,
            "SECRET_KEY": "demo-" + secrets.token_hex(16),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **MODES[mode],
            **extra,
        }

    def manage(
        self, *args: str, owner: bool = False, password_auth: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = self.app_env()
        if owner:
            env["AZURE_PG_OWNER_PASSWORD"] = self.owner_password
        if password_auth:  # Service Connector's "secret" auth type: the same ENGINE
            env["AZURE_POSTGRESQL_USER"] = OWNER
            env["AZURE_POSTGRESQL_PASSWORD"] = self.owner_password
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=SITE_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    # -- the site ----------------------------------------------------------------

    def start_site(self, mode: str = "conn_max_age_0", *, warm: bool = True, **extra: str) -> Site:
        """Start gunicorn; ``warm`` waits for /health/ (a first token fetch), else only for the port."""
        port = free_port()
        log = self.postgres.root / f"gunicorn-{mode}-{port}.log"
        self.manage("collectstatic", "--noinput")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--timeout",
                "60",
                "--graceful-timeout",
                "10",
                "--error-logfile",
                str(log),
                "--capture-output",
            ],
            cwd=SITE_DIR,
            env=self.app_env(mode, **extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        site = Site(process, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if not warm:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return site
                if get_json(site.url + "/health/", timeout=5)[0] == 200:
                    return site
            time.sleep(0.2)
        site.stop()
        raise RuntimeError(f"the site did not become healthy:\n{log.read_text()[-3000:]}")

    @contextlib.contextmanager
    def site(
        self, mode: str = "conn_max_age_0", *, warm: bool = True, **extra: str
    ) -> Iterator[Site]:
        site = self.start_site(mode, warm=warm, **extra)
        try:
            yield site
        finally:
            site.stop()

    def stored(self) -> tuple[set[int], dict[int, int]]:
        """Restaurant ids, and review counts per restaurant, as the owner sees them."""
        ids = {
            r[0]
            for r in self.postgres.execute("SELECT id FROM restaurants_restaurant", dbname=DATABASE)
        }
        reviews = dict(
            self.postgres.execute(
                "SELECT restaurant_id, count(*) FROM restaurants_review GROUP BY 1", dbname=DATABASE
            )
        )
        return ids, reviews


def get_json(url: str, data: dict[str, Any] | None = None, timeout: float = 30) -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(  # noqa: S310 — the loopback site under test
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 — loopback
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None

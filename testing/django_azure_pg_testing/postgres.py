"""A throwaway PostgreSQL server set up like Azure Flexible Server for Entra logins.

* TCP on 127.0.0.1 with TLS (a self-signed certificate), so ``sslmode=require``
  works as it does against Azure.
* Members of the ``azure_ad_user`` group log in with an access token, checked
  by the identity emulator's LDAP responder; other roles need a password
  (scram-sha-256). The superuser ``postgres`` connects over the Unix socket.
* With token logins, the public port is a :class:`~.front.PostgresFront`: a
  refused login gets the text Azure sends (expired token, wrong token, missing
  role), not PostgreSQL's "LDAP authentication failed"; the server itself
  listens on ``backend_port``.
* PostgreSQL refuses to run as root: when we are root, the cluster belongs to
  the ``postgres`` system user (or ``nobody``) and the server runs as it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .certs import make_server_cert
from .front import PostgresFront
from .ldap import ask_why

ENTRA_GROUP = "azure_ad_user"
SUPERUSER = "postgres"


def find_bindir() -> Path:
    """Where initdb/pg_ctl live: $PG_BINDIR, the newest /usr/lib/postgresql/*/bin, or PATH."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found. Install PostgreSQL "
        "(Debian/Ubuntu: apt-get install postgresql) or set PG_BINDIR."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The OS user to run the server as when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


_PGAADAUTH_STAND_IN = """
CREATE OR REPLACE FUNCTION pgaadauth_create_principal_with_oid(
    rolename text, objectid text, objecttype text, isadmin boolean, ismfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  EXECUTE format('CREATE ROLE %I LOGIN IN ROLE azure_ad_user', rolename);
  EXECUTE format('COMMENT ON ROLE %I IS %L', rolename, 'pgaadauth oid=' || objectid);
  RETURN format('Created role for "%s"', rolename);
END $$;
CREATE OR REPLACE FUNCTION pgaadauth_create_principal(
    rolename text, isadmin boolean, ismfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  EXECUTE format('CREATE ROLE %I LOGIN IN ROLE azure_ad_user', rolename);
  RETURN format('Created role for "%s"', rolename);
END $$;
"""


class LocalPostgres:
    """``with LocalPostgres(ldap_port=emulator.ldap_port) as pg: ...``"""

    def __init__(
        self,
        *,
        ldap_port: int | None = None,
        port: int | None = None,
        tls: bool = True,
        max_connections: int = 200,
        settings: dict[str, str] | None = None,
        certificate: tuple[str | Path, str | Path] | None = None,
        azure_texts: bool = True,
    ) -> None:
        """``certificate``: (cert, key) PEM files to serve instead of a self-signed one,
        e.g. one for an Azure-like host name signed by a test CA."""
        self.ldap_port = ldap_port
        self.certificate = certificate
        self.port = port or free_port()
        # ``azure_texts``: refused logins answered with Azure's texts by a front on
        # ``port`` (costs a hop: about 2-3 ms per TLS login on loopback); without it,
        # PostgreSQL's own "LDAP authentication failed" and no hop.
        self.azure_texts = bool(ldap_port) and azure_texts
        self.backend_port = free_port() if self.azure_texts else self.port
        self.host = "127.0.0.1"
        self.tls = tls
        self.max_connections = max_connections
        self.settings = settings or {}
        self.bindir = find_bindir()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="django-azure-pg-"))
        self.datadir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.logfile = self.root / "postgres.log"
        self._front: PostgresFront | None = None
        self._roles: set[str] = set()

    # -- lifecycle ----------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            user=self.user,
            check=check,
            capture_output=True,
            text=True,
            cwd=self.root,
        )

    def start(self) -> LocalPostgres:
        self.socket_dir.mkdir()
        if self.user:
            uid = pwd.getpwnam(self.user).pw_uid
            for path in (self.root, self.socket_dir):
                os.chown(path, uid, -1)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr}") from exc
        self._configure()
        self._pg_ctl_start()
        self.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(ENTRA_GROUP)))
        if self.ldap_port and self.azure_texts:
            ldap_port = self.ldap_port
            tls = self.tls
            self._front = PostgresFront(
                self.backend_port,
                lambda role, token: ask_why(ldap_port, role, token) or "refused",
                self.role_exists,
                certfile=str(self.datadir / "server.crt") if tls else None,
                keyfile=str(self.datadir / "server.key") if tls else None,
                port=self.port,
            ).start()
        return self

    def role_exists(self, role: str) -> bool:
        if role in self._roles:
            return True
        found = self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if found:
            self._roles.add(role)
        return bool(found)

    def _configure(self) -> None:
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.backend_port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "password_encryption": "'scram-sha-256'",
            **self.settings,
        }
        if self.tls:
            crt, key = self.datadir / "server.crt", self.datadir / "server.key"
            made = self.certificate or make_server_cert(self.root, "localhost")
            shutil.copyfile(made[0], crt)
            shutil.copyfile(made[1], key)
            key.chmod(0o600)
            if self.user:
                uid = pwd.getpwnam(self.user).pw_uid
                os.chown(crt, uid, -1)
                os.chown(key, uid, -1)
            conf.update(ssl="on", ssl_cert_file=f"'{crt}'", ssl_key_file=f"'{key}'")
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        hba = ["local all all trust"]
        if self.ldap_port:
            hba.append(
                f"host all +{ENTRA_GROUP} 127.0.0.1/32 ldap ldapserver=127.0.0.1 "
                f'ldapport={self.ldap_port} ldapprefix="cn=" ldapsuffix=",dc=emulator,dc=local"'
            )
        hba.append("host all all 127.0.0.1/32 scram-sha-256")
        (self.datadir / "pg_hba.conf").write_text("\n".join(hba) + "\n")

    def _pg_ctl_start(self) -> None:
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log[-2000:]}")

    def stop(self, *, cleanup: bool = True) -> None:
        if self._front is not None:
            self._front.stop()
            self._front = None
        if self.datadir.exists():
            self._run(
                "pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", check=False
            )
        if cleanup:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """Stop (dropping every session) and start again on the same port."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop", check=False)
        self._pg_ctl_start()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- administration ------------------------------------------------------

    def admin_connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A superuser connection over the Unix socket."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.backend_port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            **kwargs,
        )

    def execute(
        self, query: str | sql.Composable, params: Any = None, *, dbname: str = "postgres"
    ) -> list[Any]:
        with self.admin_connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, owner: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            query = sql.SQL("{} OWNER {}").format(query, sql.Identifier(owner))
        self.execute(query)

    def create_entra_role(
        self, name: str, *, createdb: bool = False, superuser: bool = False
    ) -> None:
        """A role that logs in with a token, as ``pgaadauth_create_principal`` makes."""
        login = sql.SQL("IN ROLE {}").format(sql.Identifier(ENTRA_GROUP))
        self._create_role(name, login, createdb=createdb, superuser=superuser)

    def create_password_role(
        self, name: str, password: str, *, createdb: bool = False, superuser: bool = False
    ) -> None:
        login = sql.SQL("PASSWORD {}").format(sql.Literal(password))
        self._create_role(name, login, createdb=createdb, superuser=superuser)

    def _create_role(
        self, name: str, login: sql.Composable, *, createdb: bool, superuser: bool
    ) -> None:
        attrs = sql.SQL(" ").join(
            sql.SQL(a) for a, on in (("CREATEDB", createdb), ("SUPERUSER", superuser)) if on
        )
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN {} {}").format(sql.Identifier(name), attrs, login)
        )

    def install_pgaadauth_stand_in(self) -> None:
        """A local stand-in for Azure's ``pgaadauth_create_principal[_with_oid]``.

        Azure's functions (in the ``postgres`` database) create a role that logs in
        with Entra tokens; these create a member of ``azure_ad_user``, which this
        server checks through the emulator. By name, the role logs in for the identity
        of that name; by object id (``_with_oid``), once the emulator can read the
        mapping (``emulator.principal_of = pg.principal_object_id``) or was told it
        (``IdentityEmulator.allow_role``).
        """
        self.execute(_PGAADAUTH_STAND_IN)

    def principal_object_id(self, role: str) -> str | None:
        """The object id ``pgaadauth_create_principal_with_oid`` (the stand-in) mapped ``role``
        to, or ``None``. Azure keeps it in a security label; the stand-in in a comment on the
        role. ``IdentityEmulator.principal_of`` takes this method, so such a role logs in."""
        rows = self.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
            (role,),
        )
        note = rows[0][0] if rows and rows[0][0] else ""
        prefix = "pgaadauth oid="
        return note[len(prefix) :] if note.startswith(prefix) else None

    def log_tail(self, chars: int = 4000) -> str:
        return self.logfile.read_text()[-chars:] if self.logfile.exists() else ""

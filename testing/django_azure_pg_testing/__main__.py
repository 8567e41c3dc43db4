"""Run the local identity endpoint (and optionally an Entra-style PostgreSQL) until Ctrl-C.

    python -m django_azure_pg_testing --postgres --role aad_myapp
    python -m django_azure_pg_testing --postgres --role aad_myapp --owner myadmin
    python -m django_azure_pg_testing --postgres --role aad_myapp --owner myadmin \
        --db-port 55432 --identity-port 55480 --state .azure-pg-kit.json

prints the environment variables that point azure-identity (and the app's
settings) at them. With ``--owner`` the database belongs to a password role,
as on Azure where the server admin (not the app's Entra role) owns the tables
and runs ``migrate``: its login is printed too, with the commands that rehearse
it (``grant_aad_privileges --owner-user``, then ``migrate`` as the owner).
With fixed ports and ``--state`` every start prints the same variables. The server has
stand-ins for Azure's ``pgaadauth_create_principal[_with_oid]``, so ``create_aad_principal``
can be rehearsed: a role made for the printed object id logs in with the app's tokens.
Loopback only; the password is a throwaway.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import sys
import threading
import uuid
from pathlib import Path

from .identity import Identity, IdentityEmulator
from .postgres import LocalPostgres


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m django_azure_pg_testing", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--lifetime", type=float, default=3600, help="token lifetime in seconds")
    parser.add_argument(
        "--identity-port",
        "--port",
        dest="identity_port",
        type=int,
        default=0,
        help="identity endpoint's HTTP port (default: any free port)",
    )
    parser.add_argument(
        "--db-port",
        type=int,
        default=0,
        help="with --postgres: PostgreSQL's port (default: any free port)",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="keep the identity header, the owner's password and the identity's ids in FILE "
        "(made on the first start, mode 0600): with fixed ports, every start prints the same "
        "variables",
    )
    parser.add_argument("--postgres", action="store_true", help="also start a throwaway PostgreSQL")
    parser.add_argument(
        "--role", action="append", default=[], help="create this token-login role (repeatable)"
    )
    parser.add_argument("--database", default="app", help="database to create with --postgres")
    parser.add_argument(
        "--owner",
        metavar="NAME",
        help="with --postgres: a password role that owns the database (as the server admin "
        "does on Azure); its login is printed for grant_aad_privileges --owner-user",
    )
    args = parser.parse_args(argv)
    if args.owner and not args.postgres:
        parser.error("--owner needs --postgres")
    if args.db_port and not args.postgres:
        parser.error("--db-port needs --postgres")
    state = _load_state(args.state)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emulator = IdentityEmulator(lifetime=args.lifetime, port=args.identity_port)
    emulator.identity_header = state["identity_header"]
    emulator.system = Identity(
        emulator.system.name,
        client_id=state["client_id"],
        object_id=state["object_id"],
        kind="system",
    )
    with emulator:
        env = {**emulator.app_service_env()}
        pg = None
        try:
            if args.postgres:
                pg = LocalPostgres(ldap_port=emulator.ldap_port, port=args.db_port or None).start()
                # create_aad_principal can be rehearsed: Azure's pgaadauth functions, and
                # roles they map by object id log in for that identity.
                pg.install_pgaadauth_stand_in()
                emulator.principal_of = pg.principal_object_id
                for role in args.role:
                    pg.create_entra_role(role, createdb=True)
                    emulator.allow_role(role)
                owner = args.role[0] if args.role else None
                if args.owner:
                    password = state["owner_password"]
                    pg.create_password_role(args.owner, password, createdb=True)
                    owner = args.owner
                    env["AZURE_PG_OWNER_PASSWORD"] = password  # grant_aad_privileges reads it
                pg.create_database(args.database, owner=owner)
                env |= {
                    "AZURE_POSTGRESQL_HOST": pg.host,
                    "AZURE_POSTGRESQL_PORT": str(pg.port),
                    "AZURE_POSTGRESQL_NAME": args.database,
                }
                if args.role:
                    env["AZURE_POSTGRESQL_USER"] = args.role[0]
            else:
                for role in args.role:
                    emulator.allow_role(role)
            print(f"# identity endpoint on {emulator.url}; token lifetime {args.lifetime:g} s")
            print(
                f"# the app's managed identity: {emulator.system.name}, "
                f"object id {emulator.system.object_id}"
            )
            for key, value in env.items():
                print(f"export {key}={shlex.quote(value)}")
            if args.owner:
                grantee = f" --role {shlex.quote(args.role[0])}" if args.role else ""
                print(
                    f"# owner login: user {args.owner}, password in AZURE_PG_OWNER_PASSWORD; "
                    f'psql: PGPASSWORD="$AZURE_PG_OWNER_PASSWORD" psql -h {env["AZURE_POSTGRESQL_HOST"]} '
                    f"-p {env['AZURE_POSTGRESQL_PORT']} -U {args.owner} {args.database}"
                )
                print("# rehearse (the owner owns the tables and migrates; the app role gets DML):")
                print(
                    f"#   python manage.py grant_aad_privileges --owner-user {args.owner}{grantee}"
                )
                print(
                    f"#   AZURE_POSTGRESQL_USER={args.owner} "
                    'AZURE_POSTGRESQL_PASSWORD="$AZURE_PG_OWNER_PASSWORD" python manage.py migrate'
                )
                print(
                    f"#   python manage.py grant_aad_privileges --owner-user {args.owner}"
                    f"{grantee} --check"
                )
            print("# Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        finally:
            if pg is not None:
                pg.stop()
    return 0


def _load_state(path: str | None) -> dict[str, str]:
    """The secrets and ids a start prints: new ones, or those ``path`` kept from the first start."""
    fresh = {
        "identity_header": secrets.token_hex(16),
        "owner_password": secrets.token_urlsafe(18),
        "client_id": str(uuid.uuid4()),
        "object_id": str(uuid.uuid4()),
    }
    if path is None:
        return fresh
    file = Path(path)
    if file.exists():
        kept = json.loads(file.read_text())
        return {**fresh, **{k: str(v) for k, v in kept.items() if k in fresh}}
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(fresh, f)
    return fresh


if __name__ == "__main__":
    sys.exit(main())

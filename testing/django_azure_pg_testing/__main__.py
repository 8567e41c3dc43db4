"""Run the local identity endpoint (and optionally an Entra-style PostgreSQL) until Ctrl-C.

    python -m django_azure_pg_testing --postgres --role aad_myapp
    python -m django_azure_pg_testing --postgres --role aad_myapp --owner myadmin

prints the environment variables that point azure-identity (and the app's
settings) at them. With ``--owner`` the database belongs to a password role,
as on Azure where the server admin (not the app's Entra role) owns the tables
and runs ``migrate``: its login is printed too, with the commands that rehearse
it (``grant_aad_privileges --owner-user``, then ``migrate`` as the owner).
Loopback only; the password is a throwaway.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shlex
import signal
import sys
import threading

from .identity import IdentityEmulator
from .postgres import LocalPostgres


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m django_azure_pg_testing", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--lifetime", type=float, default=3600, help="token lifetime in seconds")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: any free port)")
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

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with IdentityEmulator(lifetime=args.lifetime, port=args.port) as emulator:
        env = {**emulator.app_service_env()}
        pg = None
        try:
            if args.postgres:
                pg = LocalPostgres(ldap_port=emulator.ldap_port).start()
                for role in args.role:
                    pg.create_entra_role(role, createdb=True)
                    emulator.allow_role(role)
                owner = args.role[0] if args.role else None
                if args.owner:
                    password = secrets.token_urlsafe(18)
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


if __name__ == "__main__":
    sys.exit(main())

"""Create a PostgreSQL role for an Entra principal on Azure (``pgaadauth_*`` functions)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser

from .. import _owner


class Command(BaseCommand):
    # The naming rules are Azure's: MicrosoftDocs/azure-databases-docs,
    # articles/postgresql/security/security-manage-entra-users.md.
    help = (
        "Create a role for a Microsoft Entra principal with Azure's pgaadauth_create_principal "
        "(by name) or pgaadauth_create_principal_with_oid (--oid). Runs in the 'postgres' "
        "database as an Entra admin. Without --oid the role name must be the principal's own "
        "Entra name (Azure looks it up in Entra and refuses a name it cannot find); with --oid "
        "any name works, e.g. Service Connector's aad_<connection>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "name",
            help=(
                "Role name. Without --oid: the principal's Entra name — a user's UPN (a guest's "
                "#EXT# UPN), a group's or service principal's display name (a managed "
                "identity's is its app's name, a slot's <app>/slots/<slot>). With --oid: any "
                "name, e.g. aad_myconnection --oid <principal id>."
            ),
        )
        parser.add_argument(
            "--oid",
            help=(
                "Object (principal) id of the user, group or service principal: maps the role "
                "by id with pgaadauth_create_principal_with_oid, so the name is free."
            ),
        )
        parser.add_argument("--type", choices=("user", "group", "service"), default="service")
        parser.add_argument("--admin", action="store_true", help="Make the role an Entra admin.")
        parser.add_argument("--mfa", action="store_true", help="Require MFA for the principal.")
        _owner.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        _owner.check_name("the role name", options["name"])
        if options["oid"] is not None:
            try:
                uuid.UUID(options["oid"])
            except ValueError:
                raise CommandError("--oid must be an object id (a GUID)") from None
        entry = _owner.settings_for(options, dbname="postgres")
        wrapper = _owner.connect(entry, options["database"])
        conn = wrapper.connection
        name = options["name"]
        try:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                self.stdout.write(f"Role {name!r} already exists; nothing to do.")
                return
            if options["oid"]:
                query = "SELECT * FROM pgaadauth_create_principal_with_oid(%s, %s, %s, %s, %s)"
                params: tuple[Any, ...] = (
                    name,
                    options["oid"],
                    options["type"],
                    options["admin"],
                    options["mfa"],
                )
            else:
                query = "SELECT * FROM pgaadauth_create_principal(%s, %s, %s)"
                params = (name, options["admin"], options["mfa"])
            try:
                result = conn.execute(query, params).fetchone()
            except psycopg.errors.UndefinedFunction as exc:
                raise CommandError(
                    "pgaadauth_create_principal is not available in database 'postgres' of "
                    f"{entry.get('HOST')!r}: this is not an Azure Database for PostgreSQL flexible "
                    "server with Microsoft Entra authentication enabled (or the function is "
                    "missing from this database)."
                ) from exc
            except psycopg.errors.InsufficientPrivilege as exc:
                raise CommandError(
                    f"{entry.get('USER')!r} may not create Entra principals: connect as an Entra "
                    "admin of the server (--owner-user <admin> --owner-entra)."
                ) from exc
            self.stdout.write(
                self.style.SUCCESS(f"Created role {name!r}: {result[0] if result else ''}")
            )
        finally:
            wrapper.close()

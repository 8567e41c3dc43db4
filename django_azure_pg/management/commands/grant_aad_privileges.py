"""Give the app's Entra role (``aad_<connection>``) what a Django app needs."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ..._core import grants
from .. import _owner


class Command(BaseCommand):
    help = (
        "Grant the app's role CONNECT/TEMP on the database, USAGE (and CREATE with --migrate) "
        "on schemas, privileges on all tables, sequences and functions, and default "
        "privileges for objects created later. Runs as the objects' owner; idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _owner.add_arguments(parser)
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--role", help="Role to grant to (default: the alias's USER).")
        who.add_argument("--connection", help="Service Connector connection name: role aad_NAME.")
        parser.add_argument(
            "--schema",
            action="append",
            dest="schemas",
            metavar="NAME",
            help="Schema to cover (repeatable; default: public).",
        )
        parser.add_argument("--migrate", action="store_true", help="Also CREATE on the schemas.")
        parser.add_argument(
            "--create-schemas",
            action="store_true",
            help="Also CREATE on the database, so the role can create schemas (django-tenants).",
        )
        parser.add_argument(
            "--extension",
            action="append",
            dest="extensions",
            metavar="NAME",
            help="Create this extension first, as the connected owner (repeatable; GeoDjango: "
            "postgis). On Azure it must be allow-listed in azure.extensions, and an untrusted "
            "one such as postgis created by a member of azure_pg_admin (an Entra admin).",
        )
        parser.add_argument("--read-only", action="store_true", help="SELECT only.")
        parser.add_argument(
            "--no-default-privileges",
            action="store_true",
            help="Do not ALTER DEFAULT PRIVILEGES for tables created later.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--check", action="store_true", help="Only report; change nothing.")
        mode.add_argument("--dry-run", action="store_true", help="Print the SQL; run nothing.")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["migrate"] and options["read_only"]:
            raise CommandError("--migrate and --read-only contradict each other")
        _owner.check_name("--role", options["role"])
        _owner.check_name("--connection", options["connection"])
        for schema in options["schemas"] or ():
            _owner.check_name("--schema", schema)
        for extension in options["extensions"] or ():
            _owner.check_name("--extension", extension)
        if options["read_only"] and (options["create_schemas"] or options["extensions"]):
            raise CommandError("--read-only contradicts --create-schemas and --extension")
        entry = _owner.settings_for(options)
        app_user = connections.settings[options["database"]]["USER"]
        role = options["role"] or (
            f"aad_{options['connection']}" if options["connection"] else app_user
        )
        _owner.check_name("--connection" if options["connection"] else "the role", role)
        if not role:
            raise CommandError("No role: pass --role or --connection, or set USER on the alias")
        wrapper = _owner.connect(entry, options["database"])
        try:
            self._run(wrapper.connection, role, options)
        finally:
            wrapper.close()

    def _run(self, conn: Any, role: str, options: dict[str, Any]) -> None:
        current_user, database = conn.execute("SELECT current_user, current_database()").fetchone()
        if current_user == role:
            raise CommandError(
                f"Connected as {role!r} itself: grants must run as the objects' owner. Use "
                "--owner-user, or --database with an alias whose USER is the owner, plus --role."
            )
        plan = grants.Plan(
            role=role,
            database=database,
            owner=current_user,
            schemas=tuple(dict.fromkeys(options["schemas"] or ["public"])),
            migrate=options["migrate"],
            read_only=options["read_only"],
            default_privileges=not options["no_default_privileges"],
            create_schemas=options["create_schemas"],
            extensions=tuple(dict.fromkeys(options["extensions"] or ())),
        )
        try:
            grants.validate(conn, plan)
        except grants.GrantError as exc:
            raise CommandError(str(exc)) from exc

        executed: list[str] = []
        added: set[tuple[str, str, str]] = set()
        if options["dry_run"]:
            executed = [s.as_string(conn) for s in grants.statements(plan)]
        elif not options["check"]:
            try:
                executed, added = grants.apply(conn, plan)
            except grants.ExtensionError as exc:
                server = getattr(getattr(exc.__cause__, "diag", None), "message_primary", None)
                raise CommandError(
                    f"{plan.owner!r} could not create extension {exc.name!r}: "
                    f"{server or exc.__cause__}. Nothing was changed. On Azure, allow-list it "
                    "(az postgres flexible-server parameter set --name azure.extensions "
                    f"--value {exc.name},...) and, for an untrusted extension such as postgis, "
                    "run as a member of azure_pg_admin (--owner-user <Entra admin> --owner-entra)."
                ) from exc
            except psycopg.errors.InsufficientPrivilege as exc:
                raise CommandError(self._not_owner(conn, plan)) from exc
        report = grants.verify(conn, plan)
        mode = "dry-run" if options["dry_run"] else "check" if options["check"] else "grant"
        if options["format"] == "json":
            self.stdout.write(
                json.dumps(
                    {
                        **report.as_dict(),
                        "mode": mode,
                        "granted_by": current_user,
                        "sql": executed,
                        "changes": sorted(" ".join(a) for a in added),
                    },
                    indent=2,
                )
            )
        else:
            self._text(plan, report, mode, executed, added)
        if options["check"] and not report.ok:
            raise CommandError(f"{role!r} is missing privileges (see above)", returncode=1)

    def _not_owner(self, conn: Any, plan: grants.Plan) -> str:
        report = grants.verify(conn, plan)
        foreign = [
            f"{s.schema}.{rel.name} (owned by {rel.owner!r})"
            for s in report.schemas
            for rel in [*s.unusable_tables, *s.unusable_sequences]
            if rel.owner != plan.owner
        ]
        listed = ", ".join(foreign[:10]) + (
            f" and {len(foreign) - 10} more" if len(foreign) > 10 else ""
        )
        return (
            f"{plan.owner!r} may not grant on objects another role owns: {listed or 'see --check'}. "
            "Nothing was changed. Run the command as their owner (--owner-user), or reassign "
            "them (ALTER ... OWNER TO) first."
        )

    def _text(
        self,
        plan: grants.Plan,
        report: grants.Report,
        mode: str,
        executed: list[str],
        added: set[tuple[str, str, str]],
    ) -> None:
        w = self.stdout.write
        w(f"Role {plan.role!r} in database {plan.database!r}, granting as {plan.owner!r}")
        if mode == "dry-run":
            w("SQL that would run (nothing executed):")
            for statement in executed:
                w(f"  {statement};")
        db = ", ".join(
            f"{p} {'yes' if ok else 'NO'}" for p, ok in report.database_privileges.items()
        )
        w(f"  database: {db}")
        if report.extensions:
            ext = ", ".join(f"{e} {'yes' if ok else 'NO'}" for e, ok in report.extensions.items())
            w(f"  extensions: {ext}")
        for s in report.schemas:
            privs = ", ".join(f"{p} {'yes' if ok else 'NO'}" for p, ok in s.privileges.items())
            line = (
                f"  schema {s.schema}: {privs}; "
                f"tables {s.tables - len(s.unusable_tables)}/{s.tables}; "
                f"sequences {s.sequences - len(s.unusable_sequences)}/{s.sequences}"
            )
            if s.default_privileges is not None:
                line += f"; default privileges {'yes' if s.default_privileges else 'NO'}"
            w(line)
            for kind, unusable in (
                ("table", s.unusable_tables),
                ("sequence", s.unusable_sequences),
            ):
                for rel in unusable:
                    w(
                        self.style.WARNING(
                            f"    cannot use {kind} {s.schema}.{rel.name} (owned by {rel.owner!r}: "
                            "grant as that role)"
                        )
                    )
        if mode == "grant":
            change = f"{len(added)} privileges added" if added else "nothing changed"
        else:
            change = "nothing executed" if mode == "dry-run" else "checked only"
        status = "OK" if report.ok else "INCOMPLETE"
        style = self.style.SUCCESS if report.ok else self.style.ERROR
        w(style(f"Status: {status} — {change}"))

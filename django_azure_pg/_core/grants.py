"""What an app role needs in a Django database, as SQL; and whether it has it.

Service Connector creates ``aad_<connection>`` but grants on the wrong database
and never on the schema, so since PostgreSQL 15 the role cannot even create
tables. This module plans the grants (every name through
``psycopg.sql.Identifier``), applies them in one transaction, and checks the
result from the catalogs. No Django import: the command wraps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

TABLE_RW = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
TABLE_RO = ("SELECT",)
SEQUENCE_RW = ("USAGE", "SELECT", "UPDATE")
SEQUENCE_RO = ("SELECT",)


class GrantError(Exception):
    """The plan cannot be applied (missing role or schema, …)."""


class ExtensionError(GrantError):
    """``CREATE EXTENSION`` was refused; the server's error is chained.

    On Azure an extension must be allow-listed in the ``azure.extensions`` server
    parameter, and an untrusted one (PostGIS is) created by a member of
    ``azure_pg_admin`` (azure-databases-docs: extensions/how-to-allow-extensions.md,
    how-to-create-extensions.md, errors-extensions.md).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Plan:
    role: str
    database: str
    owner: str
    schemas: tuple[str, ...] = ("public",)
    migrate: bool = False
    read_only: bool = False
    default_privileges: bool = True
    create_schemas: bool = False
    """CREATE on the database: the role creates schemas itself (django-tenants)."""
    extensions: tuple[str, ...] = ()
    """Extensions to create first, as the connected owner/admin (GeoDjango: postgis)."""

    @property
    def database_privileges(self) -> tuple[str, ...]:
        return (
            ("CONNECT", "TEMPORARY", "CREATE") if self.create_schemas else ("CONNECT", "TEMPORARY")
        )

    @property
    def table_privileges(self) -> tuple[str, ...]:
        return TABLE_RO if self.read_only else TABLE_RW

    @property
    def sequence_privileges(self) -> tuple[str, ...]:
        return SEQUENCE_RO if self.read_only else SEQUENCE_RW

    @property
    def schema_privileges(self) -> tuple[str, ...]:
        return ("USAGE", "CREATE") if self.migrate else ("USAGE",)


def _privs(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(n) for n in names)  # fixed keywords, never user input


def extension_statements(plan: Plan) -> list[sql.Composed]:
    return [
        sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name))
        for name in plan.extensions
    ]


def statements(plan: Plan) -> list[sql.Composed]:
    """Every statement of the plan, extensions first."""
    role = sql.Identifier(plan.role)
    out = [
        *extension_statements(plan),
        sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
            _privs(plan.database_privileges), sql.Identifier(plan.database), role
        ),
    ]
    for name in plan.schemas:
        schema = sql.Identifier(name)
        out += [
            sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(
                _privs(plan.schema_privileges), schema, role
            ),
            sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(
                _privs(plan.table_privileges), schema, role
            ),
            sql.SQL("GRANT {} ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
                _privs(plan.sequence_privileges), schema, role
            ),
        ]
        if not plan.read_only:
            out.append(
                sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(schema, role)
            )
        if plan.default_privileges:
            prefix = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT").format(
                sql.Identifier(plan.owner), schema
            )
            out += [
                sql.SQL("{} {} ON TABLES TO {}").format(
                    prefix, _privs(plan.table_privileges), role
                ),
                sql.SQL("{} {} ON SEQUENCES TO {}").format(
                    prefix, _privs(plan.sequence_privileges), role
                ),
            ]
            if not plan.read_only:
                out.append(sql.SQL("{} EXECUTE ON FUNCTIONS TO {}").format(prefix, role))
    return out


# -- catalog queries -----------------------------------------------------------

_ACL_SNAPSHOT = """
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
SELECT 'database', d.datname, a.privilege_type
  FROM pg_database d, aclexplode(d.datacl) a, r
 WHERE d.datname = current_database() AND a.grantee = r.oid
UNION ALL
SELECT 'schema', n.nspname, a.privilege_type
  FROM pg_namespace n, aclexplode(n.nspacl) a, r
 WHERE n.nspname = ANY(%(schemas)s) AND a.grantee = r.oid
UNION ALL
SELECT 'relation', n.nspname || '.' || c.relname, a.privilege_type
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a, r
 WHERE n.nspname = ANY(%(schemas)s) AND a.grantee = r.oid
UNION ALL
SELECT 'function', n.nspname || '.' || p.oid::regprocedure::text, a.privilege_type
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a, r
 WHERE n.nspname = ANY(%(schemas)s) AND a.grantee = r.oid
UNION ALL
SELECT 'default:' || d.defaclobjtype::text, n.nspname || ' for ' || pg_get_userbyid(d.defaclrole),
       a.privilege_type
  FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace,
       aclexplode(d.defaclacl) a, r
 WHERE n.nspname = ANY(%(schemas)s) AND a.grantee = r.oid
"""

_SCHEMA_CHECK = """
WITH rel AS (
  SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner,
         CASE WHEN c.relkind = 'S' THEN %(sequence_privs)s::text[]
              WHEN c.relkind IN ('v', 'm') OR %(read_only)s THEN ARRAY['SELECT']
              ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END AS needed,
         c.oid
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
)
SELECT (SELECT coalesce(json_object_agg(p, has_schema_privilege(%(role)s, %(schema)s, p)), '{}')
          FROM unnest(%(schema_privs)s::text[]) p),
       (SELECT count(*) FROM rel WHERE relkind <> 'S'),
       (SELECT count(*) FROM rel WHERE relkind = 'S'),
       (SELECT coalesce(json_agg(json_build_array(relkind = 'S', relname, owner) ORDER BY relname),
                        '[]')
          FROM rel
         WHERE NOT (SELECT bool_and(CASE WHEN relkind = 'S'
                                         THEN has_sequence_privilege(%(role)s, rel.oid, p)
                                         ELSE has_table_privilege(%(role)s, rel.oid, p) END)
                      FROM unnest(needed) p)),
       (SELECT array_agg(d.defaclobjtype::text || ':' || a.privilege_type)
          FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace,
               aclexplode(d.defaclacl) a
         WHERE n.nspname = %(schema)s
           AND d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = %(owner)s)
           AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s))
"""
"""Everything :func:`verify` needs about one schema, in one round trip: a role with a
thousand tables is checked in a handful of queries, not thousands."""

_DATABASE_CHECK = """
SELECT (SELECT json_object_agg(p, has_database_privilege(%(role)s, current_database(), p))
          FROM unnest(%(privs)s::text[]) p),
       (SELECT coalesce(json_object_agg(e, EXISTS (SELECT 1 FROM pg_extension WHERE extname = e)),
                        '{}')
          FROM unnest(%(extensions)s::text[]) e)
"""


def role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def missing_schemas(conn: psycopg.Connection[Any], schemas: Iterable[str]) -> list[str]:
    wanted = list(schemas)
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (wanted,)
    ).fetchall()
    present = {r[0] for r in rows}
    return [s for s in wanted if s not in present]


def snapshot(conn: psycopg.Connection[Any], plan: Plan) -> set[tuple[str, str, str]]:
    rows = conn.execute(_ACL_SNAPSHOT, {"role": plan.role, "schemas": list(plan.schemas)})
    return {(str(a), str(b), str(c)) for a, b, c in rows.fetchall()}


@dataclass(frozen=True)
class Unusable:
    """A relation the role cannot use, and who owns it (the one who can grant on it)."""

    name: str
    owner: str


@dataclass
class SchemaReport:
    schema: str
    privileges: dict[str, bool]
    tables: int = 0
    sequences: int = 0
    unusable_tables: list[Unusable] = field(default_factory=list)
    unusable_sequences: list[Unusable] = field(default_factory=list)
    default_privileges: bool | None = None

    @property
    def ok(self) -> bool:
        return (
            all(self.privileges.values())
            and not self.unusable_tables
            and not self.unusable_sequences
            and self.default_privileges is not False
        )


@dataclass
class Report:
    role: str
    database: str
    database_privileges: dict[str, bool]
    schemas: list[SchemaReport]
    extensions: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            all(self.database_privileges.values())
            and all(self.extensions.values())
            and all(s.ok for s in self.schemas)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "database": self.database,
            "ok": self.ok,
            "database_privileges": self.database_privileges,
            "extensions": self.extensions,
            "schemas": [{**asdict(s), "ok": s.ok} for s in self.schemas],
        }


def verify(conn: psycopg.Connection[Any], plan: Plan) -> Report:
    """What the role can use now, per schema; ``Report.ok`` says whether the plan is met."""
    row = conn.execute(
        _DATABASE_CHECK,
        {
            "role": plan.role,
            "privs": list(plan.database_privileges),
            "extensions": list(plan.extensions),
        },
    ).fetchone()
    assert row is not None  # aggregates always return a row
    database_privileges = {str(k): bool(v) for k, v in row[0].items()}
    extensions = {str(k): bool(v) for k, v in row[1].items()}
    reports = []
    for schema in plan.schemas:
        row = conn.execute(
            _SCHEMA_CHECK,
            {
                "role": plan.role,
                "owner": plan.owner,
                "schema": schema,
                "schema_privs": list(plan.schema_privileges),
                "sequence_privs": list(plan.sequence_privileges),
                "read_only": plan.read_only,
            },
        ).fetchone()
        assert row is not None  # an aggregate query always returns a row
        privileges, tables, sequences, unusable, defaults = row
        report = SchemaReport(
            schema,
            {p: bool(privileges.get(p)) for p in plan.schema_privileges},
            tables=int(tables),
            sequences=int(sequences),
        )
        for is_sequence, name, owner in unusable:
            (report.unusable_sequences if is_sequence else report.unusable_tables).append(
                Unusable(str(name), str(owner))
            )
        if plan.default_privileges:
            have = {tuple(str(d).split(":", 1)) for d in defaults or ()}
            need = {("r", p) for p in plan.table_privileges} | {
                ("S", p) for p in plan.sequence_privileges
            }
            report.default_privileges = need <= have
        reports.append(report)
    return Report(plan.role, plan.database, database_privileges, reports, extensions)


def validate(conn: psycopg.Connection[Any], plan: Plan) -> None:
    """Raise :class:`GrantError` when the role or a schema does not exist."""
    if not role_exists(conn, plan.role):
        raise GrantError(
            f"Role {plan.role!r} does not exist. On Azure, create it first: "
            f"manage.py create_aad_principal {plan.role} --oid <object id> --type service"
        )
    missing = missing_schemas(conn, plan.schemas)
    if missing:
        raise GrantError(f"Schema(s) not found in database {plan.database!r}: {', '.join(missing)}")


def apply(conn: psycopg.Connection[Any], plan: Plan) -> tuple[list[str], set[tuple[str, str, str]]]:
    """Run a validated plan in one transaction; return the SQL run and the ACL entries added."""
    before = snapshot(conn, plan) | _extensions(conn, plan)
    creates = extension_statements(plan)
    executed = []
    with conn.transaction():
        for statement in statements(plan):
            try:
                conn.execute(statement)
            except psycopg.DatabaseError as exc:
                if statement not in creates:
                    raise
                raise ExtensionError(plan.extensions[creates.index(statement)]) from exc
            executed.append(statement.as_string(conn))
    return executed, (snapshot(conn, plan) | _extensions(conn, plan)) - before


def _extensions(conn: psycopg.Connection[Any], plan: Plan) -> set[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT extname FROM pg_extension WHERE extname = ANY(%s)", (list(plan.extensions),)
    ).fetchall()
    return {("extension", str(name), "CREATE") for (name,) in rows}

"""Run by tests/test_tenants.py in its own process, as the app role, through the token path:
``migrate_schemas --shared``, two tenants created (schema + ``migrate_schemas --tenant``),
``migrate_schemas`` over all schemas, one row per tenant. Prints a JSON summary.
"""

from __future__ import annotations

import json

import django
from django.core.management import call_command

TENANTS = ("acme", "globex")


def main() -> None:
    django.setup()
    from django.db import connections
    from django_tenants.utils import schema_context

    from tests.recipes.tenants.customers.models import Client, Domain
    from tests.recipes.tenants.notes.models import Note

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    for schema in TENANTS:
        tenant = Client(schema_name=schema, name=schema.title())
        tenant.save()  # CREATE SCHEMA, then migrate_schemas --tenant --schema <schema>
        Domain.objects.create(domain=f"{schema}.example.com", tenant=tenant, is_primary=True)
    call_command("migrate_schemas", interactive=False, verbosity=0)
    notes = {}
    for schema in TENANTS:
        with schema_context(schema):
            Note.objects.create(text=f"hello {schema}")
            notes[schema] = list(Note.objects.values_list("text", flat=True))
    connection = connections["default"]
    with connection.cursor() as cur:
        cur.execute("SELECT current_user")
        (user,) = cur.fetchone()
    print(
        json.dumps(
            {
                "user": user,
                "notes": notes,
                "wrapper_mro": [c.__module__ for c in type(connection).__mro__],
                "token_login": connection.azure_login is not None,
                "postgis": list(getattr(connection.ops, "spatial_version", ()) or ()),
            }
        )
    )


if __name__ == "__main__":
    main()

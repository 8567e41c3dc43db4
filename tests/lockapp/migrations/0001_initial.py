"""The table, then a gate: with LOCKAPP_GATE set, the migration waits for the test to release
that advisory lock — so the test decides how long the migrating process holds its lock."""

import os

from django.db import migrations, models


def wait_at_the_gate(apps, schema_editor):
    gate = os.environ.get("LOCKAPP_GATE")
    if gate:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [int(gate)])
            cursor.execute("SELECT pg_advisory_unlock(%s)", [int(gate)])


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Dish",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
            ],
        ),
        migrations.RunPython(wait_at_the_gate, migrations.RunPython.noop),
    ]

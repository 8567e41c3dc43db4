"""What the management commands tell users about Azure's naming rules."""

from __future__ import annotations

from django_azure_pg.management.commands.create_aad_principal import Command


def test_create_aad_principal_help_names_the_rule_without_oid() -> None:
    text = " ".join(
        Command().create_parser("manage.py", "create_aad_principal").format_help().split()
    )
    # A free name such as aad_<connection> only works with --oid; without it the name
    # "must match the name of the Microsoft Entra principal" (security-manage-entra-users.md).
    assert "Without --oid the role name must be the principal's own Entra name" in text
    assert "aad_myconnection --oid" in text
    assert "#EXT#" in text and "/slots/" in text

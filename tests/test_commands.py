"""Management commands turn unusable names into a CommandError before connecting."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

LONG = "r" * 64  # PostgreSQL would truncate it to 63 bytes: another role


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--role", "aad_\x00x"], "--role"),
        (["--role", LONG], "--role"),
        (["--role", "é" * 32], "--role"),  # 64 bytes in UTF-8
        (["--role", " "], "--role"),
        (["--connection", "c" * 60], "--connection"),  # aad_ + 60 > 63
        (["--connection", "x\x00"], "--connection"),
        (["--role", "ok", "--schema", "s\x00"], "--schema"),
        (["--role", "ok", "--schema", LONG], "--schema"),
        (["--role", "ok", "--owner-user", "o\x00"], "--owner-user"),
        (
            ["--role", "ok", "--owner-user", "o", "--owner-password-env", "V\x00"],
            "--owner-password-env",
        ),
    ],
)
def test_grant_aad_privileges_rejects_bad_names(args: list[str], named: str) -> None:
    with pytest.raises(CommandError, match=named):
        call_command("grant_aad_privileges", *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aad_\x00"], "role name contains a NUL"),
        ([LONG], "at most 63 bytes"),
        (["aad_ok", "--oid", "not-a-guid"], "--oid must be an object id"),
    ],
)
def test_create_aad_principal_rejects_bad_names(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("create_aad_principal", *args)

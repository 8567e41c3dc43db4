"""Diagnose an alias's passwordless login: credential, token, role, connection, privileges."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from .. import _doctor


class Command(BaseCommand):
    help = (
        "Show which credential is used and why, fetch a token (non-secret claims only), "
        "connect, and translate any failure into a likely cause and fix. The system checks "
        "are reported as steps: a failing one does not stop the diagnosis."
    )
    # The system checks run as the doctor's first steps (_doctor.system_check_steps,
    # check_steps), so that a failing one is explained instead of stopping the command.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", help="Alias to check.")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        try:
            entry = connections.settings[alias]
        except KeyError:
            raise CommandError(f"No database alias {alias!r} in settings.DATABASES") from None
        report = _doctor.run(alias, dict(entry))
        if options["format"] == "json":
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
        else:
            self._text(report)
        if not report.ok:
            failed = [s.name for s in report.steps if s.status == "fail"]
            raise CommandError(f"alias {alias!r}: {', '.join(failed)} failed", returncode=1)

    def _text(self, report: _doctor.Report) -> None:
        w = self.stdout.write
        w(f"django-azure-pg doctor — alias {report.alias!r}")
        marks = {
            "ok": self.style.SUCCESS("[ok]  "),
            "warning": self.style.WARNING("[warn]"),
            "fail": self.style.ERROR("[FAIL]"),
            "skipped": "[skip]",
        }
        for step in report.steps:
            w(f"{marks[step.status]} {step.name}")
            for key, value in step.detail.items():
                if isinstance(value, dict):
                    w(f"         {key}:")
                    for k, v in value.items():
                        w(f"           {k} = {v}")
                else:
                    w(f"         {key}: {value}")
            if step.cause:
                w(f"         likely cause: {step.cause}")
            if step.fix:
                w(f"         fix: {step.fix}")
        w(self.style.SUCCESS("Result: OK") if report.ok else self.style.ERROR("Result: FAILED"))

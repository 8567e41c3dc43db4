"""``manage.py test`` with the kit's ``AzurePgTestRunner``: Django's own runner, real token logins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def test_manage_py_test_runs_on_the_kits_server(tmp_path: Path) -> None:
    report = tmp_path / "server-root"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IDENTITY_", "MSI_", "AZURE_", "DJANGO_"))
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "test", "tests.runner_app", "-v", "2",
         "--azure-pg-token-lifetime", "120"],
        cwd=REPO,
        env={**env, "DJANGO_SETTINGS_MODULE": "tests.runner_app.settings", "PYTHONPATH": str(REPO),
             "RUNNER_APP_REPORT": str(report)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Ran 3 tests" in output and "OK" in output, output
    assert "Creating test database for alias 'default'" in output
    assert "Destroying test database for alias 'default'" in output
    root = Path(report.read_text())
    assert root.name.startswith("django-azure-pg-") and not root.exists()  # server stopped

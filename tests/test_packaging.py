"""The built wheels install into a clean virtual environment: the ENGINE imports, and the
testing kit, installed through the ``[testing]`` extra, runs a user's test suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_wheel_installs_into_a_clean_venv(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
            str(ROOT / "testing"),
        ],
        check=True,
    )
    wheel = next(tmp_path.glob("django_azure_pg-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "django_azure_pg/py.typed" in names
    assert "django_azure_pg/certs/azure-roots.pem" in names  # the sslrootcert for Azure hosts
    assert "django_azure_pg/management/commands/grant_aad_privileges.py" in names
    assert not [
        n for n in names if n.startswith(("tests/", "sample_project/", "django_azure_pg_testing/"))
    ]

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    code = (
        "import django; from django.conf import settings; settings.configure(); "
        "from django.db.utils import load_backend; "
        "w = load_backend('django_azure_pg').DatabaseWrapper; "
        "import django_azure_pg; print(w.__module__, django_azure_pg.__version__)"
    )
    out = subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    import django_azure_pg

    assert out.stdout.split() == ["django_azure_pg.base", django_azure_pg.__version__]

    # The testing kit through the extra, and a user's suite using its plugin.
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--find-links",
            str(tmp_path),
            f"{wheel}[testing]",
            "pytest",
            "pytest-django",
        ],
        check=True,
    )
    project = tmp_path / "user_project"
    shutil.copytree(ROOT / "tests" / "kit_user", project)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [str(env_dir / "bin" / "pytest"), "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout


def test_missing_psycopg3_is_a_clear_improperly_configured() -> None:
    """An app with only psycopg2 (psycopg 3 blocked from import here) gets one clear message."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from django.conf import settings; settings.configure()\n"
        "from django.core.exceptions import ImproperlyConfigured\n"
        "from django.db.utils import load_backend\n"
        "try:\n"
        "    load_backend('django_azure_pg')\n"
        "except ImproperlyConfigured as exc:\n"
        "    print('IC:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.startswith("IC: django-azure-pg needs psycopg 3"), out.stdout + out.stderr
    assert "pip install 'psycopg[binary]" in out.stdout

"""The built wheel installs into a clean virtual environment and the ENGINE imports."""

from __future__ import annotations

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
        ],
        check=True,
    )
    wheel = next(tmp_path.glob("django_azure_pg-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "django_azure_pg/py.typed" in names
    assert "django_azure_pg/management/commands/grant_aad_privileges.py" in names
    assert not [n for n in names if n.startswith(("tests/", "sample_project/"))]

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

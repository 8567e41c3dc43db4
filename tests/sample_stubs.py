"""Run the sample's deploy scripts against stand-ins for ``az`` and ``python``.

The stub ``az`` records every call's exact arguments (one NUL-separated file per call, so
tests/test_az_parser.py can feed them to the real CLI's parser) and a readable log line; it
answers the few queries the scripts read. The stub ``python`` logs ``manage.py`` calls with
the database variables they see, logs venv/pip installs, copies a prebuilt wheel for
``pip wheel``, and hands everything else (``-c``, a script on stdin) to the real Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_project"

STUB_AZ = r"""#!/usr/bin/env bash
n=$(find "$AZ_ARGV_DIR" -type f | wc -l)
printf '%s\0' "$@" > "$AZ_ARGV_DIR/$(printf '%04d' "$n")"
printf '%s\n' "az $*" >> "$CALLS"
if [ -n "${AZ_FILES_DIR:-}" ]; then  # what az would read from "@file" arguments
  for a in "$@"; do case "$a" in @*) cp "${a#@}" "$AZ_FILES_DIR/$n-$(basename "${a#@}")" ;; esac; done
fi
if [ -n "${STUB_AZ_LOGGED_OUT:-}" ] && [ "$1" = account ]; then exit 1; fi
case "$*" in
  "version --query \"azure-cli\" --output tsv") echo "${STUB_AZ_VERSION:-2.91.0}" ;;
  "ad signed-in-user show --query userPrincipalName --output tsv") echo "dev@contoso.com" ;;
  "ad signed-in-user show --query id --output tsv") echo "11111111-2222-3333-4444-555555555555" ;;
  *"--query possibleOutboundIpAddresses"*) echo "20.1.2.3,20.1.2.4" ;;
  "webapp identity assign "*"--query principalId --output tsv") echo "99999999-8888-7777-6666-000000000001" ;;
esac
"""

STUB_PYTHON = r"""#!/usr/bin/env bash
if [ "$1" = manage.py ]; then
  printf '%s\n' "python $* HOST=${AZURE_POSTGRESQL_HOST:-} NAME=${AZURE_POSTGRESQL_NAME:-} USER=${AZURE_POSTGRESQL_USER:-}" >> "$CALLS"
  if [ "$2" = create_aad_principal ] && [ -f "$FAIL_ONCE" ]; then rm -f "$FAIL_ONCE"; exit 1; fi
  exit 0
fi
if [ "$1" = -m ] && [ "$2" = pip ] && [ "$3" = wheel ]; then
  while [ "$#" -gt 0 ] && [ "$1" != --wheel-dir ]; do shift; done
  cp "$PREBUILT_WHEEL" "$2/"
  printf '%s\n' "python -m pip wheel" >> "$CALLS"
  exit 0
fi
if [ "$1" = -m ] && { [ "$2" = pip ] || [ "$2" = venv ]; }; then
  printf '%s\n' "python $*" >> "$CALLS"
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


def copy_repository(dest: Path) -> Path:
    """What build-wheels.sh needs to build the library, and the sample; returns the sample."""
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.pyc", ".venv", "wheels", "staticfiles", "app.zip", "*.egg-info"
    )
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "django_azure_pg", dest / "django_azure_pg", ignore=ignore)
    shutil.copytree(SAMPLE, dest / "sample_project", ignore=ignore)
    return dest / "sample_project"


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    lines: list[str]
    az_argv: list[list[str]]
    sample: Path

    def position(self, prefix: str) -> int:
        return next(i for i, line in enumerate(self.lines) if line.startswith(prefix))


def run_script(script: str, tmp_path: Path, wheel: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``sample_project/<script>`` from a copy of the repository with stub az and python."""
    work = tmp_path / "repo"
    work.mkdir(exist_ok=True)
    sample = work / "sample_project"
    if not sample.exists():
        copy_repository(work)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("az", STUB_AZ), ("python-stub", STUB_PYTHON)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    argv_dir = tmp_path / f"az-argv-{script.replace('/', '-')}"
    shutil.rmtree(argv_dir, ignore_errors=True)
    argv_dir.mkdir()
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    full_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CALLS": str(calls),
        "AZ_ARGV_DIR": str(argv_dir),
        "PYTHON": str(bin_dir / "python-stub"),
        "APP_PYTHON": str(bin_dir / "python-stub"),
        "REAL_PYTHON": sys.executable,
        "PREBUILT_WHEEL": str(wheel),
        "MY_IP": "203.0.113.7",
        "RETRY_DELAY": "0",
        **(env or {}),
    }
    result = subprocess.run(
        ["bash", str(sample / script)], env=full_env, capture_output=True, text=True, timeout=120
    )
    az_argv = [p.read_bytes().split(b"\0")[:-1] for p in sorted(argv_dir.iterdir())]
    return Run(
        result,
        calls.read_text().splitlines(),
        [[a.decode() for a in argv] for argv in az_argv],
        sample,
    )


AZD_ENV = {
    "POSTGRES_HOST": "psql-abc.postgres.database.azure.com",
    "POSTGRES_DATABASE": "restaurant",
    "POSTGRES_ADMIN_NAME": "dev@contoso.com",
    "POSTGRES_SERVER_NAME": "psql-abc",
    "WEB_APP_PRINCIPAL_ID": "99999999-8888-7777-6666-555555555555",
    "APP_DB_ROLE": "aad_restaurantdb",
    "AZURE_RESOURCE_GROUP": "rg-restaurants",
}
"""What azd hands the hooks: main.bicep's outputs."""

DEPLOY_ENV = {"APP_NAME": "restaurants-web", "DB_SERVER_NAME": "restaurants-db"}


_built: dict[str, Path] = {}


def build_runtime_wheel(workdir: Path) -> Path:
    """Run the real build-wheels.sh once per test session; later calls reuse its wheel."""
    if "wheel" not in _built:
        sample = copy_repository(workdir)
        subprocess.run(
            ["bash", str(sample / "build-wheels.sh")],
            env={**os.environ, "PYTHON": sys.executable},
            check=True,
            capture_output=True,
            text=True,
        )
        (wheel,) = (sample / "wheels").glob("*.whl")
        _built["wheel"] = wheel
    return _built["wheel"]

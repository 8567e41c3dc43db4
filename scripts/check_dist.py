"""Check what `make dist` built: the wheel ships the package (py.typed, commands) and no
tests; the sdist ships the tests."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

REQUIRED_IN_WHEEL = [
    "django_azure_pg/py.typed",
    "django_azure_pg/base.py",
    "django_azure_pg/management/commands/grant_aad_privileges.py",
    "django_azure_pg/management/commands/create_aad_principal.py",
    "django_azure_pg/management/commands/azure_pg_doctor.py",
    "django_azure_pg/emulator/identity.py",
]


def main(dist: str) -> int:
    folder = Path(dist)
    wheel = next(folder.glob("*.whl"))
    sdist = next(folder.glob("*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    problems = [f"wheel lacks {n}" for n in REQUIRED_IN_WHEEL if n not in names]
    problems += [
        f"wheel ships {n}" for n in names if n.startswith(("tests/", "sample_project/", "bench/"))
    ]
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    if not any("/tests/test_base.py" in m for m in members):
        problems.append("sdist lacks tests/")
    print(f"{wheel.name}: {len(names)} files")
    for name in sorted(names):
        print(f"  {name}")
    print(f"{sdist.name}: {len(members)} entries (tests included)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))

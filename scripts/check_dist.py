"""Check what `make dist` built.

The runtime wheel ships the package (py.typed, commands) and nothing else: no
tests, and no server code (the identity emulator, LDAP responder and
PostgreSQL launcher live in the testing kit's own wheel). The sdists ship the
tests.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

REQUIRED_IN_WHEEL = [
    "django_azure_pg/py.typed",
    "django_azure_pg/certs/azure-roots.pem",  # sslrootcert for Azure hosts (_core/tls.py)
    "django_azure_pg/base.py",
    "django_azure_pg/_core/__init__.py",  # the Django-free core ships too
    "django_azure_pg/_core/token_source.py",
    "django_azure_pg/mixin.py",
    "django_azure_pg/postgis/base.py",
    "django_azure_pg/management/commands/grant_aad_privileges.py",
    "django_azure_pg/management/commands/create_aad_principal.py",
    "django_azure_pg/management/commands/azure_pg_doctor.py",
    "django_azure_pg/management/commands/migrate_locked.py",  # the deploy step's migrate
]
REQUIRED_IN_KIT = [
    "django_azure_pg_testing/py.typed",
    "django_azure_pg_testing/identity.py",
    "django_azure_pg_testing/postgres.py",
    "django_azure_pg_testing/pytest_plugin.py",
    "django_azure_pg_testing/runner.py",  # manage.py test
]
# Server code: what listens on a socket or starts a server has no place in the runtime.
SERVER_MARKERS = ("HTTPServer", "socketserver", "initdb", "serve_forever", "pg_ctl")


def _wheel(folder: Path, name: str) -> Path:
    return next(p for p in folder.glob("*.whl") if p.name.startswith(name + "-"))


def main(dist: str) -> int:
    folder = Path(dist)
    problems: list[str] = []
    wheel = _wheel(folder, "django_azure_pg")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        problems += [f"wheel lacks {n}" for n in REQUIRED_IN_WHEEL if n not in names]
        problems += [
            f"wheel ships {n}"
            for n in names
            if n.startswith(("tests/", "sample_project/", "bench/", "django_azure_pg_testing/"))
        ]
        for n in names:
            if n.startswith("django_azure_pg/") and n.endswith(".py"):
                text = zf.read(n).decode()
                problems += [
                    f"runtime module {n} contains server code ({m})"
                    for m in SERVER_MARKERS
                    if m in text
                ]
                if "django_azure_pg_testing" in text:
                    problems.append(f"runtime module {n} refers to the testing kit")
    kit = _wheel(folder, "django_azure_pg_testing")
    with zipfile.ZipFile(kit) as zf:
        kit_names = zf.namelist()
        entry_points = next(
            (zf.read(n).decode() for n in kit_names if n.endswith("entry_points.txt")), ""
        )
    problems += [f"testing wheel lacks {n}" for n in REQUIRED_IN_KIT if n not in kit_names]
    if "pytest11" not in entry_points:
        problems.append("testing wheel registers no pytest plugin")
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(kit) as zf:
        metadata = next(zf.read(n).decode() for n in kit_names if n.endswith("METADATA"))
    if f"Requires-Dist: django-azure-pg=={version}" not in metadata:
        problems.append(f"testing wheel does not require django-azure-pg=={version} (its release)")
    sdist = next(p for p in folder.glob("*.tar.gz") if p.name.startswith("django_azure_pg-"))
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    if not any("/tests/test_base.py" in m for m in members):
        problems.append("sdist lacks tests/")
    for path, listed in ((wheel, names), (kit, kit_names)):
        print(f"{path.name}: {len(listed)} files")
        for name in sorted(listed):
            print(f"  {name}")
    print(f"{sdist.name}: {len(members)} entries (tests included)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))

#!/usr/bin/env bash
# Build django-azure-pg from the repository this sample sits in into wheels/, where
# requirements.txt's `--find-links wheels` looks before the package index. The deploy
# scripts run it (deploy.sh; the azd prepackage and hooks), so App Service's build (Oryx)
# installs the library from this checkout. Outside the repository — a copy of the sample
# on its own, once the package is published — there is nothing to build and pip uses the
# index.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
repo=".."

if ! grep -qs '^name = "django-azure-pg"' "$repo/pyproject.toml"; then
  echo "build-wheels: not inside the django-azure-pg repository; pip will use the package index."
  exit 0
fi
rm -rf wheels
mkdir -p wheels
# Only the runtime wheel: the sample needs no django-azure-pg-testing.
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir wheels "$repo"
ls wheels

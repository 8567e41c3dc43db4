#!/usr/bin/env bash
# Build django-azure-pg into wheels/, where requirements.txt's `--find-links wheels` looks
# before the package index, and which ships with the app: App Service's build (Oryx) then
# installs the library from the app's own folder. The deploy scripts run it (deploy.sh; the
# azd prepackage hook). The source is the repository this sample sits in, or any checkout
# (or sdist) named by DJANGO_AZURE_PG_SOURCE — so a copy of the sample outside the
# repository, or your own app (docs/deploy-your-app.md), builds its wheelhouse the same way:
#   DJANGO_AZURE_PG_SOURCE=~/src/django-azure-pg ./build-wheels.sh
# With neither, there is nothing to build and pip uses the package index.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
source="${DJANGO_AZURE_PG_SOURCE:-..}"

if [ -d "$source" ] && ! grep -qs '^name = "django-azure-pg"' "$source/pyproject.toml"; then
  if [ -n "${DJANGO_AZURE_PG_SOURCE:-}" ]; then
    echo "build-wheels: $source is not a django-azure-pg checkout (no pyproject.toml naming it)." >&2
    exit 1
  fi
  echo "build-wheels: not inside the django-azure-pg repository and DJANGO_AZURE_PG_SOURCE is"
  echo "not set; pip will use the package index (or a wheels/ folder you filled yourself)."
  exit 0
fi
rm -rf wheels
mkdir -p wheels
# Only the runtime wheel: the app needs no django-azure-pg-testing.
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir wheels "$source"
ls wheels

#!/usr/bin/env bash
# A test-only virtual environment holding the Azure CLI (the pip package azure-cli), cached
# in .cache/ (gitignored) so only the first run installs it (about a minute, ~0.7 GB).
# tests/test_az_parser.py loads the CLI's command table from it and parses the deploy
# scripts' az command lines offline; nothing here logs in or talks to Azure.
# Prints the environment's python.
set -euo pipefail
cd "$(dirname "$0")/.."
AZ_CLI_VERSION="${AZ_CLI_VERSION:-2.91.0}"
PYTHON="${PYTHON:-python3}"
venv=".cache/azure-cli-${AZ_CLI_VERSION}"
if [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "azure-cli==${AZ_CLI_VERSION}" >&2
  touch "$venv/.installed"
fi
echo "$PWD/$venv/bin/python"

#!/usr/bin/env bash
# Shared by the azd hooks (sourced, not run). They run on your machine, as you.
#
# Two logins: azd's own (`azd auth login`) provisions and deploys; these hooks also call the
# Azure CLI (firewall rules) and take your database token from it, and `azd auth login`
# does not log the Azure CLI in. Run `az login` too (or make azd use the CLI's login:
# `azd config set auth.useAzCliAuth true`).

PYTHON="${PYTHON:-python3}"
APP_PYTHON="${APP_PYTHON:-.venv/bin/python}"
RETRY_DELAY="${RETRY_DELAY:-20}"
MIN_AZ_VERSION=2.87.0

# The firewall rules below use the argument names Azure CLI 2.87.0 introduced
# (--server-name, --name; before: --name <server> --rule-name <rule>): an older CLI stops
# with "unrecognized arguments" halfway through a hook. Same check as deploy.sh.
require_az_version() {
  local version
  version="$(az version --query '"azure-cli"' --output tsv)"
  if [ "$(printf '%s\n%s\n' "$MIN_AZ_VERSION" "$version" | sort -V | head -n 1)" != "$MIN_AZ_VERSION" ]; then
    echo "Azure CLI $version is too old: these hooks need $MIN_AZ_VERSION or later (run 'az upgrade');" \
      "2.87.0 renamed the firewall-rule arguments they use." >&2
    exit 1
  fi
}

require_az_login() {
  if ! az account show --output none; then
    echo "These hooks call the Azure CLI: run 'az login' (azd auth login does not log it in)." >&2
    exit 1
  fi
}

# Install the app's requirements, django-azure-pg from this repository included, into .venv.
prepare_python() {
  ./build-wheels.sh
  if [ ! -x "$APP_PYTHON" ]; then
    "$PYTHON" -m venv .venv
  fi
  "$APP_PYTHON" -m pip install --quiet -r requirements.txt
}

# Let this machine reach the server for the rest of the hook; the rule goes on exit.
open_firewall_for_this_machine() {
  local rule="$1"
  MY_IP="${MY_IP:-$(curl --silent --fail https://api.ipify.org)}"
  # --server-name/--name as Azure CLI 2.87.0 spells them (see deploy.sh).
  az postgres flexible-server firewall-rule create \
    --resource-group "$AZURE_RESOURCE_GROUP" --server-name "$POSTGRES_SERVER_NAME" --name "$rule" \
    --start-ip-address "$MY_IP" --end-ip-address "$MY_IP" --output none
  # shellcheck disable=SC2064  # expand now: the rule name is fixed for this hook
  trap "az postgres flexible-server firewall-rule delete --resource-group '$AZURE_RESOURCE_GROUP' \
    --server-name '$POSTGRES_SERVER_NAME' --name '$rule' --yes --output none" EXIT
}

# Run a command until it succeeds, a few times: a managed identity created a minute ago may
# not have reached every Microsoft Entra replica yet (Service Connector retries its identity
# look-ups for the same reason).
retry() {
  local attempt
  for attempt in 1 2 3 4 5 6; do
    if "$@"; then
      return 0
    fi
    if [ "$attempt" -lt 6 ]; then
      echo "Failed (attempt $attempt of 6); retrying in ${RETRY_DELAY}s." >&2
      sleep "$RETRY_DELAY"
    fi
  done
  return 1
}

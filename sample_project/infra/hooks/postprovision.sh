#!/usr/bin/env bash
# azd postprovision hook: create the web app's PostgreSQL role and grant it what Django needs.
# Runs as you (the server's Entra admin, set by main.bicep from AZURE_PRINCIPAL_ID), logging in
# with your own az login token — no password anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${POSTGRES_HOST:?}" "${POSTGRES_DATABASE:?}" "${POSTGRES_ADMIN_NAME:?}" "${POSTGRES_SERVER_NAME:?}"
: "${WEB_APP_PRINCIPAL_ID:?}" "${APP_DB_ROLE:?}" "${AZURE_RESOURCE_GROUP:?}"
PYTHON="${PYTHON:-python3}"

MY_IP="${MY_IP:-$(curl --silent --fail https://api.ipify.org)}"
az postgres flexible-server firewall-rule create \
  --resource-group "$AZURE_RESOURCE_GROUP" --name "$POSTGRES_SERVER_NAME" --rule-name azd-postprovision \
  --start-ip-address "$MY_IP" --end-ip-address "$MY_IP" --output none
trap 'az postgres flexible-server firewall-rule delete --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$POSTGRES_SERVER_NAME" --rule-name azd-postprovision --yes --output none' EXIT

export AZURE_POSTGRESQL_HOST="$POSTGRES_HOST"
export AZURE_POSTGRESQL_NAME="$POSTGRES_DATABASE"
export AZURE_POSTGRESQL_USER="$APP_DB_ROLE"

"$PYTHON" -m pip install --quiet -r requirements.txt
"$PYTHON" manage.py create_aad_principal "$APP_DB_ROLE" --oid "$WEB_APP_PRINCIPAL_ID" \
  --type service --owner-user "$POSTGRES_ADMIN_NAME" --owner-entra
"$PYTHON" manage.py grant_aad_privileges --owner-user "$POSTGRES_ADMIN_NAME" --owner-entra --migrate

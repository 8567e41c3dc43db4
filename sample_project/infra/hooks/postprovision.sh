#!/usr/bin/env bash
# azd postprovision hook: create the web app's PostgreSQL role and let it connect.
# Runs as you — the server's Entra admin (main.bicep, AZURE_PRINCIPAL_ID) — logging in with
# your own Entra token from `az login`. No password anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=common.sh
. infra/hooks/common.sh

: "${POSTGRES_HOST:?}" "${POSTGRES_DATABASE:?}" "${POSTGRES_ADMIN_NAME:?}" "${POSTGRES_SERVER_NAME:?}"
: "${WEB_APP_PRINCIPAL_ID:?}" "${APP_DB_ROLE:?}" "${AZURE_RESOURCE_GROUP:?}"

require_az_version
require_az_login
prepare_python
open_firewall_for_this_machine azd-postprovision

export AZURE_POSTGRESQL_HOST="$POSTGRES_HOST"
export AZURE_POSTGRESQL_NAME="$POSTGRES_DATABASE"
export AZURE_POSTGRESQL_USER="$APP_DB_ROLE"

# The role is mapped to the identity by object id, so its name is free (aad_<connection>,
# as Service Connector names them).
retry "$APP_PYTHON" manage.py create_aad_principal "$APP_DB_ROLE" --oid "$WEB_APP_PRINCIPAL_ID" \
  --type service --owner-user "$POSTGRES_ADMIN_NAME" --owner-entra
# Tables come later (predeploy migrates); default privileges cover them.
"$APP_PYTHON" manage.py grant_aad_privileges --owner-user "$POSTGRES_ADMIN_NAME" --owner-entra

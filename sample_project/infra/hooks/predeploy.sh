#!/usr/bin/env bash
# azd predeploy hook: apply migrations before the new code goes live, from here, once —
# not at container start, where every instance of a scaled-out app would run them.
# migrate_locked holds a PostgreSQL advisory lock, so two overlapping deploys cannot
# migrate at the same time. The tables belong to you (the Entra admin); the app's role gets
# DML on them from grant_aad_privileges and from the default privileges it set.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=common.sh
. infra/hooks/common.sh

: "${POSTGRES_HOST:?}" "${POSTGRES_DATABASE:?}" "${POSTGRES_ADMIN_NAME:?}" "${POSTGRES_SERVER_NAME:?}"
: "${APP_DB_ROLE:?}" "${AZURE_RESOURCE_GROUP:?}"

require_az_version
require_az_login
prepare_python
open_firewall_for_this_machine azd-predeploy

export AZURE_POSTGRESQL_HOST="$POSTGRES_HOST"
export AZURE_POSTGRESQL_NAME="$POSTGRES_DATABASE"

AZURE_POSTGRESQL_USER="$POSTGRES_ADMIN_NAME" "$APP_PYTHON" manage.py migrate_locked --noinput
AZURE_POSTGRESQL_USER="$APP_DB_ROLE" "$APP_PYTHON" manage.py grant_aad_privileges \
  --owner-user "$POSTGRES_ADMIN_NAME" --owner-entra

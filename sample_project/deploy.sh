#!/usr/bin/env bash
# Deploy the sample to App Service + PostgreSQL Flexible Server with plain az CLI steps,
# passwordless end to end: the server has Entra authentication only, the web app uses its
# system-assigned identity, this script creates the app's role (as Service Connector would,
# with the same name and settings), and the code goes out last — after its settings, its
# role and the migrations exist.
#
# Needs:
# - Azure CLI >= 2.87.0. Azure CLI release notes (MicrosoftDocs/azure-docs-cli,
#   docs-ref-conceptual/Latest-version/release-notes-azure-cli.md), RDBMS:
#   2.73.0 renamed `flexible-server create --active-directory-auth` to --microsoft-entra-auth
#   and the `ad-admin` group to `microsoft-entra-admin`; 2.87.0 made `db create` and
#   `firewall-rule create/delete` take the object's name as --name and the server as
#   --server-name (before: `db create --database-name`, `firewall-rule --name <server>
#   --rule-name <rule>`). Every other command here is older. tests/test_az_parser.py parses
#   each call with the CLI's own argument parser.
# - `az login` (you become the server's Entra admin); Python 3.10+; curl.
# - Not the serviceconnector-passwordless extension: its source (azure-cli-extensions,
#   src/serviceconnector-passwordless/azext_serviceconnector_passwordless/_credential_free.py,
#   PostgresFlexHandler) calls `flexible-server ad-admin list/create` (gone since 2.73.0),
#   `update --active-directory-auth`, `db show --database-name` and `firewall-rule create
#   --name <server> --rule-name <rule>` (renamed in 2.87.0), so `az webapp connection create
#   postgres-flexible --system-identity` cannot work with the CLI this script needs. The role
#   is created here instead with `manage.py create_aad_principal` (the same
#   pgaadauth_create_principal_with_oid call) and the settings set directly.
# - Run from a checkout of the django-azure-pg repository: the library is built into wheels/
#   and shipped with the app (build-wheels.sh; requirements.txt --find-links wheels).
# Settings (environment): APP_NAME and DB_SERVER_NAME (globally unique names); optional
# RESOURCE_GROUP, LOCATION (default eastus — new trial and MSDN subscriptions are often
# refused Flexible Server there with LocationIsOfferRestricted: pick another region, e.g.
# LOCATION=swedencentral), DATABASE, CONNECTION, MY_IP (your public IP for a temporary
# firewall rule), ALLOW_ALL_AZURE (yes: the 0.0.0.0 rule, any Azure address; no: a rule per
# outbound address of this web app).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source-path=SCRIPTDIR
. infra/hooks/common.sh  # retry

: "${APP_NAME:?set APP_NAME (globally unique web app name)}"
: "${DB_SERVER_NAME:?set DB_SERVER_NAME (globally unique server name)}"
RESOURCE_GROUP="${RESOURCE_GROUP:-rg-${APP_NAME}}"
LOCATION="${LOCATION:-eastus}"
DATABASE="${DATABASE:-restaurant}"
CONNECTION="${CONNECTION:-restaurantdb}"
ALLOW_ALL_AZURE="${ALLOW_ALL_AZURE:-yes}"
ROLE="aad_${CONNECTION}"
PLAN="${PLAN:-plan-${APP_NAME}}"
PYTHON="${PYTHON:-python3}"
APP_PYTHON="${APP_PYTHON:-.venv/bin/python}"
MIN_AZ_VERSION=2.87.0

step() { printf '\n==> %s\n' "$*"; }

step "Azure CLI ${MIN_AZ_VERSION} or later, signed in"
az_version="$(az version --query '"azure-cli"' --output tsv)"
if [ "$(printf '%s\n%s\n' "$MIN_AZ_VERSION" "$az_version" | sort -V | head -n 1)" != "$MIN_AZ_VERSION" ]; then
  echo "Azure CLI $az_version is too old: this script needs $MIN_AZ_VERSION or later (az upgrade)." >&2
  exit 1
fi
ADMIN_UPN="$(az ad signed-in-user show --query userPrincipalName --output tsv)"
ADMIN_OID="$(az ad signed-in-user show --query id --output tsv)"
echo "$ADMIN_UPN becomes the server's Entra admin"

step "Resource group"
az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none

step "PostgreSQL flexible server with Microsoft Entra authentication only"
# One az call at a time: each waits for its operation, so the admin exists before the
# database (security-entra-concepts.md) and no two server operations overlap (ServerBusy).
if [ "$ALLOW_ALL_AZURE" = yes ]; then public_access=0.0.0.0; else public_access=None; fi
az postgres flexible-server create \
  --resource-group "$RESOURCE_GROUP" --name "$DB_SERVER_NAME" --location "$LOCATION" \
  --tier Burstable --sku-name Standard_B1ms --storage-size 32 --version 16 \
  --microsoft-entra-auth Enabled --password-auth Disabled \
  --public-access "$public_access" --yes --output none
az postgres flexible-server microsoft-entra-admin create \
  --resource-group "$RESOURCE_GROUP" --server-name "$DB_SERVER_NAME" \
  --display-name "$ADMIN_UPN" --object-id "$ADMIN_OID" --type User --output none
az postgres flexible-server db create \
  --resource-group "$RESOURCE_GROUP" --server-name "$DB_SERVER_NAME" \
  --name "$DATABASE" --output none

step "Web app (Linux, Python 3.12) without code: settings first"
az appservice plan create --resource-group "$RESOURCE_GROUP" --name "$PLAN" \
  --location "$LOCATION" --is-linux --sku B1 --output none
az webapp create --resource-group "$RESOURCE_GROUP" --plan "$PLAN" --name "$APP_NAME" \
  --runtime "PYTHON:3.12" --output none
az webapp update --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" --https-only true --output none
az webapp config set --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
  --startup-file startup.sh --generic-configurations '{"healthCheckPath": "/healthz"}' --output none
APP_PRINCIPAL_ID="$(az webapp identity assign --resource-group "$RESOURCE_GROUP" \
  --name "$APP_NAME" --query principalId --output tsv)"
# Django's SECRET_KEY goes to az in a file of this user's only (az reads "@file" arguments),
# never on a command line, where the process list and shell history would show it.
secrets_dir="$(mktemp -d)"
"$PYTHON" - "$secrets_dir/settings.json" <<'PY'
import json, os, secrets, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump({"SECRET_KEY": secrets.token_urlsafe(50)}, f)
PY
# Service Connector's names (client type django), read by django_azure_pg.from_env().
az webapp config appsettings set --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
  --settings "@$secrets_dir/settings.json" SCM_DO_BUILD_DURING_DEPLOYMENT=true \
  AZURE_POSTGRESQL_HOST="${DB_SERVER_NAME}.postgres.database.azure.com" \
  AZURE_POSTGRESQL_NAME="$DATABASE" AZURE_POSTGRESQL_USER="$ROLE" --output none ||
  { rm -rf "$secrets_dir"; exit 1; }
rm -rf "$secrets_dir"

if [ "$ALLOW_ALL_AZURE" != yes ]; then
  step "Firewall: only this web app's possible outbound addresses"
  outbound="$(az webapp show --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
    --query possibleOutboundIpAddresses --output tsv)"
  i=0
  for ip in ${outbound//,/ }; do
    i=$((i + 1))
    az postgres flexible-server firewall-rule create \
      --resource-group "$RESOURCE_GROUP" --server-name "$DB_SERVER_NAME" --name "app-outbound-$i" \
      --start-ip-address "$ip" --end-ip-address "$ip" --output none
  done
fi

step "Let this machine reach the server until the script ends"
# The role creation and the migrations log in from here.
MY_IP="${MY_IP:-$(curl --silent --fail https://api.ipify.org)}"
az postgres flexible-server firewall-rule create \
  --resource-group "$RESOURCE_GROUP" --server-name "$DB_SERVER_NAME" --name deploy-client \
  --start-ip-address "$MY_IP" --end-ip-address "$MY_IP" --output none
trap 'az postgres flexible-server firewall-rule delete --resource-group "$RESOURCE_GROUP" \
  --server-name "$DB_SERVER_NAME" --name deploy-client --yes --output none' EXIT

step "Role ${ROLE} for the app's identity; migrate and grant — from here, as you"
./build-wheels.sh
[ -x "$APP_PYTHON" ] || "$PYTHON" -m venv .venv
"$APP_PYTHON" -m pip install --quiet -r requirements.txt
export AZURE_POSTGRESQL_HOST="${DB_SERVER_NAME}.postgres.database.azure.com"
export AZURE_POSTGRESQL_NAME="$DATABASE"
# Mapped to the identity by object id, named as Service Connector names its roles. Retried:
# a managed identity created a minute ago may not have reached every Entra replica yet.
AZURE_POSTGRESQL_USER="$ROLE" retry "$APP_PYTHON" manage.py create_aad_principal "$ROLE" \
  --oid "$APP_PRINCIPAL_ID" --type service --owner-user "$ADMIN_UPN" --owner-entra
# The tables belong to you; migrate_locked holds an advisory lock, so overlapping deploys
# take turns. Migrations run here once, not at every container start.
AZURE_POSTGRESQL_USER="$ADMIN_UPN" "$APP_PYTHON" manage.py migrate_locked --noinput
# Privileges in the app database (PostgreSQL 15+ gives non-owners no CREATE on public;
# Service Connector would not grant them either).
AZURE_POSTGRESQL_USER="$ROLE" "$APP_PYTHON" manage.py grant_aad_privileges \
  --owner-user "$ADMIN_UPN" --owner-entra

step "Deploy the code (Oryx builds it: pip install -r requirements.txt, collectstatic)"
rm -f app.zip
"$PYTHON" - app.zip <<'PY'
import os, sys, zipfile
skip_dirs = {"__pycache__", ".venv", ".azure", "staticfiles"}
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    for root, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs)
        for name in sorted(files):
            if not name.endswith(".pyc") and name != "app.zip":
                archive.write(os.path.join(root, name))
PY
az webapp deploy --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
  --src-path app.zip --type zip --output none
echo "https://${APP_NAME}.azurewebsites.net/  (health: /healthz)"

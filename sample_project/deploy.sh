#!/usr/bin/env bash
# Deploy the sample to App Service + PostgreSQL Flexible Server with plain az CLI steps,
# passwordless end to end: the server has Entra authentication only, the web app uses its
# system-assigned identity, Service Connector creates the app's role, and
# grant_aad_privileges gives that role what Django needs.
#
# Needs: az login (you become the server's Entra admin), Python with requirements.txt.
# Settings (environment): APP_NAME and DB_SERVER_NAME (globally unique names), optional
# RESOURCE_GROUP, LOCATION, CONNECTION, MY_IP (your public IP for the firewall rule).
set -euo pipefail
cd "$(dirname "$0")"

: "${APP_NAME:?set APP_NAME (globally unique web app name)}"
: "${DB_SERVER_NAME:?set DB_SERVER_NAME (globally unique server name)}"
RESOURCE_GROUP="${RESOURCE_GROUP:-rg-${APP_NAME}}"
LOCATION="${LOCATION:-eastus}"
DATABASE="${DATABASE:-restaurant}"
CONNECTION="${CONNECTION:-restaurantdb}"
ROLE="aad_${CONNECTION}"
PYTHON="${PYTHON:-python3}"

step() { printf '\n==> %s\n' "$*"; }

step "Signed-in user (becomes the server's Entra admin)"
ADMIN_UPN="$(az ad signed-in-user show --query userPrincipalName --output tsv)"
ADMIN_OID="$(az ad signed-in-user show --query id --output tsv)"
echo "$ADMIN_UPN"

step "Resource group"
az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none

step "PostgreSQL flexible server with Microsoft Entra authentication only"
az postgres flexible-server create \
  --resource-group "$RESOURCE_GROUP" --name "$DB_SERVER_NAME" --location "$LOCATION" \
  --tier Burstable --sku-name Standard_B1ms --storage-size 32 --version 16 \
  --microsoft-entra-auth Enabled --password-auth Disabled \
  --public-access 0.0.0.0 --yes --output none
az postgres flexible-server microsoft-entra-admin create \
  --resource-group "$RESOURCE_GROUP" --server-name "$DB_SERVER_NAME" \
  --display-name "$ADMIN_UPN" --object-id "$ADMIN_OID" --type User --output none
az postgres flexible-server db create \
  --resource-group "$RESOURCE_GROUP" --server-name "$DB_SERVER_NAME" \
  --database-name "$DATABASE" --output none

step "Web app (Linux, Python 3.12), HTTPS only, health check, system-assigned identity"
az webapp up --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" --location "$LOCATION" \
  --runtime "PYTHON:3.12" --sku B1 --output none
az webapp update --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" --https-only true --output none
az webapp config set --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
  --startup-file startup.sh --generic-configurations '{"healthCheckPath": "/health/"}' --output none
az webapp identity assign --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" --output none
SECRET_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')"
az webapp config appsettings set --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
  --settings SCM_DO_BUILD_DURING_DEPLOYMENT=true SECRET_KEY="$SECRET_KEY" --output none

step "Service Connector: role ${ROLE} for the app's identity, AZURE_POSTGRESQL_* app settings"
az webapp connection create postgres-flexible \
  --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
  --target-resource-group "$RESOURCE_GROUP" --server "$DB_SERVER_NAME" --database "$DATABASE" \
  --connection "$CONNECTION" --system-identity --client-type django --yes --output none

step "Grant ${ROLE} what Django needs (as you, the Entra admin, with your az login token)"
MY_IP="${MY_IP:-$(curl --silent --fail https://api.ipify.org)}"
az postgres flexible-server firewall-rule create \
  --resource-group "$RESOURCE_GROUP" --name "$DB_SERVER_NAME" --rule-name deploy-client \
  --start-ip-address "$MY_IP" --end-ip-address "$MY_IP" --output none
AZURE_POSTGRESQL_HOST="${DB_SERVER_NAME}.postgres.database.azure.com" \
AZURE_POSTGRESQL_NAME="$DATABASE" \
AZURE_POSTGRESQL_USER="$ROLE" \
  "$PYTHON" manage.py grant_aad_privileges --owner-user "$ADMIN_UPN" --owner-entra --migrate
az postgres flexible-server firewall-rule delete \
  --resource-group "$RESOURCE_GROUP" --name "$DB_SERVER_NAME" --rule-name deploy-client --yes --output none

step "Restart so startup.sh migrates as ${ROLE}"
az webapp restart --resource-group "$RESOURCE_GROUP" --name "$APP_NAME"
echo "https://${APP_NAME}.azurewebsites.net/  (health: /health/)"

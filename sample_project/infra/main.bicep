// App Service (Linux, Python) + PostgreSQL Flexible Server with Microsoft Entra authentication
// only. The web app's system-assigned identity logs in with tokens (django-azure-pg); the
// app settings use Service Connector's variable names. The postprovision hook creates the
// app's role and grants it privileges (infra/hooks/postprovision.sh).
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name; used to derive resource names')
param environmentName string

@description('Region for all resources')
param location string = resourceGroup().location

@description('Object id of the Entra principal that becomes the server admin (you)')
param principalId string

@description('Name (UPN) of that principal: the PostgreSQL role it logs in as')
param principalName string

@description('Kind of that principal: User for a developer\'s login, ServicePrincipal when azd runs in CI (azd env set AZURE_PRINCIPAL_TYPE ServicePrincipal; azure-dev discussion #3488)')
@allowed(['User', 'Group', 'ServicePrincipal'])
param principalType string = 'User'

@description('Service Connector-style connection name: the app role is aad_<connection>')
param connectionName string = 'restaurantdb'

param databaseName string = 'restaurant'
param pythonVersion string = '3.12'

@secure()
param secretKey string = newGuid()

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }
var appRole = 'aad_${connectionName}'

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: 'plan-${token}'
  location: location
  tags: tags
  kind: 'linux'
  sku: { name: 'B1', tier: 'Basic' }
  properties: { reserved: true }
}

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: 'psql-${token}'
  location: location
  tags: tags
  sku: { name: 'Standard_B1ms', tier: 'Burstable' }
  properties: {
    version: '16'
    storage: { storageSizeGB: 32 }
    backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' }
    highAvailability: { mode: 'Disabled' }
    network: { publicNetworkAccess: 'Enabled' }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
  }
}

// The server's children are created one after the other, never in parallel:
// - the Entra admin before the database: "add explicit dependencies within your deployment
//   module to ensure that Microsoft Entra authentication is turned on before you create any
//   user databases" (MicrosoftDocs/azure-databases-docs, articles/postgresql/security/
//   security-entra-concepts.md, "Limitations and considerations"); a database created first
//   is not owned by an Entra principal, and granting on it as the Entra admin can fail;
// - one operation at a time on the server: concurrent child operations fail with ServerBusy
//   (Azure-Samples/rag-postgres-openai-python, infra/core/database/postgresql/
//   flexibleserver.bicep, chains its firewall rules, admin and configuration the same way).
// tests/test_sample_project.py checks this chain.
resource entraAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: postgres
  name: principalId
  properties: {
    principalName: principalName
    principalType: principalType
    tenantId: subscription().tenantId
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: databaseName
  properties: { charset: 'UTF8', collation: 'en_US.utf8' }
  dependsOn: [entraAdmin]
}

// 0.0.0.0 - 0.0.0.0 is Azure's "allow public access from any Azure service": it admits
// every Azure resource's outbound address, other customers' included — the Entra login
// is what keeps them out. For a network boundary use private access (VNet integration;
// see the README's "Networking" section).
resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: postgres
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: { startIpAddress: '0.0.0.0', endIpAddress: '0.0.0.0' }
  dependsOn: [database]
}

// Telemetry: a workspace-based Application Insights resource; the app's settings carry its
// connection string, and config/settings.py calls configure_azure_monitor() when it is set.
resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

resource web 'Microsoft.Web/sites@2023-12-01' = {
  name: 'app-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'web' })
  kind: 'app,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: 'PYTHON|${pythonVersion}'
      appCommandLine: 'startup.sh'
      healthCheckPath: '/healthz'
      alwaysOn: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'SCM_DO_BUILD_DURING_DEPLOYMENT', value: 'true' }
        { name: 'SECRET_KEY', value: secretKey }
        { name: 'AZURE_POSTGRESQL_HOST', value: postgres.properties.fullyQualifiedDomainName }
        { name: 'AZURE_POSTGRESQL_NAME', value: databaseName }
        { name: 'AZURE_POSTGRESQL_USER', value: appRole }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
      ]
    }
  }
  // Created with its settings (SECRET_KEY, AZURE_POSTGRESQL_*) and without code: azd
  // deploys the code after the postprovision hook made the role and predeploy migrated.
  dependsOn: [allowAzure]
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output WEB_APP_NAME string = web.name
output WEB_APP_URL string = 'https://${web.properties.defaultHostName}'
output WEB_APP_PRINCIPAL_ID string = web.identity.principalId
output POSTGRES_SERVER_NAME string = postgres.name
output POSTGRES_HOST string = postgres.properties.fullyQualifiedDomainName
output POSTGRES_DATABASE string = databaseName
output POSTGRES_ADMIN_NAME string = principalName
output APP_DB_ROLE string = appRole

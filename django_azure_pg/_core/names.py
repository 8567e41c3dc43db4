"""Names shared by the settings side and the login side: a leaf that imports nothing.

``env`` (run by ``settings.py``) and ``credentials`` (run by the first login) both
read Service Connector's variables. The names live here so that ``settings.py``
does not import ``credentials`` — and with it azure-identity, MSAL and psycopg —
for a string, and so that ``credentials`` and ``options`` need not import each
other.
"""

from __future__ import annotations

SERVICE_CONNECTOR_PREFIX = "AZURE_POSTGRESQL_"
"""Service Connector's app settings start with this; a named connection adds ``<NAME>_``."""

SERVICE_CONNECTOR_SUFFIXES = {
    "client_id": "CLIENTID",
    "client_secret": "CLIENTSECRET",
    "tenant_id": "TENANTID",
}
"""Each credential key, and the suffix of the Service Connector variable that stands for it
(``AZURE_POSTGRESQL_CLIENTID`` …): OPTIONS wins key by key, the variable fills the rest."""

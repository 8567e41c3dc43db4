"""What a failed login or query most likely means, and what to do about it.

Shared by ``manage.py azure_pg_doctor`` and mirrored in docs/troubleshooting.md.
No Django import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    key: str
    cause: str
    fix: str


_RULES: list[tuple[re.Pattern[str], Diagnosis]] = [
    (
        re.compile(r'role "[^"]*" does not exist', re.I),
        Diagnosis(
            "role_missing",
            "The server has no role with this name: the identity was never registered.",
            "Create it as an Entra admin: manage.py create_aad_principal <USER> --oid <object id> "
            "--type service (Service Connector does this when it creates the connection).",
        ),
    ),
    (
        re.compile(r"access token (has )?expired", re.I),
        Diagnosis(
            "token_expired",
            "The server received an expired token.",
            "Check the machine's clock; make sure nothing caches a token outside django-azure-pg "
            "(e.g. a PASSWORD computed in settings.py).",
        ),
    ),
    (
        re.compile(r"password authentication failed|LDAP authentication failed", re.I),
        Diagnosis(
            "token_refused",
            "The server refused the token for this role: the role is not mapped to this identity, "
            "USER names another principal, or the token is for another tenant or audience.",
            "Check that USER is the role created for THIS identity (its object id), that the "
            "scope matches the cloud, and that Entra authentication is enabled on the server.",
        ),
    ),
    (
        re.compile(r"permission denied for schema", re.I),
        Diagnosis(
            "schema_privileges",
            "The role may not use or create objects in the schema (PostgreSQL 15+ gives "
            "non-owners no CREATE on public; Service Connector grants nothing on schemas).",
            "Run manage.py grant_aad_privileges --migrate as the schema's owner.",
        ),
    ),
    (
        re.compile(r"permission denied for (table|sequence|relation|database|function)", re.I),
        Diagnosis(
            "object_privileges",
            "The role lacks privileges on objects owned by another role.",
            "Run manage.py grant_aad_privileges as the objects' owner.",
        ),
    ),
    (
        re.compile(r'database "[^"]*" does not exist', re.I),
        Diagnosis(
            "database_missing",
            "NAME names a database that does not exist on this server.",
            "Create it (az postgres flexible-server db create) or fix NAME.",
        ),
    ),
    (
        re.compile(
            r"no pg_hba\.conf entry.*no encryption|SSL off|server does not support SSL"
            r"|SSL is required|SSL connection is required",
            re.I,
        ),
        Diagnosis(
            "tls",
            "TLS mismatch: Azure requires TLS 1.2+, or the client refused the server's certificate.",
            "Use sslmode=require (the default here) or verify-full with sslrootcert pointing at a "
            "CA bundle containing DigiCert Global Root G2 and Microsoft RSA Root CA 2017.",
        ),
    ),
    (
        re.compile(r"certificate verify failed|root certificate file|sslrootcert", re.I),
        Diagnosis(
            "tls_verify",
            "The server certificate could not be verified.",
            "Set OPTIONS['sslrootcert'] to a CA bundle file (the psycopg binary wheel does not "
            "read /etc/ssl by itself).",
        ),
    ),
    (
        re.compile(
            r"could not translate host name|Name or service not known|nodename nor servname", re.I
        ),
        Diagnosis(
            "dns",
            "The host name does not resolve.",
            "Check HOST (e.g. <server>.postgres.database.azure.com) and, for private access, the "
            "private DNS zone linked to the app's virtual network.",
        ),
    ),
    (
        re.compile(
            r"Connection refused|timeout expired|timed out|No route to host|"
            r"Network is unreachable",
            re.I,
        ),
        Diagnosis(
            "unreachable",
            "The server cannot be reached: firewall rule, network access mode, wrong port, or the "
            "server is stopped.",
            "Allow the app's outbound IPs (or 'Allow Azure services') in the server's networking "
            "settings, or use VNet integration; check PORT (5432, or 6432 for PgBouncer).",
        ),
    ),
    (
        re.compile(r"within .* s \(the identity endpoint", re.I),
        Diagnosis(
            "identity_timeout",
            "The identity endpoint did not answer in time.",
            "Check that the app has a managed identity enabled and that IDENTITY_ENDPOINT / IMDS "
            "is reachable; raise OPTIONS['token_timeout'] only if the endpoint is merely slow.",
        ),
    ),
    (
        re.compile(
            r"CredentialUnavailable|No managed identity|DefaultAzureCredential failed|"
            r"ManagedIdentityCredential authentication unavailable",
            re.I,
        ),
        Diagnosis(
            "no_identity",
            "No identity is available to this process.",
            "Enable a managed identity on the app (or set AZURE_POSTGRESQL_CLIENTID for a "
            "user-assigned one); on a laptop run az login.",
        ),
    ),
    (
        re.compile(r"could not get an Entra access token", re.I),
        Diagnosis(
            "token_fetch",
            "The credential failed to return a token.",
            "Read the chained cause; run manage.py azure_pg_doctor for which credential was used.",
        ),
    ),
]


def diagnose(message: str) -> Diagnosis | None:
    for pattern, diagnosis in _RULES:
        if pattern.search(message):
            return diagnosis
    return None


def all_diagnoses() -> list[Diagnosis]:
    return [d for _, d in _RULES]

"""One table of causes: every rule, the server texts Azure sends, and the docs made from it."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from django_azure_pg import errors
from django_azure_pg._core import diagnosis, endpoint
from django_azure_pg._core.diagnosis import (
    ADVICE,
    classify,
    diagnose,
    login_refusal,
    throttled_retry_after,
)
from django_azure_pg._core.endpoint import retry_after_seconds
from django_azure_pg._core.token_source import TokenError, TokenThrottled, TokenTimeout

DOCS = Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md"


def op(text: str) -> psycopg.OperationalError:
    return psycopg.OperationalError(
        f'connection failed: connection to server at "h" failed: {text}'
    )


def with_state(exc: psycopg.Error, state: str) -> psycopg.Error:
    exc.sqlstate = state  # type: ignore[misc]  # what psycopg sets from the server's error
    return exc


def wrapped(inner: BaseException) -> BaseException:
    """As Django re-raises a driver error: a new exception with the original as its cause."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError(str(exc)) from exc
    except RuntimeError as outer:
        return outer


class Response:
    """What azure-core's HttpResponseError reads from a response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self.reason = "Error"

    def text(self) -> str:
        return ""


def http_error(status: int) -> BaseException:
    """An identity endpoint's error answer as azure-identity raises it (IMDS: with the response)."""
    return ClientAuthenticationError(message="token request failed", response=Response(status))  # type: ignore[arg-type]


# One example per rule, written out here (not derived from the table), so that
# removing a rule from diagnosis.ADVICE or the classifier fails its case.
EXAMPLES: list[tuple[BaseException, type[BaseException]]] = [
    (errors.TokenNotForRole("x"), errors.TokenNotForRole),
    (errors.RoleTypeMismatch("x"), errors.RoleTypeMismatch),
    (errors.TokenExpiredAtServer("x"), errors.TokenExpiredAtServer),
    (errors.RoleMissing("x"), errors.RoleMissing),
    (op('FATAL:  password authentication failed for user "u"'), diagnosis.RefusedUnspecified),
    (errors.PasswordRefused("x"), errors.PasswordRefused),
    (op("FATAL:  sorry, too many clients already"), errors.TooManyConnections),
    (
        endpoint.safe_cause(ServiceRequestError("Connection refused")),
        diagnosis.IdentityEndpointUnreachable,
    ),
    (http_error(500), diagnosis.IdentityEndpointFailed),
    (errors.RoleNameUnknown("x"), errors.RoleNameUnknown),
    (TokenThrottled("x", 5), TokenThrottled),
    (TokenTimeout("x"), TokenTimeout),
    (CredentialUnavailableError("No managed identity endpoint found."), diagnosis.NoIdentity),
    (errors.TokenAcquisitionError("x"), errors.TokenAcquisitionError),
    (errors.InsecureTransport("x"), errors.InsecureTransport),
    (errors.UnverifiedServer("x"), errors.UnverifiedServer),
    (errors.ServerTimeout("x"), errors.ServerTimeout),
    (
        with_state(
            psycopg.errors.InsufficientPrivilege("permission denied for schema public"), "42501"
        ),
        diagnosis.SchemaPrivileges,
    ),
    (
        with_state(psycopg.errors.InsufficientPrivilege("permission denied for table t"), "42501"),
        diagnosis.ObjectPrivileges,
    ),
    (op('FATAL:  database "nope" does not exist'), diagnosis.DatabaseMissing),
    (
        op('FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "u", no encryption'),
        diagnosis.TlsRequired,
    ),
    (op("SSL error: certificate verify failed"), diagnosis.TlsVerify),
    (
        op('server certificate for "a.example" does not match host name "b.example"'),
        diagnosis.TlsVerify,
    ),
    (
        op('could not translate host name "x" to address: Name or service not known'),
        diagnosis.HostUnknown,
    ),
    (op("Connection refused\n\tIs the server running on that host"), diagnosis.Unreachable),
    (
        psycopg.OperationalError(  # libpq 18's text for an empty HOST (issue 23)
            'connection is bad: connection to server on socket "/var/run/postgresql/'
            '.s.PGSQL.5432" failed: No such file or directory\n\tIs the server running '
            "locally and accepting connections on that socket?"
        ),
        diagnosis.NoHost,
    ),
]


@pytest.mark.parametrize(("exc", "cause"), EXAMPLES, ids=[c.__name__ for _, c in EXAMPLES])
def test_every_rule(exc: BaseException, cause: type[BaseException]) -> None:
    assert classify(exc) is cause
    assert classify(wrapped(exc)) is cause  # found through Django's re-raise too
    advice = diagnose(exc)
    assert advice is ADVICE[cause]


def test_every_table_entry_has_an_example() -> None:
    assert set(ADVICE) == {cause for _, cause in EXAMPLES}


# The texts Azure Database for PostgreSQL sends at login (errors.py cites the sources).
AZURE_LOGIN_TEXTS = [
    (
        "FATAL:  The access token has expired. Please acquire a new token and retry.",
        errors.TokenExpiredAtServer,
    ),
    ('FATAL:  password authentication failed for user "aad_app"', diagnosis.RefusedUnspecified),
    ('FATAL:  role "aad_ghost" does not exist', errors.RoleMissing),
    (
        "FATAL:  Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role[app]",
        errors.RoleTypeMismatch,
    ),
    ("FATAL:  Service Principal oid mismatch for role[aad_app].", errors.TokenNotForRole),
]


@pytest.mark.parametrize(("text", "cause"), AZURE_LOGIN_TEXTS)
def test_azure_login_texts(text: str, cause: type[BaseException]) -> None:
    assert login_refusal(op(text)) is cause


def test_the_kits_login_texts_are_the_ones_recognised() -> None:
    """The testing kit's front sends these; what it sends must be what the matcher reads."""
    from django_azure_pg_testing.front import AZURE_TEXTS

    expected = {
        "expired": errors.TokenExpiredAtServer,
        "refused": diagnosis.RefusedUnspecified,
        "role_missing": errors.RoleMissing,
    }
    assert set(AZURE_TEXTS) == set(expected)
    for reason, (_sqlstate, message) in AZURE_TEXTS.items():
        assert login_refusal(op("FATAL:  " + message.format(role="aad_app"))) is expected[reason]
        assert (f"FATAL:  {message.format(role='aad_app')}", expected[reason]) in [
            (t.replace("aad_ghost", "aad_app"), c) for t, c in AZURE_LOGIN_TEXTS
        ]


@pytest.mark.parametrize(
    "text",
    [
        "Connection refused",
        'database "x" does not exist',
        "SSL connection is required",
        "server closed the connection unexpectedly",
    ],
)
def test_other_failures_are_not_refusals(text: str) -> None:
    assert login_refusal(op(text)) is None


def test_sqlstate_28p01_is_a_refusal_whatever_the_text() -> None:
    assert (
        login_refusal(with_state(psycopg.OperationalError("localised text"), "28P01"))
        is diagnosis.RefusedUnspecified
    )
    assert (
        login_refusal(with_state(psycopg.OperationalError("texte traduit"), "28000"))
        is diagnosis.RefusedUnspecified
    )


# PostgreSQL's refusal through any method, and a pooler's: the same meaning as Azure's
# "password authentication failed" (issue 30).
REFUSALS_BY_MEANING = [
    'FATAL:  LDAP authentication failed for user "aad_app"',  # the kit's server, no front
    'FATAL:  password authentication failed for user "app"',
    'FATAL:  SCRAM authentication failed for user "app"',
    'FATAL:  cert authentication failed for user "app"',
    "FATAL:  SASL authentication failed",  # PgBouncer
    "FATAL:  password authentication failed",  # PgBouncer
]


@pytest.mark.parametrize("text", REFUSALS_BY_MEANING)
def test_a_refusal_by_meaning_whatever_the_method(text: str) -> None:
    assert login_refusal(op(text)) is diagnosis.RefusedUnspecified
    assert classify(wrapped(op(text))) is diagnosis.RefusedUnspecified


def test_host_rules_are_not_refusals_of_a_credential() -> None:
    hba = 'FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "u", database "d", no encryption'
    assert login_refusal(with_state(op(hba), "28000")) is None
    assert classify(op(hba)) is diagnosis.TlsRequired


def test_texts_are_read_from_psycopg_errors_only() -> None:
    # An identity endpoint's "Connection refused" is not the database's (issue 30).
    refused = RuntimeError("HTTPConnection(host='127.0.0.1', port=9): Connection refused")
    assert classify(refused) is None
    assert login_refusal(RuntimeError('LDAP authentication failed for user "x"')) is None


# The server out of connection slots: PostgreSQL 15's and 16's texts, and the SQLSTATE.
OUT_OF_SLOTS = [
    op("FATAL:  sorry, too many clients already"),
    op("FATAL:  remaining connection slots are reserved for non-replication superuser connections"),
    op("FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute"),
    op('FATAL:  too many connections for role "aad_app"'),
    with_state(psycopg.OperationalError("localised text"), "53300"),
]


@pytest.mark.parametrize("exc", OUT_OF_SLOTS)
def test_a_server_out_of_slots(exc: psycopg.Error) -> None:
    assert classify(exc) is errors.TooManyConnections
    assert login_refusal(exc) is None  # no fresh token, no refusal budget
    failure = diagnosis.login_failure("default", exc)
    assert isinstance(failure, errors.TooManyConnections)
    assert "Database alias 'default'" in str(failure)
    assert "6432" in str(failure) and "Burstable" in str(failure)  # the advice


def test_a_password_refusal_says_password_turns_tokens_off() -> None:
    exc = op('FATAL:  password authentication failed for user "app"')
    assert diagnosis.login_failure("default", exc) is None  # a token login's own business
    failure = diagnosis.login_failure("default", exc, password=True)
    assert isinstance(failure, errors.PasswordRefused)
    assert "PASSWORD" in str(failure) and "Remove PASSWORD" in str(failure)
    assert failure.server_message == 'FATAL:  password authentication failed for user "app"'
    assert diagnosis.login_failure("default", op("Connection refused"), password=True) is None


@pytest.mark.parametrize(
    "exc",
    [
        ServiceRequestError("[Errno 111] Connection refused"),
        ServiceResponseError("Read timed out"),
    ],
)
def test_identity_endpoint_unreachable_is_not_the_database(exc: BaseException) -> None:
    token_error = TokenError("x")
    token_error.__cause__ = endpoint.safe_cause(exc)  # what the token thread passes on
    assert classify(token_error) is diagnosis.IdentityEndpointUnreachable
    login = errors.TokenAcquisitionError("x")  # as the login raises it
    login.__cause__ = token_error
    assert classify(login) is diagnosis.IdentityEndpointUnreachable


def test_identity_endpoint_status() -> None:
    # IMDS keeps the response: its status survives the token thread's copy.
    assert classify(endpoint.safe_cause(http_error(503))) is diagnosis.IdentityEndpointFailed
    assert classify(endpoint.safe_cause(http_error(400))) is None
    # App Service's HTTP 500 reaches us as CredentialUnavailableError ("configuration not
    # found"): the status the endpoint answered with decides.
    app_service = CredentialUnavailableError("App Service managed identity configuration not found")
    assert classify(app_service) is diagnosis.NoIdentity
    assert diagnosis.identity_failure(app_service, 500) is diagnosis.IdentityEndpointFailed
    assert diagnosis.identity_failure(app_service, 400) is diagnosis.NoIdentity
    assert diagnosis.identity_failure(app_service, None) is diagnosis.NoIdentity
    # azure-identity retried the 500s until token_timeout ran out: still the endpoint's failure.
    assert diagnosis.identity_failure(TokenTimeout("x"), 500) is diagnosis.IdentityEndpointFailed
    assert diagnosis.identity_failure(TokenTimeout("x"), None) is TokenTimeout


def test_what_the_token_thread_passes_on_keeps_the_type() -> None:
    # The token thread hands on a frameless copy of a credential's exception (endpoint.py).
    from django_azure_pg._core.endpoint import safe_cause

    copy = safe_cause(CredentialUnavailableError("No managed identity endpoint found."))
    assert classify(TokenError("x").with_traceback(None)) is None
    err = TokenError("x")
    err.__cause__ = copy
    assert classify(err) is diagnosis.NoIdentity


def test_our_own_wording_is_never_read() -> None:
    # Our errors are classified by type only: text that would match a server rule changes nothing.
    mimic = 'password authentication failed for user "x"; permission denied for schema public'
    assert classify(TokenError(mimic)) is None
    assert classify(errors.TokenAcquisitionError(mimic)) is errors.TokenAcquisitionError
    assert login_refusal(errors.TokenNotForRole(mimic)) is None
    assert throttled_retry_after(TokenError("too_many_requests")) is None


def test_throttle_read_from_azure_core_errors() -> None:
    class Response:
        status_code = 429
        headers = {"Retry-After": "17"}
        reason = "Too Many Requests"

        def text(self) -> str:
            return ""

    err = HttpResponseError(message="throttled", response=Response())  # type: ignore[arg-type]
    assert throttled_retry_after(err) == 17
    imds = CredentialUnavailableError("Token request error: (too_many_requests) Too many requests.")
    assert throttled_retry_after(imds) == endpoint.THROTTLE_FALLBACK
    assert throttled_retry_after(RuntimeError("HTTP 500")) is None


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "5"}) == 5
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None


def test_troubleshooting_doc_is_the_table() -> None:
    text = DOCS.read_text()
    match = re.search(r"<!-- errors table.*?-->\n(.*?)\n<!-- /errors table -->", text, re.S)
    assert match, "docs/troubleshooting.md lost its generated errors table"
    assert match.group(1).strip() == diagnosis.markdown_table(), (
        "docs/troubleshooting.md is out of date: python -m scripts.troubleshooting_table"
    )

"""The token reaches only a verified server (or one on this machine), never plaintext.

Run with SSL_CERT_FILE / SSL_CERT_DIR unset, as in users' containers: the
psycopg binary wheel's OpenSSL then finds no system roots by itself.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError

from django_azure_pg._core import tls
from django_azure_pg.mixin import _HAS_POOL
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres
from django_azure_pg_testing.certs import make_ca, make_server_cert

from .conftest import ITEST_DB, ROLE, MakeWrapper
from .fake_pg import FakePostgres

AZ_NAME = "evil.postgres.database.azure.com"

# Root CA table of "Azure Certificate Authority details" (MicrosoftDocs/azure-docs,
# articles/security/fundamentals/azure-CA-details.md), SHA-1 thumbprints; Baltimore
# CyberTrust Root expired on 2025-05-12 and is left out.
AZURE_ROOT_THUMBPRINTS = {
    "A8985D3A65E5E5C4B2D7D66D40C6DD2FB19C5436",  # DigiCert Global Root CA (China regions)
    "DF3C24F9BFD666761B268073FE06D1CC8D4F82A4",  # DigiCert Global Root G2
    "7E04DE896A3E666D00E687D33FFAD93BE83D349E",  # DigiCert Global Root G3
    "999A64C37FF47D9FAB95F14769891460EEC4C3C5",  # Microsoft ECC Root Certificate Authority 2017
    "73A5E64A3BFF8316FF0EDCCC618A906E4EAE4D74",  # Microsoft RSA Root Certificate Authority 2017
}


@pytest.fixture(autouse=True)
def _no_system_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "PGSSLMODE", "PGSSLROOTCERT", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)


# -- the trust file -------------------------------------------------------------


def test_bundled_roots_are_exactly_azures_and_not_about_to_expire() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certs = x509.load_pem_x509_certificates(Path(tls.azure_roots()).read_bytes())
    assert {c.fingerprint(hashes.SHA1()).hex().upper() for c in certs} == AZURE_ROOT_THUMBPRINTS  # noqa: S303
    # Fails a year ahead of any expiry: time to ship the successor.
    horizon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    assert all(c.not_valid_after_utc > horizon for c in certs)


# -- the policy, offline -----------------------------------------------------------


def written(params: dict[str, Any], environ: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """``params`` with the route's decision written in."""
    out = dict(params)
    tls.decide(params, environ, **kwargs).apply(out)
    return out


@pytest.mark.parametrize(
    "host",
    [
        "myserver.postgres.database.azure.com",
        "MyServer.Postgres.Database.Azure.com.",
        "myserver.privatelink.postgres.database.azure.com",
        "myserver.private.postgres.database.azure.com",
        "myserver.postgres.database.chinacloudapi.cn",
        "myserver.postgres.database.usgovcloudapi.net",
        "c-mycluster.abc123.postgres.cosmos.azure.com",
        "replica.postgres.database.azure.com,myserver.postgres.database.azure.com",
    ],
)
def test_azure_hosts_default_to_verify_full_with_azure_roots(host: str) -> None:
    params = written({"host": host}, {})
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == tls.azure_roots()


@pytest.mark.parametrize("host", ["db.internal", "10.0.0.4", "notpostgres.database.azure.com"])
def test_other_hosts_get_verify_full_for_tokens_and_require_for_passwords(host: str) -> None:
    params = written({"host": host}, {})
    assert (params["host"], params["sslmode"]) == (host, "verify-full")
    assert written({"host": host}, {}, token=False)["sslmode"] == "require"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "/tmp", ""])
def test_this_machine_keeps_require(host: str) -> None:
    assert written({"host": host}, {})["sslmode"] == "require"


def test_the_users_choice_wins(tmp_path: Path) -> None:
    az = "myserver.postgres.database.azure.com"
    assert written({"host": az, "sslmode": "require"}, {})["sslmode"] == "require"
    mine = written({"host": az, "sslrootcert": "/etc/my-ca.pem"}, {})
    assert (mine["sslrootcert"], mine["sslmode"]) == ("/etc/my-ca.pem", "verify-full")
    assert written({"host": az}, {"PGSSLROOTCERT": "/x.pem"})["sslrootcert"] == "/x.pem"
    assert written({"host": az}, {"PGSSLMODE": "verify-ca"})["sslmode"] == "verify-ca"
    service = tmp_path / "pg_service.conf"
    service.write_text(f"[prod]\nhost={az}\nsslmode=prefer\n")
    env = {"PGSERVICEFILE": str(service)}
    route = tls.resolve(written({"service": "prod"}, env), env)
    assert (route.sslmode, route.azure) == ("prefer", True)
    assert tls.refusal(route, "default") is not None


def test_where_the_token_goes() -> None:
    def route(**params: str) -> tls.Route:
        return tls.resolve(params, {})

    # Local: loopback names and addresses, Unix sockets, libpq's default socket.
    for local in (
        {"host": "127.0.0.1"},
        {"host": "::1"},
        {"host": "localhost"},
        {"host": "/tmp"},
        {},
    ):
        assert route(sslmode="disable", **local).local
    # hostaddr is what is dialled; an Azure name dialled at loopback is not "local".
    assert not route(host="x.postgres.database.azure.com", hostaddr="127.0.0.1").local
    assert not route(host="localhost", hostaddr="10.1.2.3").local
    # Every host of a multi-host HOST must be local for plaintext.
    assert not route(host="localhost,db.internal", sslmode="disable").local
    # An empty HOST means PGHOST, as in libpq.
    assert tls.resolve({}, {"PGHOST": "db.internal"}).hosts == ("db.internal",)
    assert "from PGHOST" in tls.resolve({}, {"PGHOST": "db.internal"}).describe()
    # Retrying with a fresh token only where the server was verified (or is local).
    assert route(host="db.internal", sslmode="verify-full").retry_safe
    assert not route(host="db.internal", sslmode="require").retry_safe


def test_unknown_service_is_not_local(tmp_path: Path) -> None:
    env = {"PGSERVICEFILE": str(tmp_path / "none.conf")}
    assert not tls.resolve({"service": "ghost", "sslmode": "disable"}, env).local


def test_service_file_is_read_as_libpq_reads_it(tmp_path: Path) -> None:
    service = tmp_path / "pg_service.conf"
    service.write_text(
        "# comment\n  [a]  \nhost=first\nhost=second\n  sslmode=verify-full  \n"
        "[b]\nhost=b\n[a]\nhost=third\nhostaddr=10.0.0.1\n"
    )
    env = {"PGSERVICEFILE": str(service)}
    assert tls.service_values({"service": "a"}, env) == (
        {"host": "first", "sslmode": "verify-full"},
        False,
    )
    # The first file holding the section wins; PGSYSCONFDIR's is read after it.
    other = tmp_path / "etc"
    other.mkdir()
    (other / "pg_service.conf").write_text("[a]\nhost=etc\n[c]\nhost=c\n")
    env["PGSYSCONFDIR"] = str(other)
    assert tls.service_values({"service": "a"}, env)[0]["host"] == "first"
    assert tls.service_values({"service": "c"}, env)[0] == {"host": "c"}


@pytest.mark.parametrize(
    ("host", "own"),
    [
        ("srv.privatelink.postgres.database.azure.com", "srv.postgres.database.azure.com"),
        ("SRV.PrivateLink.postgres.database.azure.com.", "srv.postgres.database.azure.com"),
        (
            "srv.privatelink.postgres.database.chinacloudapi.cn",
            "srv.postgres.database.chinacloudapi.cn",
        ),
        ("srv.postgres.database.azure.com", None),
        ("privatelink.postgres.database.azure.com", None),
        ("srv.privatelink.example.com", None),
    ],
)
def test_own_name_of_a_private_link_name(host: str, own: str | None) -> None:
    assert tls.own_name(host) == own


# -- a man-in-the-middle with a self-signed certificate for an Azure name -----------


@pytest.fixture
def mitm_cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_server_cert(tmp_path, AZ_NAME)


def _azure_alias(make_wrapper: MakeWrapper, port: int, **options: Any) -> Any:
    return make_wrapper(HOST=AZ_NAME, PORT=str(port), OPTIONS={"hostaddr": "127.0.0.1", **options})


@pytest.mark.integration
def test_self_signed_azure_name_gets_no_token_by_default(
    make_wrapper: MakeWrapper, mitm_cert: tuple[Path, Path]
) -> None:
    with FakePostgres(mitm_cert) as fake:
        wrapper = _azure_alias(make_wrapper, fake.port)
        with pytest.raises(OperationalError, match="certificate verify failed"):
            wrapper.ensure_connection()
    assert fake.tls_failed.wait(5)  # it was dialled, and the client refused its certificate
    assert fake.passwords == []
    params = wrapper.get_connection_params()
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", tls.azure_roots())


@pytest.mark.integration
@pytest.mark.skipif(not _HAS_POOL, reason="Django's native pool needs 5.1+")
def test_self_signed_azure_name_gets_no_token_through_the_pool(
    make_wrapper: MakeWrapper, mitm_cert: tuple[Path, Path]
) -> None:
    with FakePostgres(mitm_cert) as fake:
        wrapper = _azure_alias(make_wrapper, fake.port, pool={"min_size": 1, "timeout": 3})
        with pytest.raises(OperationalError):
            wrapper.ensure_connection()
        wrapper.close_pool()
    assert fake.tls_failed.wait(5)
    assert fake.passwords == []


@pytest.mark.integration
def test_with_require_the_fake_gets_one_token_and_no_retry(
    make_wrapper: MakeWrapper, mitm_cert: tuple[Path, Path], emulator: IdentityEmulator
) -> None:
    # The control: an explicit, unverified 'require' hands the token over, so the
    # fake server above would have caught one. It refuses it; no second token follows.
    with FakePostgres(mitm_cert) as fake:
        wrapper = _azure_alias(make_wrapper, fake.port, sslmode="require")
        with pytest.raises(OperationalError, match="password authentication failed"):
            wrapper.ensure_connection()
    assert len(fake.passwords) == 1
    assert fake.passwords[0] in emulator.issued_tokens()


# -- a server that refuses TLS -------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("sslmode", ["prefer", "allow", "disable"])
def test_plaintext_modes_get_no_token(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator, sslmode: str
) -> None:
    before = emulator.stats.token_requests
    with FakePostgres(cert=None) as fake:
        wrapper = _azure_alias(make_wrapper, fake.port, sslmode=sslmode)
        with pytest.raises(OperationalError, match="refusing to send an access token") as info:
            wrapper.ensure_connection()
    assert fake.passwords == [] and fake.connections == 0
    assert emulator.stats.token_requests == before  # refused before any token was fetched
    message = str(info.value)
    assert wrapper.alias in message and repr(sslmode) in message
    assert "allow_plaintext_token" in message


@pytest.mark.integration
def test_service_file_without_sslmode_gets_no_token(
    make_wrapper: MakeWrapper, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakePostgres(cert=None) as fake:
        service = tmp_path / "pg_service.conf"
        service.write_text(f"[az]\nhost={AZ_NAME}\nhostaddr=127.0.0.1\nport={fake.port}\n")
        monkeypatch.setenv("PGSERVICEFILE", str(service))
        wrapper = make_wrapper(HOST="", PORT="", OPTIONS={"service": "az"})
        with pytest.raises(OperationalError, match="SSL"):
            wrapper.ensure_connection()
    assert wrapper.get_connection_params()["sslmode"] == "verify-full"
    assert fake.passwords == []


@pytest.mark.integration
def test_opt_in_sends_over_plaintext(make_wrapper: MakeWrapper) -> None:
    with FakePostgres(cert=None) as fake:
        wrapper = _azure_alias(
            make_wrapper, fake.port, sslmode="disable", allow_plaintext_token=True
        )
        with pytest.raises(OperationalError, match="password authentication failed"):
            wrapper.ensure_connection()
    assert len(fake.passwords) == 1  # what the refusal prevents, when not opted in


@pytest.mark.integration
def test_loopback_with_sslmode_disable_still_works(make_wrapper: MakeWrapper) -> None:
    wrapper = make_wrapper(OPTIONS={"sslmode": "disable"})
    wrapper.ensure_connection()
    with wrapper.connection.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (False,)


# -- a real server with a certificate for an Azure name, signed by a test CA ----------

CA_NAME = "pgtest.postgres.database.azure.com"


@pytest.fixture(scope="module")
def ca_signed_postgres(
    emulator: IdentityEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalPostgres, Path]]:
    directory = tmp_path_factory.mktemp("ca")
    ca_crt, _, ca_cert, ca_key = make_ca(directory)
    cert = make_server_cert(directory, CA_NAME, issuer=(ca_cert, ca_key))
    with LocalPostgres(ldap_port=emulator.ldap_port, certificate=cert) as pg:
        pg.create_entra_role(ROLE)
        pg.create_database(ITEST_DB, owner=ROLE)
        yield pg, ca_crt


@pytest.mark.integration
def test_real_server_accepts_login_with_users_ca_and_no_sslmode(
    make_wrapper: MakeWrapper, ca_signed_postgres: tuple[LocalPostgres, Path], identity: Identity
) -> None:
    pg, ca_crt = ca_signed_postgres
    wrapper = make_wrapper(
        HOST=CA_NAME,
        PORT=str(pg.port),
        OPTIONS={"hostaddr": "127.0.0.1", "sslrootcert": str(ca_crt)},
    )
    wrapper.ensure_connection()
    with wrapper.connection.cursor() as cur:
        cur.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (ROLE, True)
    assert wrapper.get_connection_params()["sslmode"] == "verify-full"


@pytest.mark.integration
def test_real_server_with_unknown_ca_is_refused_by_default(
    make_wrapper: MakeWrapper,
    ca_signed_postgres: tuple[LocalPostgres, Path],
    emulator: IdentityEmulator,
) -> None:
    pg, _ = ca_signed_postgres
    logins = emulator.stats.logins_accepted + emulator.stats.logins_refused
    wrapper = make_wrapper(HOST=CA_NAME, PORT=str(pg.port), OPTIONS={"hostaddr": "127.0.0.1"})
    with pytest.raises(OperationalError, match="certificate verify failed"):
        wrapper.ensure_connection()
    assert emulator.stats.logins_accepted + emulator.stats.logins_refused == logins


PRIVATE_LINK = "pgtest.privatelink.postgres.database.azure.com"


@pytest.mark.integration
@pytest.mark.parametrize("dialled", ["hostaddr", "resolved", "service file"])
def test_private_link_name_is_verified_as_the_servers_own_name(
    make_wrapper: MakeWrapper,
    ca_signed_postgres: tuple[LocalPostgres, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dialled: str,
) -> None:
    """HOST = the private-link name; the certificate names <server>.postgres.database.azure.com
    (as Azure's does); verify-full, dialling the private address."""
    pg, ca_crt = ca_signed_postgres
    options: dict[str, Any] = {"sslrootcert": str(ca_crt)}
    host, port = PRIVATE_LINK, str(pg.port)
    looked_up: list[str] = []
    if dialled == "hostaddr":
        options["hostaddr"] = "127.0.0.1"
    elif dialled == "resolved":  # the private DNS zone's answer, without asking any DNS server
        monkeypatch.setattr(
            tls, "_address", lambda host, port: looked_up.append(host) or "127.0.0.1"
        )
    else:
        service = tmp_path / "pg_service.conf"
        service.write_text(f"[pl]\nhost={PRIVATE_LINK}\nhostaddr=127.0.0.1\nport={pg.port}\n")
        monkeypatch.setenv("PGSERVICEFILE", str(service))
        options["service"] = "pl"
        host = port = ""
    wrapper = make_wrapper(HOST=host, PORT=port, OPTIONS=options)
    wrapper.ensure_connection()
    with wrapper.connection.cursor() as cur:
        cur.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (ROLE, True)
    params = wrapper.get_connection_params()
    assert (params["host"], params["hostaddr"], params["sslmode"]) == (
        CA_NAME,
        "127.0.0.1",
        "verify-full",
    )
    if dialled == "resolved":
        assert looked_up and set(looked_up) == {PRIVATE_LINK}


@pytest.mark.integration
def test_private_link_name_without_the_rewrite_fails_verify_full(
    ca_signed_postgres: tuple[LocalPostgres, Path],
) -> None:
    """The control: libpq alone checks the private-link name, which the certificate lacks."""
    import psycopg

    pg, ca_crt = ca_signed_postgres
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(
            host=PRIVATE_LINK,
            hostaddr="127.0.0.1",
            port=pg.port,
            dbname=ITEST_DB,
            user=ROLE,
            sslmode="verify-full",
            sslrootcert=str(ca_crt),
            connect_timeout=5,
        )


# -- dbshell: psql gets the same mode and root file -----------------------------------


@pytest.mark.integration
def test_dbshell_gets_the_same_tls_settings(
    make_wrapper: MakeWrapper, monkeypatch: pytest.MonkeyPatch, emulator: IdentityEmulator
) -> None:
    wrapper = make_wrapper(HOST=AZ_NAME, PORT="5432", OPTIONS={"hostaddr": "127.0.0.1"})
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(wrapper.client, "_run", lambda args, env: calls.append((args, env or {})))
    wrapper.client.runshell([])
    args, env = calls[0]
    from psycopg.conninfo import conninfo_to_dict

    conninfo = conninfo_to_dict(args[1])  # one connection string: it outranks every file
    assert conninfo["sslmode"] == "verify-full"
    assert conninfo["sslrootcert"] == tls.azure_roots()
    assert conninfo["hostaddr"] == "127.0.0.1"
    assert conninfo["host"] == AZ_NAME
    assert env == {"PGPASSWORD": env["PGPASSWORD"]}
    assert env["PGPASSWORD"] in emulator.issued_tokens()
    assert all(env["PGPASSWORD"] not in arg for arg in args)

    plain = make_wrapper(HOST=AZ_NAME, OPTIONS={"sslmode": "prefer", "hostaddr": "127.0.0.1"})
    before = emulator.stats.token_requests
    with pytest.raises(tls.InsecureTransport, match="refusing"):
        plain.client.runshell([])
    assert emulator.stats.token_requests == before


@pytest.mark.integration
def test_doctor_shows_the_address_actually_dialled(
    add_alias: Any, identity: Identity, postgres: LocalPostgres
) -> None:
    from io import StringIO

    from django.core.management import call_command

    add_alias(
        "dialled",
        HOST="db.example.test",  # a name that resolves nowhere: only hostaddr is dialled
        NAME=ITEST_DB,
        USER=ROLE,
        # Not an Azure name: verify-full by default; this test server is self-signed.
        OPTIONS={"client_id": identity.client_id, "hostaddr": "127.0.0.1", "sslmode": "require"},
    )
    out = StringIO()
    call_command("azure_pg_doctor", "--database", "dialled", stdout=out)
    text = out.getvalue()
    assert "dials: host 'db.example.test' dialled at 127.0.0.1" in text
    assert f"server_address: 127.0.0.1:{postgres.port}" in text
    assert "sslmode: require" in text


@pytest.mark.integration
def test_refused_login_log_names_the_route(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Local (name and address), so a refused token may be followed by a fresh one.
    wrapper = make_wrapper(HOST="localhost", OPTIONS={"hostaddr": "127.0.0.1"})
    wrapper.ensure_connection()
    wrapper.close()
    emulator.revoke_all()
    with caplog.at_level("WARNING", logger="django_azure_pg._core.login"):
        wrapper.ensure_connection()
    assert "host 'localhost' dialled at 127.0.0.1, sslmode=require" in caplog.text


def test_verify_ca_is_not_verification_for_azure_hosts() -> None:
    """With Azure's public roots, verify-ca accepts any certificate those CAs issued, for any
    name: no second token after a refusal, and W002 says why."""
    azure = tls.resolve({"host": "srv.postgres.database.azure.com", "sslmode": "verify-ca"}, {})
    assert not azure.verified and not azure.retry_safe
    own = tls.resolve({"host": "db.internal.example", "sslmode": "verify-ca"}, {})
    assert own.verified  # a private CA of the user's own
    full = tls.resolve({"host": "srv.postgres.database.azure.com", "sslmode": "verify-full"}, {})
    assert full.verified and full.retry_safe


def test_sslrootcert_system_is_never_given_a_weaker_sslmode() -> None:
    """libpq's own default with ``sslrootcert=system`` is verify-full, and it refuses a
    weaker sslmode with it."""
    for token in (True, False):
        for host in ("127.0.0.1", "db.contoso.test"):
            params = written({"host": host, "sslrootcert": "system"}, {}, token=token)
            assert params["sslmode"] == "verify-full", (host, token)

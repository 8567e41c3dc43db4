"""One route policy for every path a token takes (issue 22): each finding, against a
fake server that records every password it receives — 0 tokens captured in each case.

Run with SSL_CERT_FILE / SSL_CERT_DIR unset, as in users' containers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connections
from psycopg import pq

from django_azure_pg import _checks, env
from django_azure_pg._core import options, tls
from django_azure_pg.management import _doctor
from django_azure_pg.mixin import _HAS_POOL
from django_azure_pg_testing import Identity, IdentityEmulator
from django_azure_pg_testing.certs import make_ca, make_server_cert

from .conftest import ITEST_DB, ROLE, MakeWrapper
from .fake_pg import FakePostgres

AZ = "victim.postgres.database.azure.com"
SYSCONFDIR = Path("/etc/postgresql-common")
"""The psycopg binary wheel's compiled-in sysconfdir (AZURE_FACTS, 2026-12-02)."""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSERVICE",
        "PGSYSCONFDIR",
        "PGHOST",
        "PGHOSTADDR",
    ):
        monkeypatch.delenv(name, raising=False)
    # Not ~/.pg_service.conf: a file of this test's own (empty unless a test writes it).
    (tmp_path / "pg_service.conf").write_text("")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "pg_service.conf"))


@pytest.fixture
def mitm_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the Azure name: what a man-in-the-middle can make."""
    return make_server_cert(tmp_path, AZ)


def _service_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "pg_service.conf").write_text(text)


# -- 1. a service file in libpq's compiled-in sysconfdir ---------------------------------


@pytest.fixture
def sysconf_service() -> Iterator[Callable[[str], None]]:
    """Write libpq's own ``<sysconfdir>/pg_service.conf`` for one test (never over one that exists)."""
    if pq.__impl__ != "binary":
        pytest.skip("the compiled-in sysconfdir checked here is the psycopg binary wheel's")
    target = SYSCONFDIR / "pg_service.conf"
    if not SYSCONFDIR.is_dir() or not os.access(SYSCONFDIR, os.W_OK) or target.exists():
        pytest.skip(f"cannot place a service file at {target}")
    yield target.write_text
    target.unlink(missing_ok=True)


@pytest.mark.integration
def test_1_service_in_libpqs_own_sysconfdir_keeps_its_verify_full(
    make_wrapper: MakeWrapper, sysconf_service: Callable[[str], None], tmp_path: Path
) -> None:
    ca_crt, _, ca_cert, ca_key = make_ca(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_server_cert(tmp_path / "other", "other.example.test", issuer=(ca_cert, ca_key))
    name = f"azsys{uuid.uuid4().hex[:8]}"
    with FakePostgres(other) as fake:
        sysconf_service(
            f"[{name}]\nhost={AZ}\nhostaddr=127.0.0.1\nport={fake.port}\n"
            f"sslmode=verify-full\nsslrootcert={ca_crt}\n"
        )
        wrapper = make_wrapper(HOST="", PORT="", OPTIONS={"service": name})
        route = tls.resolve(wrapper.get_connection_params())
        with pytest.raises(OperationalError, match="does not match host name"):
            wrapper.ensure_connection()
    assert fake.passwords == []
    assert (route.hosts, route.sslmode, route.sslrootcert) == ((AZ,), "verify-full", str(ca_crt))
    assert route.host_from == "service file in libpq's sysconfdir"


def test_1_a_service_libpq_cannot_find_is_refused_before_a_token(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    before = emulator.stats.token_requests
    wrapper = make_wrapper(HOST="", PORT="", OPTIONS={"service": f"ghost{uuid.uuid4().hex}"})
    with pytest.raises(OperationalError, match="libpq cannot use these connection settings"):
        wrapper.ensure_connection()
    assert emulator.stats.token_requests == before


def test_libpq_is_asked_without_dialling() -> None:
    with FakePostgres(cert=None) as fake:
        view, _ = tls.libpq_view({"host": "127.0.0.1", "port": fake.port, "sslmode": "disable"})
    assert view is not None and view["sslmode"] == "disable" and view["port"] == str(fake.port)
    assert fake.connections == 0


class CountingPGconn:
    """``pq.PGconn`` with ``connect_start`` counted (libpq asked for a route)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = pq.PGconn.connect_start

    def connect_start(self, conninfo: bytes) -> Any:
        self.calls += 1
        return self._real(conninfo)


@pytest.fixture
def libpq_asked(monkeypatch: pytest.MonkeyPatch) -> CountingPGconn:
    counting = CountingPGconn()
    monkeypatch.setattr(tls.pq, "PGconn", counting)
    monkeypatch.setattr(tls, "_VIEWS", {})
    return counting


def test_libpq_is_asked_once_per_parameters_and_environment(
    libpq_asked: CountingPGconn, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"host": "127.0.0.1", "port": 5999, "sslmode": "require", "password": "p1"}
    first, _ = tls.libpq_view(params)
    again, _ = tls.libpq_view({**params, "password": "p2"})  # a new token: the same route
    assert libpq_asked.calls == 1 and first == again
    assert first is not None
    first["sslmode"] = "disable"  # a caller's change never reaches the kept answer
    assert tls.libpq_view(params)[0]["sslmode"] == "require"  # type: ignore[index]
    # Any change libpq would see is asked again: a parameter, a PG* variable, HOME.
    assert tls.libpq_view({**params, "port": 5998})[0]["port"] == "5998"  # type: ignore[index]
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.setenv("PGSSLROOTCERT", "/nonexistent/root.crt")
    assert tls.libpq_view({"host": "127.0.0.1"})[0]["sslrootcert"] == "/nonexistent/root.crt"  # type: ignore[index]
    monkeypatch.setenv("PGSSLROOTCERT", "/elsewhere/root.crt")
    assert tls.libpq_view({"host": "127.0.0.1"})[0]["sslrootcert"] == "/elsewhere/root.crt"  # type: ignore[index]
    assert libpq_asked.calls == 4


@pytest.mark.parametrize("named_in", ["settings", "PGSERVICE"])
def test_with_a_service_libpq_is_asked_every_time(
    libpq_asked: CountingPGconn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named_in: str
) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text("[svc]\nhost=127.0.0.1\nsslmode=require\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    params: dict[str, Any] = {"service": "svc"}
    if named_in == "PGSERVICE":
        monkeypatch.setenv("PGSERVICE", "svc")
        params = {}
    assert tls.libpq_view(params)[0]["sslmode"] == "require"  # type: ignore[index]
    services.write_text("[svc]\nhost=127.0.0.1\nsslmode=verify-full\n")  # edited on disk
    assert tls.libpq_view(params)[0]["sslmode"] == "verify-full"  # type: ignore[index]
    assert libpq_asked.calls == 2


# -- 3. non-Azure names and addresses ------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("host", ["db.contoso.test", "10.0.0.4"])
def test_3_non_azure_host_gets_verify_full_and_a_fix(
    make_wrapper: MakeWrapper, tmp_path: Path, host: str
) -> None:
    cert = make_server_cert(tmp_path, host)  # self-signed, for that very name
    with FakePostgres(cert) as fake:
        wrapper = make_wrapper(HOST=host, PORT=str(fake.port), OPTIONS={"hostaddr": "127.0.0.1"})
        with pytest.raises(OperationalError) as info:
            wrapper.ensure_connection()
    assert fake.passwords == []
    assert wrapper.get_connection_params()["sslmode"] == "verify-full"
    message = str(info.value)
    assert "no access token was sent" in message
    assert ".postgres.database.azure.com" in message and "hostaddr" in message
    assert "sslrootcert" in message


@pytest.mark.integration
def test_3_explicit_require_to_a_non_azure_host_is_kept_and_warned(
    make_wrapper: MakeWrapper, tmp_path: Path, identity: Identity
) -> None:
    host = "db.contoso.test"
    with FakePostgres(make_server_cert(tmp_path, host)) as fake:
        opts = {"hostaddr": "127.0.0.1", "sslmode": "require"}
        wrapper = make_wrapper(HOST=host, PORT=str(fake.port), OPTIONS=opts)
        with pytest.raises(OperationalError, match="password authentication failed"):
            wrapper.ensure_connection()
    assert len(fake.passwords) == 1  # the control: what the default prevents
    entry = {"HOST": host, "OPTIONS": {"client_id": identity.client_id, **opts}}
    ids = [m.id for m in _checks.check_alias("x", entry, os.environ)]
    assert "django_azure_pg.W002" in ids
    entry["OPTIONS"].pop("sslmode")
    assert "django_azure_pg.W002" not in [m.id for m in _checks.check_alias("x", entry, os.environ)]


def test_3_password_logins_and_this_machine_keep_require() -> None:
    assert tls.apply_defaults({"host": "db.contoso.test"}, token=False)["sslmode"] == "require"
    assert tls.apply_defaults({"host": "127.0.0.1"})["sslmode"] == "require"
    assert tls.apply_defaults({"host": "db.contoso.test"})["sslmode"] == "verify-full"


# -- 4. dbshell ------------------------------------------------------------------------------

needs_psql = pytest.mark.skipif(shutil.which("psql") is None, reason="psql not installed")


def _psql(wrapper: Any) -> None:
    with pytest.raises((subprocess.CalledProcessError, OperationalError)):
        wrapper.client.runshell(["-w", "-At", "-c", "SELECT 1"])


@pytest.mark.integration
@needs_psql
def test_4a_dbshell_settings_outrank_a_weaker_service_file(
    make_wrapper: MakeWrapper, tmp_path: Path
) -> None:
    with FakePostgres(cert=None) as fake:
        _service_file(
            tmp_path,
            f"[dsvc]\nhost={AZ}\nhostaddr=127.0.0.1\nport={fake.port}\nsslmode=disable\n",
        )
        wrapper = make_wrapper(HOST="", PORT="", OPTIONS={"service": "dsvc", "sslmode": "require"})
        with pytest.raises(OperationalError):  # the app refuses: no TLS on offer
            wrapper.ensure_connection()
        _psql(wrapper)
    assert fake.passwords == []


@pytest.mark.integration
@needs_psql
def test_4b_dbshell_never_expands_name(
    make_wrapper: MakeWrapper, mitm_cert: tuple[Path, Path]
) -> None:
    with FakePostgres(cert=None) as plain, FakePostgres(mitm_cert) as mitm:
        name = f"host=127.0.0.1 port={plain.port} sslmode=disable dbname=x"
        wrapper = make_wrapper(
            HOST=AZ, PORT=str(mitm.port), NAME=name, OPTIONS={"hostaddr": "127.0.0.1"}
        )
        _psql(wrapper)
    assert plain.passwords == [] and mitm.passwords == []
    assert plain.connections == 0


# -- 5. service-file parsing as libpq does it ----------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "body",
    [
        # the first of a repeated key wins
        f"[dup]\nhost={AZ}\nhost=localhost\nhostaddr=127.0.0.1\nport={{port}}\nsslmode=disable\n",
        # the first of a repeated section wins
        f"[dup]\nhost={AZ}\nhostaddr=127.0.0.1\nport={{port}}\nsslmode=disable\n"
        "[dup]\nhost=localhost\n",
    ],
    ids=["key", "section"],
)
def test_5_first_of_a_repeated_key_or_section_wins(
    make_wrapper: MakeWrapper, tmp_path: Path, body: str
) -> None:
    with FakePostgres(cert=None) as fake:
        _service_file(tmp_path, body.format(port=fake.port))
        wrapper = make_wrapper(HOST="", PORT="", OPTIONS={"service": "dup"})
        with pytest.raises(OperationalError, match="refusing to send an access token"):
            wrapper.ensure_connection()
    assert fake.passwords == [] and fake.connections == 0
    # The model used for messages reads it the same way.
    route = tls.resolve({"service": "dup"}, {"PGSERVICEFILE": str(tmp_path / "pg_service.conf")})
    assert route.hosts == (AZ,)


# -- 6. the pool's conninfo ------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.skipif(not _HAS_POOL, reason="Django's native pool needs 5.1+")
def test_6_pool_conninfo_is_part_of_the_route(make_wrapper: MakeWrapper) -> None:
    with FakePostgres(cert=None) as fake:
        conninfo = f"host={AZ} hostaddr=127.0.0.1 port={fake.port}"
        wrapper = make_wrapper(
            HOST="",
            PORT="",
            OPTIONS={
                "sslmode": "disable",  # harmless for the local socket Django's own params name
                "pool": {"conninfo": conninfo, "min_size": 1, "timeout": 2},
            },
        )
        with pytest.raises(OperationalError, match="refusing to send an access token"):
            wrapper.ensure_connection()
        entry = {"HOST": "", "OPTIONS": dict(wrapper.settings_dict["OPTIONS"])}
        ids = [m.id for m in _checks.check_alias("x", entry, os.environ)]
    assert fake.passwords == []
    assert "django_azure_pg.E006" in ids  # manage.py check sees the same route


@pytest.mark.integration
@pytest.mark.skipif(not _HAS_POOL, reason="Django's native pool needs 5.1+")
def test_8_pool_refusal_reaches_the_caller_as_itself(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    before = emulator.stats.token_requests
    with FakePostgres(cert=None) as fake:
        wrapper = make_wrapper(
            HOST=AZ,
            PORT=str(fake.port),
            OPTIONS={"hostaddr": "127.0.0.1", "sslmode": "prefer", "pool": {"timeout": 2}},
        )
        with pytest.raises(OperationalError, match="refusing to send an access token"):
            wrapper.ensure_connection()
    assert fake.passwords == [] and emulator.stats.token_requests == before


# -- 7. token_scope ------------------------------------------------------------------------------


@pytest.mark.integration
def test_7_a_token_for_another_service_is_never_fetched(
    make_wrapper: MakeWrapper, mitm_cert: tuple[Path, Path], emulator: IdentityEmulator
) -> None:
    before = emulator.stats.token_requests
    with FakePostgres(mitm_cert) as fake:
        wrapper = make_wrapper(
            HOST=AZ,
            PORT=str(fake.port),
            OPTIONS={
                "hostaddr": "127.0.0.1",
                "sslmode": "require",  # unverified: the scope check is all that stands
                "token_scope": "https://management.azure.com/.default",
            },
        )
        with pytest.raises(ImproperlyConfigured, match="token_scope"):
            wrapper.ensure_connection()
    assert fake.passwords == [] and emulator.stats.token_requests == before


def test_7_known_scopes_and_the_documented_opt_in() -> None:
    for scope in ("public", "china", "usgov", "https://ossrdbms-aad.database.windows.net/.default"):
        assert options.problems({"token_scope": scope}) == []
    custom = "https://ossrdbms-aad.example.test/.default"
    assert [p.key for p in options.problems({"token_scope": custom})] == ["token_scope"]
    assert options.problems({"token_scope": custom, "allow_custom_token_scope": True}) == []


# -- 8. the small ones ---------------------------------------------------------------------------


@pytest.mark.integration
def test_8_doctor_reports_a_session_dropped_after_login(
    add_alias: Callable[..., str], identity: Identity
) -> None:
    with FakePostgres(cert=None, accept=True) as fake:
        alias = add_alias(
            "dropped",
            HOST="127.0.0.1",
            PORT=str(fake.port),
            NAME=ITEST_DB,
            USER=ROLE,
            OPTIONS={"client_id": identity.client_id, "sslmode": "disable"},
        )
        report = _doctor.run(alias, dict(connections.settings[alias]))
    assert len(fake.passwords) == 1  # it logged in (loopback, so plaintext is allowed)
    last = report.steps[-1]
    assert (last.name, last.status) == ("connect", "fail")
    assert last.detail["error"]
    assert fake.passwords[0] not in str(report.as_dict())


@pytest.mark.integration
def test_8_allow_plaintext_token_none_means_unset(make_wrapper: MakeWrapper) -> None:
    assert options.problems({"allow_plaintext_token": None}) == []
    with FakePostgres(cert=None) as fake:
        wrapper = make_wrapper(
            HOST=AZ,
            PORT=str(fake.port),
            OPTIONS={"hostaddr": "127.0.0.1", "sslmode": "disable", "allow_plaintext_token": None},
        )
        with pytest.raises(OperationalError, match="refusing to send an access token"):
            wrapper.ensure_connection()
    assert fake.passwords == []


@pytest.mark.integration
@pytest.mark.parametrize("written", ["REQUIRE", "Require", "require"])
def test_8_from_env_reads_sslmode_require_in_any_case(
    make_wrapper: MakeWrapper, mitm_cert: tuple[Path, Path], identity: Identity, written: str
) -> None:
    with FakePostgres(mitm_cert) as fake:
        conninfo = (
            f"dbname={ITEST_DB} host={AZ} hostaddr=127.0.0.1 port={fake.port} "
            f"sslmode={written} user={ROLE}"
        )
        entry = env.from_env(environ={"AZURE_POSTGRESQL_CONNECTIONSTRING": conninfo})
        assert "sslmode" not in entry["OPTIONS"]
        wrapper = make_wrapper(
            HOST=entry["HOST"], PORT=entry["PORT"], NAME=entry["NAME"], OPTIONS=entry["OPTIONS"]
        )
        with pytest.raises(OperationalError, match="certificate verify failed"):
            wrapper.ensure_connection()
    assert fake.passwords == []


# -- the kept settlement (tls.settle): the route of the same parameters, once -------------


def _settled(params: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], tls.Route]:
    written = dict(params)
    route = tls.settle(written, **kwargs)
    written.pop("password", None)
    return written, route


def test_a_settlement_is_kept_per_parameters_and_environment(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"host": AZ, "port": 5432, "dbname": "app", "password": "token-1"}
    first = _settled(params)
    assert first[0]["sslmode"] == "verify-full" and first[0]["sslrootcert"] == tls.azure_roots()
    assert _settled({**params, "password": "token-2"}) == first  # a new token: the same route
    assert len(resolutions) == 1
    monkeypatch.setenv("PGAPPNAME", "another")  # not among the route's variables: kept
    assert _settled(params) == first and len(resolutions) == 1
    # Whatever the route depends on is judged afresh: a parameter, a variable, the login kind.
    _settled({**params, "port": 6432})
    assert len(resolutions) == 2
    monkeypatch.setenv("PGSSLMODE", "verify-ca")
    assert _settled(params)[0]["sslmode"] == "verify-ca"
    monkeypatch.delenv("PGSSLMODE")
    other = {"host": "db.example.com", "password": "p"}
    assert _settled(other, token=True)[0]["sslmode"] == "verify-full"
    assert _settled(other, token=False)[0]["sslmode"] == "require"
    assert len(resolutions) == 5
    assert _settled(params) == first and len(resolutions) == 5  # back as it was: kept


def test_the_default_root_file_is_looked_for_again(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """libpq's own default, ~/.postgresql/root.crt, beats the bundled roots once it exists."""
    monkeypatch.setenv("HOME", str(tmp_path))
    params = {"host": AZ}
    assert _settled(params)[0]["sslrootcert"] == tls.azure_roots()
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_text("")
    assert "sslrootcert" not in _settled(params)[0]
    assert "sslrootcert" not in _settled(params)[0]
    assert len(resolutions) == 2


@pytest.mark.parametrize("named_in", ["HOST", "PGHOST"])
def test_a_private_link_name_is_looked_up_for_every_connection(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, named_in: str
) -> None:
    looked_up: list[str] = []
    answers = iter(["10.0.0.5", "10.0.0.6"])  # the private endpoint moved
    monkeypatch.setattr(tls, "_address", lambda host, port: looked_up.append(host) or next(answers))
    name = "srv.privatelink.postgres.database.azure.com"
    params = {"host": name}
    if named_in == "PGHOST":
        monkeypatch.setenv("PGHOST", name)
        params = {}
    assert _settled(params)[0]["hostaddr"] == "10.0.0.5"
    assert _settled(params)[0]["hostaddr"] == "10.0.0.6"
    assert len(looked_up) == 2
    # Worked out afresh each time: from PGHOST, once more after HOST is written.
    assert len(resolutions) == (2 if named_in == "HOST" else 4)


def test_a_private_link_name_that_did_not_resolve_is_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter([None, "10.0.0.5"])  # DNS fails once, then answers
    monkeypatch.setattr(tls, "_address", lambda host, port: next(answers))
    params = {"host": "srv.privatelink.postgres.database.azure.com"}
    assert "hostaddr" not in _settled(params)[0]  # libpq will say the name does not resolve
    again = _settled(params)[0]
    assert (again["host"], again["hostaddr"]) == ("srv.postgres.database.azure.com", "10.0.0.5")


def test_nothing_is_kept_when_the_environment_changed_meanwhile(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread sets PGSSLMODE while a settlement is worked out: the outcome may be
    the new environment's, so it is not kept under the old one's key."""
    real = tls._settle

    def changing(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setenv("PGSSLMODE", "disable")
        return real(*args, **kwargs)

    monkeypatch.setattr(tls, "_settle", changing)
    params = {"host": "127.0.0.1"}
    assert _settled(params)[0]["sslmode"] == "disable"
    monkeypatch.delenv("PGSSLMODE")
    monkeypatch.setattr(tls, "_settle", real)
    assert _settled(params)[0]["sslmode"] == "require"
    assert len(resolutions) == 2


def test_a_refusal_by_libpq_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal may come from what the key leaves out: libpq is asked again next time."""
    real = tls._ask_libpq
    answers = iter([(None, "libpq said no"), None])

    def asked(given: dict[str, Any]) -> tuple[dict[str, str] | None, str]:
        return next(answers) or real(given)

    monkeypatch.setattr(tls, "_ask_libpq", asked)
    assert tls.libpq_view({"host": "127.0.0.1"}) == (None, "libpq said no")
    assert tls.libpq_view({"host": "127.0.0.1"})[0] is not None


@pytest.mark.parametrize("named_in", ["settings", "PGSERVICE"])
def test_with_a_service_the_route_is_worked_out_every_time(
    resolutions: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    named_in: str,
) -> None:
    params: dict[str, Any] = {"service": "svc"}
    if named_in == "PGSERVICE":
        monkeypatch.setenv("PGSERVICE", "svc")
        params = {}
    _service_file(tmp_path, "[svc]\nhost=127.0.0.1\nsslmode=require\n")
    assert _settled(params)[0]["sslmode"] == "require"
    _service_file(tmp_path, "[svc]\nhost=127.0.0.1\nsslmode=disable\n")  # edited on disk
    assert _settled(params)[0]["sslmode"] == "disable"
    assert len(resolutions) == 2


def test_a_what_if_environment_is_never_kept(resolutions: list[dict[str, Any]]) -> None:
    params = {"host": "db.example.com"}
    assert _settled(params, environ={"PGSSLMODE": "require"})[0]["sslmode"] == "require"
    assert _settled(params, environ={})[0]["sslmode"] == "verify-full"
    assert len(resolutions) == 2

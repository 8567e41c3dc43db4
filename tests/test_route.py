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

from django_azure_pg import _checks, env, errors
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
        route = tls.route_of(wrapper.get_connection_params())
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
    return counting


def test_libpq_is_asked_once_per_alias(libpq_asked: CountingPGconn) -> None:
    params = {"host": "127.0.0.1", "port": 5999, "sslmode": "require", "password": "p1"}
    first = tls.routed(params, alias="a")
    again = tls.routed({**params, "password": "p2"}, alias="a")  # a new token
    assert libpq_asked.calls == 1 and first.route == again.route
    tls.routed(params, alias="b")  # another alias decides for itself
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
    assert _pinned({"host": "db.contoso.test"}, token=False)[0]["sslmode"] == "require"
    assert _pinned({"host": "127.0.0.1"})[0]["sslmode"] == "require"
    assert _pinned({"host": "db.contoso.test"})[0]["sslmode"] == "verify-full"


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


# -- the pinned route: decided once per alias, written out explicitly ------------------


def _pinned(
    params: dict[str, Any], alias: str = "a", **kwargs: Any
) -> tuple[dict[str, Any], tls.Route]:
    found = tls.routed(params, alias=alias, **kwargs)
    written = dict(found)
    written.pop("password", None)
    return written, found.route


HOSTILE = {
    "PGHOST": "evil.example.com",
    "PGHOSTADDR": "10.66.6.6",
    "PGPORT": "6666",
    "PGSSLMODE": "disable",
    "PGSSLROOTCERT": "/evil/root.crt",
}


def test_a_route_is_decided_once_per_alias_and_parameters(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"host": AZ, "port": 5432, "dbname": "app", "password": "token-1"}
    first = _pinned(params)
    assert first[0]["sslmode"] == "verify-full" and first[0]["sslrootcert"] == tls.azure_roots()
    assert _pinned({**params, "password": "token-2"}) == first  # a new token: the same route
    for name, value in HOSTILE.items():  # nothing outside the settings moves it
        monkeypatch.setenv(name, value)
    assert _pinned(params) == first
    assert len(resolutions) == 1
    # Other settings, another alias or another login kind decide for themselves.
    _pinned({**params, "port": 6432})
    _pinned(params, alias="other")
    _pinned(params, token=False)
    assert len(resolutions) == 4
    assert _pinned(params, alias="other")[0]["sslmode"] == "disable"  # decided with PGSSLMODE
    assert _pinned(params) == first and len(resolutions) == 4


@pytest.mark.parametrize("host", [AZ, "127.0.0.1", ""])
def test_every_key_of_the_route_is_written_and_beats_the_environment(
    host: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    written, _ = _pinned({"host": host})
    assert set(tls._ROUTE_KEYS) <= set(written)
    assert written["hostaddr"] == ""  # explicitly empty: PGHOSTADDR cannot add one
    view, _ = tls.libpq_view(written)
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    assert tls.libpq_view(written) == (view, "")  # what libpq uses, in the new environment


def test_the_root_file_is_decided_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """libpq's own default, ~/.postgresql/root.crt, beats the bundled roots where it exists
    when the route is decided; HOME or the file changing later moves nothing."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _pinned({"host": AZ})[0]["sslrootcert"] == tls.azure_roots()
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_text("")
    assert _pinned({"host": AZ})[0]["sslrootcert"] == tls.azure_roots()
    mine = str(tmp_path / ".postgresql" / "root.crt")
    assert _pinned({"host": AZ}, alias="later")[0]["sslrootcert"] == mine
    assert _pinned({"host": "127.0.0.1"})[0]["sslrootcert"] == mine  # libpq's default, spelled out
    monkeypatch.setenv("HOME", "/elsewhere")
    assert _pinned({"host": "127.0.0.1"})[0]["sslrootcert"] == mine


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
    first, route = _pinned(params)
    assert (first["host"], first["hostaddr"]) == ("srv.postgres.database.azure.com", "10.0.0.5")
    assert route.hostaddrs == ("10.0.0.5",)
    again, route = _pinned(params)
    assert again["hostaddr"] == "10.0.0.6" and route.hostaddrs == ("10.0.0.6",)
    assert len(looked_up) == 2
    # Decided once: from PGHOST, once more after HOST is written.
    assert len(resolutions) == (1 if named_in == "HOST" else 2)


def test_a_private_link_name_that_did_not_resolve_is_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter([None, "10.0.0.5"])  # DNS fails once, then answers
    monkeypatch.setattr(tls, "_address", lambda host, port: next(answers))
    params = {"host": "srv.privatelink.postgres.database.azure.com"}
    failed = _pinned(params)[0]  # libpq will say the name does not resolve
    assert (failed["host"], failed["hostaddr"]) == (params["host"], "")
    again = _pinned(params)[0]
    assert (again["host"], again["hostaddr"]) == ("srv.postgres.database.azure.com", "10.0.0.5")


def test_settings_libpq_refuses_are_not_pinned(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is known about where such settings go: decided again next time."""
    real = tls._ask_libpq
    answers = iter([(None, "libpq said no"), None])

    def asked(given: dict[str, Any]) -> tuple[dict[str, str] | None, str]:
        return next(answers) or real(given)

    monkeypatch.setattr(tls, "_ask_libpq", asked)
    assert _pinned({"host": "127.0.0.1"})[1].unresolved_service
    assert not _pinned({"host": "127.0.0.1"})[1].unresolved_service
    assert len(resolutions) == 2


@pytest.mark.parametrize(
    "named_in", ["settings", "PGSERVICE", "empty in settings", "empty PGSERVICE"]
)
def test_a_service_is_read_once_when_the_route_is_decided(
    resolutions: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    named_in: str,
) -> None:
    """An empty name is a service too: libpq reads the file's ``[]`` section."""
    name = "" if named_in.startswith("empty") else "svc"
    params: dict[str, Any] = {"service": name}
    if named_in.endswith("PGSERVICE"):
        monkeypatch.setenv("PGSERVICE", name)
        params = {}
    _service_file(tmp_path, f"[{name}]\nhost=127.0.0.1\nsslmode=disable\n")
    first = _pinned(params)
    assert (first[0]["host"], first[0]["sslmode"], first[1].local) == ("127.0.0.1", "disable", True)
    _service_file(tmp_path, f"[{name}]\nhost=db.contoso.test\nsslmode=disable\n")  # edited
    assert _pinned(params) == first and len(resolutions) == 1
    assert tls.libpq_view(_pinned(params)[0])[0]["host"] == "127.0.0.1"  # type: ignore[index]
    # Decided afresh (a restart), the same settings are refused for a token.
    fresh = _pinned(params, alias="restarted")[1]
    assert fresh.hosts == ("db.contoso.test",) and tls.refusal(fresh, "restarted")


def test_a_what_if_environment_is_never_pinned(resolutions: list[dict[str, Any]]) -> None:
    params = {"host": "db.example.com"}
    assert _pinned(params, environ={"PGSSLMODE": "require"})[0]["sslmode"] == "require"
    assert _pinned(params, environ={})[0]["sslmode"] == "verify-full"
    assert len(resolutions) == 2


# -- "local" is an address, never a name DNS may answer ------------------------------------


@pytest.mark.parametrize("sslmode", ["disable", None])
def test_localhost_with_a_trailing_dot_gets_no_token(
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    mitm_cert: tuple[Path, Path],
    sslmode: str | None,
) -> None:
    """glibc does not match ``localhost.`` in the hosts file: DNS answers it."""
    before = emulator.stats.token_requests
    with FakePostgres(cert=mitm_cert if sslmode is None else None) as fake:
        options = {} if sslmode is None else {"sslmode": sslmode}
        wrapper = make_wrapper(HOST="localhost.", PORT=str(fake.port), OPTIONS=options)
        with pytest.raises(OperationalError):
            wrapper.ensure_connection()
    assert fake.passwords == []
    if sslmode is not None:
        assert emulator.stats.token_requests == before  # refused before a token


def test_localhost_is_local_only_through_the_hosts_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    monkeypatch.setattr(tls, "HOSTS_FILE", str(hosts))
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    assert tls.resolve({"host": "localhost"}, {}).local
    assert not tls.resolve({"host": "localhost."}, {}).local
    hosts.write_text("# an image without the line\n10.0.0.1 db\n")
    assert not tls.resolve({"host": "localhost"}, {}).local
    hosts.write_text("127.0.0.1 localhost\n10.1.1.1 localhost\n")  # not only loopback
    assert not tls.resolve({"host": "localhost"}, {}).local
    assert _pinned({"host": "localhost"})[0]["sslmode"] == "verify-full"


# -- what moved the route after the first connection, through the ENGINE ------------------


def _reach_fake_after_first_login(
    wrapper: Any, fake: FakePostgres, move: Callable[[], None], *, pooled: bool = False
) -> None:
    """Log in once, ``move`` the environment or service file to ``fake``, log in again."""
    if pooled:
        pool = wrapper.pool
        pool.open(wait=True)
        held = pool.getconn()
        move()
        second = pool.getconn()  # a new physical connection
        pool.putconn(second)
        pool.putconn(held)
        return
    wrapper.ensure_connection()
    wrapper.close()
    move()
    wrapper.ensure_connection()
    wrapper.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("named_in", "pooled"),
    [
        ("settings", False),
        ("empty in settings", False),
        ("empty PGSERVICE", False),
        ("settings", True),
    ],
)
def test_a_service_file_edited_later_moves_no_token(
    make_wrapper: MakeWrapper,
    postgres: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    named_in: str,
    pooled: bool,
) -> None:
    if pooled and not _HAS_POOL:
        pytest.skip("Django's native pool needs 5.1+")
    name = "" if named_in.startswith("empty") else "svc"
    options: dict[str, Any] = {"service": name}
    if named_in.endswith("PGSERVICE"):
        monkeypatch.setenv("PGSERVICE", name)
        options = {}
    if pooled:
        options["pool"] = {"min_size": 1, "max_size": 2}
    _service_file(tmp_path, f"[{name}]\nhost=127.0.0.1\nport={postgres.port}\n")
    wrapper = make_wrapper(HOST="", PORT="", OPTIONS=options)
    with FakePostgres(cert=None) as fake:

        def move() -> None:  # to a host that takes plaintext, as the local one did
            _service_file(
                tmp_path,
                f"[{name}]\nhost=db.contoso.test\nhostaddr=127.0.0.1\nport={fake.port}\n"
                "sslmode=require\n",
            )

        _reach_fake_after_first_login(wrapper, fake, move, pooled=pooled)
    assert fake.connections == 0 and fake.passwords == []


@pytest.mark.integration
def test_the_c_environment_changed_later_moves_no_token(
    make_wrapper: MakeWrapper, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.putenv`` (ctypes, a C extension) changes what libpq reads, not ``os.environ``."""
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(postgres.port))
    monkeypatch.setenv("PGHOSTADDR", "127.0.0.1")
    wrapper = make_wrapper(HOST="", PORT="")
    with FakePostgres(cert=None) as fake:

        def move() -> None:
            os.putenv("PGHOST", "db.contoso.test")
            os.putenv("PGPORT", str(fake.port))
            os.putenv("PGSSLMODE", "disable")

        try:
            _reach_fake_after_first_login(wrapper, fake, move)
        finally:
            os.unsetenv("PGSSLMODE")
    assert fake.connections == 0 and fake.passwords == []


# -- a silent host: a connect timeout by default, and a message that names it ---------------


@pytest.mark.parametrize(
    ("given", "env", "service", "expected"),
    [
        ({}, {}, "", str(tls.CONNECT_TIMEOUT)),
        ({"connect_timeout": "3"}, {}, "", "3"),
        ({}, {"PGCONNECT_TIMEOUT": "4"}, "", "4"),
        ({"service": "svc"}, {}, "[svc]\nconnect_timeout=5\n", "5"),
    ],
)
def test_a_token_login_waits_ten_seconds_unless_told_otherwise(
    given: dict[str, Any],
    env: dict[str, str],
    service: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _service_file(tmp_path, service)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _pinned({"host": AZ, **given})[0]["connect_timeout"] == expected
    password_login = _pinned({"host": AZ, **given}, token=False)[0]
    if not (env or given):  # a password login keeps libpq's and psycopg's own default
        assert "connect_timeout" not in password_login
    else:
        assert password_login["connect_timeout"] == expected


@pytest.mark.integration
def test_a_host_that_never_answers_fails_in_time_and_is_named(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    import socket
    import time

    silent = socket.socket()  # accepts TCP (the kernel's backlog), never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        wrapper = make_wrapper(HOST="127.0.0.1", PORT=str(port), OPTIONS={"connect_timeout": 2})
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            wrapper.ensure_connection()
        waited = time.monotonic() - started
    finally:
        silent.close()
    assert waited < 8  # psycopg's own default is 130 s
    message = str(raised.value)
    assert "'127.0.0.1'" in message and f"port {port}" in message and "within 2 s" in message
    assert isinstance(raised.value.__cause__, errors.ServerTimeout)


def test_the_public_reset_forgets_the_pinned_routes_too(
    resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_azure_pg import registry

    params = {"host": "127.0.0.1"}
    assert _pinned(params)[0]["sslmode"] == "require"
    monkeypatch.setenv("PGSSLMODE", "verify-ca")
    registry.reset(keep_tokens=True)  # a test's faults cleared: the route stays
    assert _pinned(params)[0]["sslmode"] == "require"
    registry.reset()  # after changing the environment on purpose
    assert _pinned(params)[0]["sslmode"] == "verify-ca"
    assert len(resolutions) == 2

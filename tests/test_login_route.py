"""One login per alias (login.py): its route is decided once per alias, then pinned (tls.py).

Issue 21 measured the TLS route resolved twice for each new connection: once for
the defaults (``get_connection_params``), once more by the guard at login. These
tests count :func:`tls.resolve` (libpq's own view of the route) per physical
connection on the plain path and in the pool's connection class, against the
suite's real PostgreSQL with tokens from the identity emulator; and they check
that the one route is the one the guard would have found, and is never trusted
for parameters it was not worked out for.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import pytest

from django_azure_pg._core import tls
from django_azure_pg._core.login import TokenLogin
from django_azure_pg._core.tls import Routed
from django_azure_pg.errors import InsecureTransport

from .conftest import ITEST_DB, ROLE, MakeWrapper
from .fakes import FakeCredential

requires_pool = pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs 5.1+")
AZ = "srv.postgres.database.azure.com"


def query(wrapper: Any, sql: str) -> tuple[object, ...]:
    with wrapper.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchone())


@pytest.mark.integration
def test_later_connections_take_the_pinned_route(
    make_wrapper: MakeWrapper, resolutions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alias's first connection decides the route; later ones send the very same
    parameters to psycopg without working anything out."""
    sent: list[dict[str, Any]] = []
    wrapper = make_wrapper()
    real = wrapper.Database.connect

    def connect(**params: Any) -> Any:
        sent.append({k: v for k, v in params.items() if k != "password"})
        return real(**params)

    monkeypatch.setattr(wrapper.Database, "connect", connect)
    for _ in range(3):
        assert query(wrapper, "SELECT current_user") == (ROLE,)
        wrapper.close()
    assert len(resolutions) == 1
    assert len(sent) == 3 and sent[0] == sent[1] == sent[2]
    assert sent[0]["sslmode"] == "require"  # this machine's default, written by the first
    assert {"host", "hostaddr", "port", "sslrootcert"} <= set(sent[0])


@pytest.mark.integration
@requires_pool
def test_the_pool_and_the_plain_path_share_the_pinned_route(
    make_wrapper: MakeWrapper, resolutions: list[dict[str, Any]]
) -> None:
    pytest.importorskip("psycopg_pool")
    wrapper = make_wrapper(OPTIONS={"pool": {"min_size": 2, "max_size": 2}})
    pool = wrapper.pool
    assert len(resolutions) == 1  # building the pool decides (and guards) the route
    assert "sslmode" not in pool.kwargs  # the settings' own: nothing decided is frozen in
    assert query(wrapper, "SELECT current_user") == (ROLE,)
    wrapper.close()  # back to the pool
    pool.wait(timeout=10)
    assert pool.get_stats()["connections_num"] == 2
    # Another physical connection, as the pool's workers open one.
    conn = pool.connection_class.connect(pool.conninfo, **pool.kwargs)
    try:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE,)
    finally:
        conn.close()
    assert len(resolutions) == 1


def fake_login(**opts: Any) -> TokenLogin:
    return TokenLogin.from_settings(
        "default", {"credential": FakeCredential(), **opts}, "u", environ={}
    )


def test_the_route_is_not_trusted_for_parameters_changed_after_it_was_worked_out() -> None:
    """A subclass (or anything) that changes the parameters between get_connection_params
    and the login: the guard judges the parameters it is given, not the stale route."""
    conn = fake_login()
    params = conn.routed({"host": "127.0.0.1", "sslmode": "disable"})
    assert conn.guard(params)[1].local  # loopback: plaintext allowed
    params["host"] = "db.example.com"  # now a remote server, still sslmode=disable
    with pytest.raises(InsecureTransport, match=r"db\.example\.com"):
        conn.guard(params)
    with pytest.raises(InsecureTransport):
        conn.connect(lambda **kw: pytest.fail("connected"), params)


def test_routed_copy_is_judged_again(resolutions: list[dict[str, Any]]) -> None:
    conn = fake_login()
    params = conn.routed({"host": "127.0.0.1"})
    assert len(resolutions) == 1
    conn.guard(params)
    assert len(resolutions) == 1  # its own route
    ready, route = conn.guard(dict(params))  # a plain copy: worked out again
    assert len(resolutions) == 2 and isinstance(ready, Routed) and route.local


@pytest.fixture
def service_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    for name in ("PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGSSLROOTCERT", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "pg_service.conf"
    monkeypatch.setenv("PGSERVICEFILE", str(path))

    def write(text: str) -> None:
        path.write_text(text)

    return write


@pytest.mark.parametrize("token", [True, False])
@pytest.mark.parametrize(
    ("params", "service", "env"),
    [
        ({"host": AZ}, "", {}),
        ({"host": AZ, "sslmode": "require"}, "", {}),
        ({"host": AZ}, "", {"PGSSLMODE": "verify-ca"}),
        ({"host": AZ}, "", {"PGSSLROOTCERT": "/x.pem"}),
        ({"host": "db.contoso.test"}, "", {}),
        ({"host": "127.0.0.1"}, "", {}),
        ({"host": "/tmp"}, "", {"PGSSLMODE": "disable"}),
        ({"host": "srv.privatelink.postgres.database.azure.com", "hostaddr": "10.0.0.5"}, "", {}),
        ({"service": "prod"}, f"[prod]\nhost={AZ}\nsslmode=prefer\n", {}),
        ({"service": "prod"}, "[prod]\nhost=db.contoso.test\n", {}),
        ({"service": "ghost"}, "[prod]\nhost=x\n", {}),
        ({}, "", {"PGHOST": "db.contoso.test", "PGSSLMODE": "allow"}),
    ],
)
def test_the_one_route_is_the_one_resolve_finds_for_the_final_parameters(
    params: dict[str, Any],
    service: str,
    env: dict[str, str],
    token: bool,
    service_file: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tls.settle writes the defaults into the route it found instead of asking libpq
    again: what it returns must be what libpq says about the parameters as written."""
    service_file(service)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ready = tls.routed(params, token=token, dial=False)
    # The same route but for where the decided values came from (now written out).
    again = tls.resolve(ready, os.environ)
    assert ready.route == dataclasses.replace(again, host_from=ready.route.host_from)
    assert tls.route_of(ready) is ready.route


@pytest.mark.integration
def test_dbshell_resolves_its_route_once(
    add_alias: Callable[..., str],
    identity: Any,
    resolutions: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.core.management import call_command

    from django_azure_pg._client import DatabaseClient

    ran: list[list[str]] = []
    monkeypatch.setattr(DatabaseClient, "_run", lambda self, args, env: ran.append(args))
    add_alias("shell1", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    before = len(resolutions)
    call_command("dbshell", "--database", "shell1")
    assert len(ran) == 1 and "sslmode=require" in ran[0][1]
    assert len(resolutions) - before == 1


@pytest.mark.parametrize("host", [AZ, "db.contoso.test", "127.0.0.1"])
def test_manage_py_check_resolves_the_route_once(
    host: str, resolutions: list[dict[str, Any]]
) -> None:
    from django_azure_pg._checks import check_alias

    identity_env = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token"}
    check_alias("default", {"HOST": host, "NAME": "d", "USER": "u"}, identity_env)
    assert len(resolutions) == 1

"""Shared fixtures: a real PostgreSQL and the local identity emulator, started once.

Tokens come from real azure-identity credentials talking HTTP to the emulator;
the server checks them through the emulator's LDAP responder.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db.utils import ConnectionHandler, load_backend

from django_azure_pg import registry
from django_azure_pg._core import tls
from django_azure_pg.base import DatabaseWrapper
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

ROLE = "aad_tests"
ITEST_DB = "itest"
SCOPE = "https://ossrdbms-aad.database.windows.net/.default"

_SC_VARS = [k for k in os.environ if k.startswith("AZURE_POSTGRESQL_")] + [
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "PGSSLMODE",
]


@pytest.fixture(scope="session")
def emulator(request: pytest.FixtureRequest) -> Iterator[IdentityEmulator]:
    """The testing kit's emulator (its pytest plugin), on an environment cleared of this
    machine's own identity and Service Connector variables."""
    saved = {k: os.environ.pop(k) for k in _SC_VARS if k in os.environ}
    yield request.getfixturevalue("azure_pg_emulator")
    os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres(emulator: IdentityEmulator, azure_pg_server: LocalPostgres) -> LocalPostgres:
    """The testing kit's token-checked server, with this suite's role and database."""
    azure_pg_server.create_entra_role(ROLE, createdb=True)
    emulator.allow_role(ROLE)
    azure_pg_server.create_database(ITEST_DB, owner=ROLE)
    return azure_pg_server


@pytest.fixture(scope="session")
def plain_postgres(emulator: IdentityEmulator) -> Iterator[LocalPostgres]:
    """A token-checked server without the kit's Azure front: refusals in PostgreSQL's own
    words (``LDAP authentication failed for user "…"``), as another server or pooler words them."""
    with LocalPostgres(ldap_port=emulator.ldap_port, azure_texts=False) as server:
        server.create_entra_role(ROLE)
        emulator.allow_role(ROLE)
        server.create_database(ITEST_DB, owner=ROLE)
        yield server


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgres: LocalPostgres) -> None:
    settings.DATABASES["default"]["PORT"] = str(postgres.port)


@pytest.fixture
def identity(emulator: IdentityEmulator) -> Identity:
    """A fresh user-assigned identity allowed to log in as ROLE (its own token cache)."""
    ident = emulator.add_identity(f"uami-{uuid.uuid4().hex[:8]}")
    emulator.allow_role(ROLE, ident)
    return ident


@pytest.fixture
def short_tokens(emulator: IdentityEmulator) -> Iterator[Callable[[float], None]]:
    """Set the emulator's token lifetime for one test."""
    before = emulator.lifetime

    def set_lifetime(seconds: float) -> None:
        emulator.lifetime = seconds

    yield set_lifetime
    emulator.lifetime = before
    emulator.clear_faults()


MakeWrapper = Callable[..., DatabaseWrapper]


@pytest.fixture
def make_wrapper(
    postgres: LocalPostgres, identity: Identity, django_db_blocker: Any
) -> Iterator[MakeWrapper]:
    """Build a DatabaseWrapper (ENGINE ``django_azure_pg`` unless given) on the test server,
    outside Django's handler."""
    made: list[DatabaseWrapper] = []

    def make(alias: str | None = None, **overrides: Any) -> DatabaseWrapper:
        options = {"client_id": identity.client_id, **overrides.pop("OPTIONS", {})}
        entry = {
            "ENGINE": "django_azure_pg",
            "HOST": postgres.host,
            "PORT": str(postgres.port),
            "NAME": ITEST_DB,
            "USER": ROLE,
            "OPTIONS": options,
            **overrides,
        }
        filled = ConnectionHandler().configure_settings({"default": entry})["default"]
        wrapper_class = load_backend(filled["ENGINE"]).DatabaseWrapper
        wrapper = wrapper_class(filled, alias or f"t_{uuid.uuid4().hex[:8]}")
        wrapper.inc_thread_sharing()  # test threads may share it
        made.append(wrapper)
        return wrapper

    with django_db_blocker.unblock():
        yield make
        for wrapper in made:
            wrapper.close()
            if wrapper.alias in getattr(wrapper, "_connection_pools", {}):
                wrapper.close_pool()


def run_for(seconds: float, work: Callable[[], None], *, threads: int = 1) -> int:
    """Run ``work`` in a loop on ``threads`` threads for ``seconds``; return the call count."""
    deadline = time.monotonic() + seconds
    counts = [0] * threads
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        try:
            while time.monotonic() < deadline:
                work()
                counts[i] += 1
        except BaseException as exc:
            errors.append(exc)

    if threads == 1:
        loop(0)
    else:
        _run_threads([threading.Thread(target=loop, args=(i,)) for i in range(threads)])
    if errors:
        raise errors[0]
    return sum(counts)


def _run_threads(workers: list[threading.Thread]) -> None:
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def all_at_once(threads: int, work: Callable[[], None]) -> None:
    """Start ``work`` on ``threads`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)

    _run_threads([threading.Thread(target=one) for _ in range(threads)])
    if errors:
        raise errors[0]


@pytest.fixture(autouse=True)
def _isolated_token_registry() -> Iterator[None]:
    # Routes pinned by an earlier test for the same alias and parameters could hide a
    # test's own environment or patch of the route's workings.
    tls.forget_routes()
    yield
    registry.reset()
    # A fetch still in flight (a background refresh begun at the test's end) would reach
    # the emulator during the next test and spoil its request counts: give it a moment to
    # land (a fetch from the emulator takes milliseconds; a gated fake one is not waited for).
    deadline = time.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread.name == "django-azure-pg-token":
            thread.join(max(deadline - time.monotonic(), 0))


@pytest.fixture
def add_alias(postgres: LocalPostgres, django_db_blocker: Any) -> Iterator[Callable[..., str]]:
    """Add an alias to django.db.connections for the duration of a test."""
    from django.db import connections

    added: list[str] = []

    def add(alias: str, **entry: Any) -> str:
        full = {
            "ENGINE": "django_azure_pg",
            "HOST": postgres.host,
            "PORT": str(postgres.port),
            **entry,
        }
        connections.settings[alias] = ConnectionHandler().configure_settings({"default": full})[
            "default"
        ]
        added.append(alias)
        return alias

    with django_db_blocker.unblock():
        yield add
        for alias in added:
            if hasattr(connections._connections, alias):
                connections[alias].close()
                delattr(connections._connections, alias)
            connections.settings.pop(alias, None)
            settings.DATABASES.pop(alias, None)


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"token_timeout": float("inf")}, "token_timeout"),
    ({"token_timeout": 1e300}, "token_timeout"),
    ({"token_timeout": float("nan")}, "token_timeout"),
    ({"token_timeout": "abc"}, "token_timeout"),
    ({"token_timeout": -1}, "token_timeout"),
    ({"token_timeout": True}, "token_timeout"),
    ({"token_refresh_margin": "inf"}, "token_refresh_margin"),
    ({"credential": "no.such.Mod"}, "credential"),
    ({"credential": "os.path.join"}, "credential"),
    ({"credential": "json.JSONDecoder"}, "credential"),
    ({"credential": "nodots"}, "credential"),
    ({"token_scope": 42}, "token_scope"),
    ({"client_id": 42}, "client_id"),
    ({"allow_plaintext_token": "maybe"}, "allow_plaintext_token"),
    ({"sslmode": "verify_full"}, "sslmode"),
    ({"token_refresh_margin": 0}, "token_refresh_margin"),
]
"""OPTIONS values that must be refused, at check time (E007) and at first use, with the key
named: (options, key)."""


def in_children(count: int, work: Callable[[], str]) -> list[str]:
    """Fork ``count`` children that each run ``work`` and report its answer (or ``!error``)."""
    import warnings

    children = []
    for _ in range(count):
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            pid = os.fork()
        if pid == 0:  # pragma: no cover — runs in the child
            report = "?"
            try:
                report = work()
            except BaseException as exc:
                report = "!" + repr(exc)[:300]
            finally:
                os.write(write, report.encode()[:60_000])
                os._exit(0)
        os.close(write)
        children.append((pid, read))
    reports = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            reports.append(pipe.read().decode())
        os.waitpid(pid, 0)
    return reports


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every ``tls.resolve`` call from here on (the parameters it judged), all threads."""
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()
    real = tls.resolve

    def counting(params: Any, *args: Any, **kwargs: Any) -> tls.Route:
        with lock:
            calls.append(dict(params))
        return real(params, *args, **kwargs)

    monkeypatch.setattr(tls, "resolve", counting)
    yield calls


def until(condition: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Poll ``condition`` until it is truthy or ``seconds`` pass; its last result.

    For what other threads finish on their own schedule (a fetch thread ending its
    span, the emulator counting a request) where no event can be injected.
    """
    deadline = time.monotonic() + seconds
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return result

"""Warm start (django_azure_pg/_warm.py): where it runs, what it fetches, and forks.

The rules are table-tested; the behaviour runs in fresh interpreters against the
emulator (this interpreter imported everything long ago, and its ``sys.argv`` is pytest's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from django_azure_pg import _warm
from django_azure_pg._core import credentials, options
from django_azure_pg_testing import IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE


@pytest.mark.parametrize(
    ("argv", "warms"),
    [
        (["/venv/bin/gunicorn", "app.wsgi"], True),
        (["/usr/lib/python3/site-packages/gunicorn/__main__.py", "app.wsgi"], True),
        (["uvicorn", "app.asgi:application"], True),
        (["/srv/daphne"], True),
        (["uwsgi"], True),
        (["mod_wsgi"], True),
        (["celery", "-A", "proj", "worker"], True),
        (["manage.py", "runserver"], True),
        (["./manage.py", "migrate"], True),
        (["/venv/bin/django-admin", "dbshell"], True),
        (["manage.py", "shell", "-c", "..."], False),  # may set things up first
        (["/lib/python3/site-packages/django/__main__.py", "migrate"], True),
        (["manage.py", "check"], False),
        (["manage.py", "collectstatic", "--noinput"], False),
        (["manage.py", "makemigrations"], False),
        (["manage.py", "azure_pg_doctor"], False),  # it fetches step by step itself
        (["manage.py"], False),
        (["/venv/bin/pytest"], False),
        (["/venv/bin/mypy", "."], False),
        (["-c"], False),
        ([""], False),
        ([], False),
    ],
)
def test_which_processes_warm(argv: list[str], warms: bool) -> None:
    assert _warm.serves(argv) is warms


TOKEN = {"ENGINE": "django_azure_pg", "OPTIONS": {}}


def test_the_switches() -> None:
    dbs = {
        "default": TOKEN,
        "password": {**TOKEN, "PASSWORD": "x"},
        "off": {**TOKEN, "OPTIONS": {"warm_start": False}},
        "forced": {**TOKEN, "OPTIONS": {"warm_start": True}},
    }
    gunicorn, check = ["gunicorn"], ["manage.py", "check"]
    assert _warm.candidates(dbs, gunicorn, {}) == ["default", "forced"]
    assert _warm.candidates(dbs, check, {}) == ["forced"]  # OPTIONS True: any process
    assert _warm.candidates(dbs, check, {_warm.ENV_VAR: "on"}) == ["default", "forced"]
    assert _warm.candidates(dbs, gunicorn, {_warm.ENV_VAR: "off"}) == []
    assert _warm.candidates(dbs, gunicorn, {_warm.ENV_VAR: "auto"}) == ["default", "forced"]


def test_warm_start_never_reaches_libpq_and_is_validated() -> None:
    assert options.strip({"warm_start": False, "sslmode": "require"}) == {"sslmode": "require"}
    assert [p.key for p in options.problems({"warm_start": "maybe"})] == ["warm_start"]
    assert options.problems({"warm_start": "off"}) == []


@pytest.mark.parametrize(
    ("environ", "opts", "evident"),
    [
        ({}, {}, False),  # DefaultAzureCredential: a laptop
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, {}, False),  # IMDS guessed, not named
        ({"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi", "IDENTITY_HEADER": "h"}, {}, True),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "AZURE_CLIENT_ID": "c"}, {}, True),
        ({}, {"client_id": "c"}, True),
        ({}, {"client_id": "c", "client_secret": "s", "tenant_id": "t"}, True),
    ],
)
def test_a_fetch_only_where_something_names_the_identity(
    environ: dict[str, str], opts: dict[str, str], evident: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials, "CHASSIS_ASSET_TAG_FILE", "/nonexistent")
    choice = credentials.choose(opts, environ)
    assert _warm.evident(choice, environ) is evident


# -- fresh interpreters against the emulator ----------------------------------------------

SCRIPT = """
import json, os, socket, sys, threading, time
sys.argv = {argv!r}
_connect, blocked = socket.socket.connect, []
def connect(self, address):  # loopback only: anything else is recorded and refused
    if isinstance(address, tuple) and not str(address[0]).startswith("127."):
        blocked.append(str(address[0]))
        raise OSError("not loopback")
    return _connect(self, address)
socket.socket.connect = connect
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django_azure_pg"],
    DATABASES={{"default": {{
        "ENGINE": "django_azure_pg", "HOST": "127.0.0.1", "PORT": "{port}",
        "NAME": "{db}", "USER": "{role}", "OPTIONS": {{"sslmode": "disable"}},
    }}}},
    USE_TZ=True,
)
began = time.monotonic()
django.setup()
setup_s = time.monotonic() - began
heavy_in_setup = "azure.identity" in sys.modules
{after}
"""

REPORT = """
warm = [t for t in threading.enumerate() if t.name == "django-azure-pg-warm"]
for t in warm:
    t.join(30)
for t in threading.enumerate():
    if t.name == "django-azure-pg-token":
        t.join(30)
print(json.dumps({"setup_s": setup_s, "heavy_in_setup": heavy_in_setup, "warm": len(warm),
                  "heavy": "azure.identity" in sys.modules, "blocked": blocked,
                  "warmed": len(sys.modules["django_azure_pg._warm"]._warmed)}))
"""


IDENTITY_VARS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "AZURE_CLIENT_ID",
                 "AZURE_POD_IDENTITY_AUTHORITY_HOST", _warm.ENV_VAR)  # fmt: skip


def run(code: str, env: dict[str, str]) -> dict[str, object]:
    path = json.dumps([p for p in sys.path if p])
    full = {k: v for k, v in os.environ.items() if k not in IDENTITY_VARS}
    full.update(env)
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {path}\n" + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def script(argv: list[str], postgres: LocalPostgres, after: str = REPORT) -> str:
    return SCRIPT.format(argv=argv, port=postgres.port, db=ITEST_DB, role=ROLE, after=after)


@pytest.fixture
def system_identity(emulator: IdentityEmulator, postgres: LocalPostgres) -> dict[str, str]:
    emulator.allow_role(ROLE)
    return emulator.app_service_env()


@pytest.mark.integration
def test_a_server_process_fetches_in_the_background_at_setup(
    emulator: IdentityEmulator, postgres: LocalPostgres, system_identity: dict[str, str]
) -> None:
    emulator.set_fault(latency=0.3)
    before = emulator.stats.token_requests
    try:
        seen = run(script(["/venv/bin/gunicorn", "app.wsgi"], postgres), system_identity)
    finally:
        emulator.set_fault(latency=0.0)
    assert seen["warm"] == 1
    assert not seen["heavy_in_setup"]  # the imports run in the warm thread, not in setup()
    assert seen["heavy"]
    assert seen["setup_s"] < 0.3  # not waiting for the 0.3 s endpoint
    assert emulator.stats.token_requests - before == 1


@pytest.mark.integration
def test_the_first_request_after_the_warm_start_asks_the_endpoint_nothing(
    emulator: IdentityEmulator, postgres: LocalPostgres, system_identity: dict[str, str]
) -> None:
    after = (
        REPORT.replace("print(json.dumps({", "from django.db import connection\n"
                       "connection.ensure_connection()\nprint(json.dumps({")
    )  # fmt: skip
    before = emulator.stats.token_requests
    seen = run(script(["manage.py", "migrate"], postgres, after), system_identity)
    assert seen["warm"] == 1
    assert emulator.stats.token_requests - before == 1  # the warm fetch served the login


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["manage.py", "check"], {}),
        (["manage.py", "collectstatic"], {}),
        (["/venv/bin/gunicorn"], {_warm.ENV_VAR: "off"}),
    ],
)
def test_quiet_and_cheap_where_no_login_happens(
    argv: list[str],
    env: dict[str, str],
    emulator: IdentityEmulator,
    postgres: LocalPostgres,
    system_identity: dict[str, str],
) -> None:
    before = emulator.stats.token_requests
    seen = run(script(argv, postgres), {**system_identity, **env})
    assert seen["warm"] == 0
    assert not seen["heavy"]  # azure-identity, MSAL and psycopg not even imported
    assert emulator.stats.token_requests == before


@pytest.mark.integration
def test_no_identity_named_no_fetch(emulator: IdentityEmulator, postgres: LocalPostgres) -> None:
    """A pod (IMDS would answer there) but no variable names an identity: not probed."""
    seen = run(script(["/venv/bin/gunicorn"], postgres), {"KUBERNETES_SERVICE_HOST": "x"})
    assert seen["warm"] == 1 and seen["heavy"]  # looked, found nothing named
    assert seen["warmed"] == 0
    assert seen["blocked"] == []  # 169.254.169.254 was not asked


FORKED = """
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        from django.db import connection
        time.sleep(1.0)  # the worker's boot
        began = time.monotonic()
        connection.ensure_connection()
        report = {"first_s": time.monotonic() - began}
    except BaseException as exc:
        report = {"error": repr(exc)[:500]}
    finally:
        os.write(write, json.dumps(report).encode())
        os._exit(0)
os.close(write)
child = json.loads(os.fdopen(read).read())
os.waitpid(pid, 0)
print(json.dumps(child))
"""


@pytest.mark.integration
@pytest.mark.parametrize("slow", [False, True])
def test_a_forked_worker_inherits_the_token_or_fetches_its_own(
    slow: bool,
    emulator: IdentityEmulator,
    postgres: LocalPostgres,
    system_identity: dict[str, str],
) -> None:
    """gunicorn --preload: the master forks a worker right after setup(); it boots for 1 s.

    fork() waits for the warm imports and, up to FETCH_WAIT, for the warm fetch: the
    worker inherits the token. A fetch slower than that is still in flight at the fork:
    the worker starts its own at once (the parent's thread is not the child's).
    """
    latency = _warm.FETCH_WAIT + 0.5 if slow else 0.3
    emulator.set_fault(latency=latency)
    before = emulator.stats.token_requests
    try:
        seen = run(script(["/venv/bin/gunicorn"], postgres, FORKED), system_identity)
    finally:
        emulator.set_fault(latency=0.0)
    asked = emulator.stats.token_requests - before
    assert asked == (2 if slow else 1), (asked, seen)
    assert "error" not in seen, seen
    first = float(seen["first_s"])  # type: ignore[arg-type]
    # Inherited: no fetch at all. Its own: begun at the fork, a second of boot before.
    assert first < (latency - 1.0 + 0.25 if slow else 0.25), seen

"""Background work, for real: a Celery prefork worker and a long-running management command.

Both run in their own processes against the suite's PostgreSQL, log in with tokens from the
emulator that expire every LIFETIME seconds, and live through one database restart. The
command runs three ways at once to show what each part of the recipe (docs/background-workers.md)
does: without ``close_old_connections()`` every iteration after the restart fails; with it
but without ``CONN_HEALTH_CHECKS``, one does; with the whole recipe, none.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_azure_pg_testing import IdentityEmulator, LocalPostgres

from .conftest import ROLE
from .rotations import LIFETIME, across_rotations_and_a_restart
from .workers_app.celery_conf import make_app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def database(postgres: LocalPostgres) -> str:
    name = f"workers_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name, owner=ROLE)
    return name


def worker_env(postgres: LocalPostgres, database: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,  # IDENTITY_ENDPOINT/IDENTITY_HEADER: the suite's emulator
        "DJANGO_SETTINGS_MODULE": "tests.workers_app.settings",
        "PYTHONPATH": str(REPO),
        "WORKERS_PORT": str(postgres.port),
        "WORKERS_DB": database,
        "WORKERS_USER": ROLE,
        **extra,
    }


@pytest.fixture
def stopped_at_the_end() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_celery_prefork_worker(
    postgres: LocalPostgres,
    emulator: IdentityEmulator,
    short_tokens: Callable[[float], None],
    database: str,
    tmp_path: Path,
    stopped_at_the_end: list[subprocess.Popen[Any]],
) -> None:
    short_tokens(LIFETIME)
    for folder in ("queue", "results"):
        (tmp_path / folder).mkdir()
    producer = make_app(tmp_path, set_as_current=False, fixups=[])
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.workers_app.celery_app", "worker",
         "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "w@localhost"],
        cwd=REPO,
        env=worker_env(postgres, database, WORKERS_CELERY_DIR=str(tmp_path)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    stopped_at_the_end.append(worker)
    results: list[tuple[bool, Any]] = []

    def batch(timeout: float = 20) -> None:
        sent = [producer.send_task("workers_app.query", args=[len(results) + i]) for i in range(4)]
        for result in sent:
            value = result.get(timeout=timeout, interval=0.01, propagate=False)
            results.append((result.successful(), value))

    batch(timeout=60)  # the worker is up and answering
    issued = emulator.stats.tokens_issued
    marks: list[int] = []
    elapsed = across_rotations_and_a_restart(postgres, batch, lambda: marks.append(len(results)))
    worker.send_signal(signal.SIGQUIT)  # cold shutdown: nothing is running
    worker.wait(timeout=20)

    log_text = (tmp_path / "worker.log").read_text()
    parent = re.search(r"parent (\d+) read the database before the fork", log_text)
    assert parent, log_text[-3000:]
    failed = [value for ok, value in results if not ok]
    assert failed == [], (failed[:3], log_text[-3000:])
    after = results[marks[0] :]
    assert len(after) >= 8  # tasks ran after the restart, on new sessions
    before_backends = {v["backend"] for _, v in results[: marks[0]]}
    assert not before_backends & {v["backend"] for _, v in after}
    assert {v["user"] for _, v in results} == {ROLE}
    children = {v["worker"] for _, v in results}
    assert len(children) == 2 and int(parent.group(1)) not in children  # forked children
    assert elapsed >= 3 * LIFETIME
    assert emulator.stats.tokens_issued - issued >= 3  # new tokens as the old ones expired


VARIANTS = {
    # name: (--recipe, environment)
    "naive": (False, {"WORKERS_CONN_MAX_AGE": "1", "WORKERS_HEALTH_CHECKS": "1"}),
    "no_health_checks": (True, {"WORKERS_CONN_MAX_AGE": "60", "WORKERS_HEALTH_CHECKS": "0"}),
    "recipe": (True, {"WORKERS_CONN_MAX_AGE": "1", "WORKERS_HEALTH_CHECKS": "1"}),
}


def test_long_running_command(
    postgres: LocalPostgres,
    emulator: IdentityEmulator,
    short_tokens: Callable[[float], None],
    database: str,
    stopped_at_the_end: list[subprocess.Popen[Any]],
) -> None:
    short_tokens(LIFETIME)
    loops: dict[str, subprocess.Popen[str]] = {}
    for name, (recipe, env) in VARIANTS.items():
        loops[name] = subprocess.Popen(
            [sys.executable, "-m", "django", "loop", *(["--recipe"] if recipe else [])],
            cwd=REPO,
            env=worker_env(postgres, database, **env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stopped_at_the_end.append(loops[name])
    for loop in loops.values():
        assert loop.stdout is not None
        assert json.loads(loop.stdout.readline()) == {"ready": True}
    seen: dict[str, list[dict[str, Any]]] = {name: [] for name in loops}

    def iteration() -> None:
        for loop in loops.values():
            assert loop.stdin is not None
            loop.stdin.write("\n")
            loop.stdin.flush()
        for name, loop in loops.items():
            assert loop.stdout is not None
            seen[name].append(json.loads(loop.stdout.readline()))

    iteration()
    issued = emulator.stats.tokens_issued
    marks: list[int] = []
    elapsed = across_rotations_and_a_restart(
        postgres, iteration, lambda: marks.append(len(seen["recipe"]))
    )
    for loop in loops.values():
        assert loop.stdin is not None
        loop.stdin.close()  # the loop ends
        assert loop.wait(timeout=20) == 0

    mark = marks[0]
    before = {name: [r for r in runs[:mark] if not r["ok"]] for name, runs in seen.items()}
    after = {name: [r for r in runs[mark:] if not r["ok"]] for name, runs in seen.items()}
    assert before == {name: [] for name in seen}  # token rotations cost nothing
    runs_after = len(seen["recipe"]) - mark
    assert runs_after >= 20
    assert len(after["naive"]) == runs_after  # every iteration after the restart failed
    # "the connection is closed" (OperationalError; some versions say InterfaceError)
    assert {r["error"] for r in after["naive"]} <= {"OperationalError", "InterfaceError"}
    assert len(after["no_health_checks"]) == 1  # one failed, then the dead session was closed
    assert after["recipe"] == []  # the health check replaced the dead session first
    backends = {r["backend"] for r in seen["recipe"]}
    assert len(backends) >= 4  # CONN_MAX_AGE=1: new sessions, new logins, as tokens expire
    assert elapsed >= 3 * LIFETIME
    assert emulator.stats.tokens_issued - issued >= 3

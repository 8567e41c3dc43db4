"""ASGI, for real: async views using the ORM under uvicorn, across token rotations and a restart.

uvicorn runs in its own process on 127.0.0.1 and logs in with tokens from the suite's
emulator that expire every LIFETIME seconds. Requests come eight at a time, back to back,
for 3.5 lifetimes; the server restarts after 2. Not one request may fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from django_azure_pg_testing import IdentityEmulator, LocalPostgres
from django_azure_pg_testing.postgres import free_port

from .conftest import ROLE, until
from .rotations import LIFETIME, across_rotations_and_a_restart

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["per-request", "pool"])
def site(
    request: pytest.FixtureRequest,
    postgres: LocalPostgres,
    short_tokens: Callable[[float], None],
    tmp_path: Path,
) -> Iterator[str]:
    """uvicorn serving tests/asgi_app on a free loopback port, tokens expiring every LIFETIME
    seconds from the first; its base URL."""
    short_tokens(LIFETIME)
    database = f"asgi_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database, owner=ROLE)
    postgres.execute(
        sql.SQL(
            "CREATE TABLE asgi_dish (id bigserial PRIMARY KEY, name varchar(50) NOT NULL);"
            "INSERT INTO asgi_dish (name) VALUES ('soup'), ('bread'), ('cheese'), ('pie');"
            "ALTER TABLE asgi_dish OWNER TO {}"
        ).format(sql.Identifier(ROLE)),
        dbname=database,
    )
    port = free_port()
    log = (tmp_path / "uvicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.asgi_app.asgi:application",
         "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
         "--log-level", "warning"],
        cwd=REPO,
        env={
            **os.environ,  # IDENTITY_ENDPOINT/IDENTITY_HEADER: the suite's emulator
            "DJANGO_SETTINGS_MODULE": "tests.asgi_app.settings",
            "PYTHONPATH": str(REPO),
            "ASGI_APP_PORT": str(postgres.port),
            "ASGI_APP_DB": database,
            "ASGI_APP_USER": ROLE,
            "ASGI_APP_POOL": "1" if request.param == "pool" else "0",  # Django's psycopg pool
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert until(lambda: server.poll() is not None or answers(f"{base}/session"), 30), (
            tmp_path / "uvicorn.log"
        ).read_text()
        assert server.poll() is None, (tmp_path / "uvicorn.log").read_text()
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 — loopback http
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]


def test_async_orm_views_under_uvicorn(
    postgres: LocalPostgres,
    emulator: IdentityEmulator,
    site: str,
) -> None:
    answered: list[tuple[str, int, Any]] = []
    paths = ["menu", "session"] * 4

    with ThreadPoolExecutor(8) as pool:

        def eight_at_once() -> None:
            for path, (status, body) in zip(
                paths, pool.map(lambda p: get(f"{site}/{p}"), paths), strict=True
            ):
                answered.append((path, status, body))

        eight_at_once()
        issued = emulator.stats.tokens_issued
        marks: list[int] = []
        elapsed = across_rotations_and_a_restart(
            postgres, eight_at_once, lambda: marks.append(len(answered))
        )

    failed = [(path, status, body) for path, status, body in answered if status != 200]
    assert failed == [], failed[:3]
    menus = [body for path, _, body in answered if path == "menu"]
    assert all(
        m == {"count": 4, "names": ["soup", "bread", "cheese"], "first": "soup"} for m in menus
    )
    sessions = [body for path, _, body in answered if path == "session"]
    assert {s["user"] for s in sessions} == {ROLE}
    after = answered[marks[0] :]
    assert len(after) >= 16  # requests served after the restart
    before = {body["backend"] for path, _, body in answered[: marks[0]] if path == "session"}
    assert not before & {body["backend"] for path, _, body in after if path == "session"}
    assert len({s["backend"] for s in sessions}) > 1  # new sessions: per request, or the pool's
    assert elapsed >= 3 * LIFETIME
    assert emulator.stats.tokens_issued - issued >= 3  # new tokens as the old ones expired

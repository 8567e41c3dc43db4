"""The health view on the real stack: 200/503 through an outage and recovery, a refused
login, throttling; cheap (no physical connection per call unless asked)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import JsonResponse
from django.test import RequestFactory, override_settings

from django_azure_pg import health, registry
from django_azure_pg._core import telemetry
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import ITEST_DB, ROLE, until

pytestmark = pytest.mark.integration


@pytest.fixture
def probe(add_alias: Callable[..., str]) -> Iterator[Callable[..., tuple[int, dict[str, Any]]]]:
    """Call the view as App Service's Health check would, for the aliases given."""
    factory = RequestFactory()

    def call(*aliases: str, query: str = "", **more: Any) -> tuple[int, dict[str, Any]]:
        named = {
            "AZURE_PG_HEALTH_DATABASES": list(aliases),
            "AZURE_PG_HEALTH_DETAILS": True,  # these tests read the results by alias
            "AZURE_PG_HEALTH_ALLOW_CONNECT": True,
            "AZURE_PG_HEALTH_CONNECT_INTERVAL": 0,
            **more,
        }
        with override_settings(**named):
            answer = health.view(factory.get(f"/healthz{query}"))
        assert isinstance(answer, JsonResponse)
        assert "no-cache" in answer["Cache-Control"]
        return answer.status_code, json.loads(answer.content)

    yield call


def test_outage_and_recovery(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
) -> None:
    alias = add_alias(
        "health1",
        NAME=ITEST_DB,
        USER=ROLE,
        OPTIONS={"client_id": identity.client_id, "token_timeout": 1},
    )
    status, body = probe(alias)
    assert (status, body["status"]) == (200, "ok")
    assert body["databases"][alias] == {"ok": True, "reason": "ok", "connected": True}

    # Called every minute: a cached token and a recent good login are enough.
    logins, requests = emulator.stats.logins_accepted, emulator.stats.token_requests
    for _ in range(5):
        status, body = probe(alias)
        assert status == 200 and body["databases"][alias]["connected"] is False
    assert emulator.stats.logins_accepted == logins
    assert emulator.stats.token_requests == requests

    # The identity endpoint fails and no token is cached (a new process, or expiry).
    emulator.set_fault("error")
    try:
        registry.reset()
        status, body = probe(alias)
        assert status == 503
        assert body["status"] == "unhealthy"
        assert body["databases"][alias]["reason"] in {health.TOKEN_TIMEOUT, health.TOKEN_FAILED}
    finally:
        emulator.clear_faults()

    # Recovery: 200 again once a token can be had.
    assert until(lambda: probe(alias)[0] == 200, 20.0)
    text = json.dumps(probe(alias)[1])
    for token in emulator.issued_tokens():
        assert token not in text and token.split(".")[2] not in text


def test_refused_login_then_fixed(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    postgres: LocalPostgres,
    emulator: IdentityEmulator,
) -> None:
    postgres.create_entra_role("aad_health_other")  # exists, for another principal
    alias = add_alias(
        "health2",
        NAME=ITEST_DB,
        USER="aad_health_other",
        OPTIONS={"client_id": identity.client_id},
    )
    status, body = probe(alias)
    assert status == 503
    assert body["databases"][alias]["reason"] == f"{health.LOGIN_REFUSED} (TokenNotForRole)"
    assert body["databases"][alias]["connected"] is True
    record = telemetry.last_login(alias)
    assert record is not None and record.refused

    # While the last login failed, each check tries one login: it sees the fix.
    emulator.allow_role("aad_health_other", identity)
    status, body = probe(alias)
    assert status == 200 and body["databases"][alias]["connected"] is True


def test_connect_on_request_and_old_evidence(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
) -> None:
    alias = add_alias(
        "health3", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id}
    )
    assert probe(alias)[0] == 200
    logins = emulator.stats.logins_accepted
    status, body = probe(alias, query="?connect=1")
    assert status == 200 and body["databases"][alias]["connected"] is True
    assert emulator.stats.logins_accepted == logins + 1
    with override_settings(AZURE_PG_HEALTH_LOGIN_MAX_AGE=0):
        status, body = probe(alias)
    assert status == 200 and body["databases"][alias]["connected"] is True


def test_throttled_with_nothing_cached(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
) -> None:
    alias = add_alias(
        "health4",
        NAME=ITEST_DB,
        USER=ROLE,
        OPTIONS={"client_id": identity.client_id, "token_timeout": 1},
    )
    emulator.retry_after = 30
    emulator.set_fault("throttle")
    try:
        status, body = probe(alias)
    finally:
        emulator.clear_faults()
        emulator.retry_after = 5
    assert status == 503
    assert body["databases"][alias]["reason"] == health.TOKEN_THROTTLED


def test_invalid_settings_say_configuration_error(
    probe: Callable[..., tuple[int, dict[str, Any]]], add_alias: Callable[..., str]
) -> None:
    alias = add_alias("health5", NAME=ITEST_DB, USER=ROLE, OPTIONS={"token_timeout": "abc"})
    status, body = probe(alias)
    assert status == 503
    assert body["databases"][alias] == {
        "ok": False,
        "reason": health.CONFIGURATION,
        "connected": False,
    }


def test_default_aliases_are_the_token_logins(
    add_alias: Callable[..., str], identity: Identity
) -> None:
    add_alias("tok", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id})
    add_alias("pw", NAME=ITEST_DB, USER="someone", PASSWORD="pw-not-used")
    names = health.aliases()
    assert "tok" in names and "pw" not in names


def test_the_docs_list_every_reason() -> None:
    page = (Path(__file__).parent.parent / "docs" / "observability.md").read_text()
    for reason in health.REASONS:
        assert f"`{reason}`" in page


def test_a_refusal_in_postgresqls_own_words_is_a_refusal(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    plain_postgres: LocalPostgres,
) -> None:
    """'LDAP authentication failed for user' (a server without Azure's texts): the view
    says refused, with the cause, as for Azure's wording (issue 30)."""
    plain_postgres.create_entra_role("aad_health_plain")  # mapped to no identity of ours
    alias = add_alias(
        "health_plain",
        HOST=plain_postgres.host,
        PORT=str(plain_postgres.port),
        NAME=ITEST_DB,
        USER="aad_health_plain",
        OPTIONS={"client_id": identity.client_id},
    )
    status, body = probe(alias)
    assert status == 503
    assert body["databases"][alias]["reason"] == f"{health.LOGIN_REFUSED} (TokenNotForRole)"


def test_anonymous_callers_cannot_make_it_log_in_or_learn_the_aliases(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
) -> None:
    alias = add_alias(
        "health_public", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id}
    )
    defaults = {
        "AZURE_PG_HEALTH_DETAILS": False,
        "AZURE_PG_HEALTH_ALLOW_CONNECT": False,
        "AZURE_PG_HEALTH_CONNECT_INTERVAL": health.DEFAULT_CONNECT_INTERVAL,
    }
    status, body = probe(alias, **defaults)  # the first check: no evidence yet, one login
    assert status == 200 and alias not in json.dumps(body)
    assert body["databases"] == [{"ok": True, "reason": "ok", "connected": True}]
    logins = emulator.stats.logins_accepted
    unlimited = {**defaults, "AZURE_PG_HEALTH_CONNECT_INTERVAL": 0}
    for _ in range(5):  # ?connect=1 is not honoured unless the settings allow it
        assert probe(alias, query="?connect=1", **unlimited)[0] == 200
    assert emulator.stats.logins_accepted == logins


def test_at_most_one_login_per_alias_per_interval(
    probe: Callable[..., tuple[int, dict[str, Any]]],
    add_alias: Callable[..., str],
    identity: Identity,
    emulator: IdentityEmulator,
) -> None:
    alias = add_alias(
        "health_limit", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id}
    )
    logins = emulator.stats.logins_accepted
    forced = {"AZURE_PG_HEALTH_CONNECT": True, "AZURE_PG_HEALTH_CONNECT_INTERVAL": 60}
    answers = [probe(alias, **forced) for _ in range(5)]
    assert [status for status, _ in answers] == [200] * 5
    assert [b["databases"][alias]["connected"] for _, b in answers] == [True] + [False] * 4
    assert emulator.stats.logins_accepted == logins + 1


def test_concurrent_first_checks_share_one_login(
    add_alias: Callable[..., str], identity: Identity, emulator: IdentityEmulator
) -> None:
    """A burst of probes at start-up: one login, the others wait for its outcome."""
    import threading

    alias = add_alias(
        "health_burst", NAME=ITEST_DB, USER=ROLE, OPTIONS={"client_id": identity.client_id}
    )
    logins = emulator.stats.logins_accepted
    results: list[health.Health] = []
    start = threading.Barrier(4)

    def probe() -> None:
        start.wait()
        results.append(health._connect(alias))

    with override_settings(AZURE_PG_HEALTH_CONNECT_INTERVAL=60):
        threads = [threading.Thread(target=probe) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.ok for r in results] == [True] * 4
    assert sorted(r.connected for r in results) == [False, False, False, True]
    assert emulator.stats.logins_accepted == logins + 1

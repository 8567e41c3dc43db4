"""Being a good citizen of the identity endpoint, on the real stack.

Real azure-identity credentials over HTTP to the emulator, real PostgreSQL
behind the kit's front (which sends Azure's login texts): a wrong USER next to
a healthy alias, a token revoked server-side, HTTP 429, and workers forked
from one master refreshing on their own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from django.db import OperationalError

from django_azure_pg import errors
from django_azure_pg._core import credentials, timing
from django_azure_pg._core import sources as registry
from django_azure_pg._core import token_source as tokens
from django_azure_pg_testing import Identity, IdentityEmulator, LocalPostgres

from .conftest import SCOPE, MakeWrapper, in_children, until
from .fakes import FakeClock

pytestmark = pytest.mark.integration


def login_once(wrapper: Any) -> None:
    wrapper.ensure_connection()
    wrapper.close()


def test_wrong_user_storm_spares_the_endpoint_and_the_healthy_alias(
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    postgres: LocalPostgres,
    identity: Identity,
) -> None:
    other_app = emulator.add_identity("another-app")
    postgres.create_entra_role("aad_another_app")  # another app's role, mapped to another identity
    emulator.allow_role("aad_another_app", other_app)
    login_once(make_wrapper())  # the healthy alias has a cached token
    before = emulator.stats.token_requests
    wrong_errors: list[BaseException] = []
    healthy_failures: list[BaseException] = []
    healthy_logins = [0]
    deadline = time.monotonic() + 10

    def hammer() -> None:
        wrapper = make_wrapper(USER="aad_another_app")
        while time.monotonic() < deadline:
            try:
                login_once(wrapper)
            except OperationalError as exc:
                wrong_errors.append(exc)

    def healthy() -> None:
        wrapper = make_wrapper()
        while time.monotonic() < deadline:
            try:
                login_once(wrapper)
                healthy_logins[0] += 1
            except Exception as exc:
                healthy_failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    threads += [threading.Thread(target=healthy) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    requests = emulator.stats.token_requests - before
    print(
        f"\nstorm: {len(wrong_errors)} refused logins, {requests} identity requests, "
        f"{healthy_logins[0]} healthy logins, {len(healthy_failures)} healthy failures"
    )
    assert requests <= 2
    assert healthy_failures == []
    assert healthy_logins[0] > 0 and len(wrong_errors) > 50
    cause = wrong_errors[-1].__cause__
    assert isinstance(cause, errors.TokenNotForRole)
    text = str(wrong_errors[-1])
    assert "USER 'aad_another_app'" in text
    assert identity.name in text and identity.object_id in text  # the token's principal
    assert "create_aad_principal" in text
    for token in emulator.issued_tokens():
        assert token not in text


def test_token_revoked_server_side_recovers_with_one_request(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    wrapper = make_wrapper()
    login_once(wrapper)
    emulator.revoke_all()
    before = emulator.stats.token_requests
    login_once(wrapper)
    assert emulator.stats.token_requests - before == 1


def test_a_failed_forced_refresh_says_no_token_not_wrong_user(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator, identity: Identity
) -> None:
    wrapper = make_wrapper(OPTIONS={"credential": no_retry_credential(identity)})
    login_once(wrapper)
    emulator.revoke_all()  # the cached token is refused now
    emulator.set_fault("error")  # and the refresh that refusal forces gets HTTP 500
    try:
        with pytest.raises(OperationalError) as info:
            login_once(wrapper)
    finally:
        emulator.clear_faults()
    print(f"\nforced refresh failed: {info.value}")
    assert isinstance(info.value.__cause__, errors.TokenAcquisitionError)
    assert not isinstance(info.value.__cause__, errors.LoginRefused)
    assert isinstance(info.value.__cause__.__cause__, tokens.TokenError)


def test_a_hung_identity_endpoint_is_asked_again_after_the_bound(
    emulator: IdentityEmulator, identity: Identity
) -> None:
    choice = credentials.choose({"client_id": identity.client_id}, os.environ)
    clock = FakeClock(time.time())
    source = tokens.TokenSource(
        choice.factory(), SCOPE, label=choice.name, clock=clock, timeout=0.5
    )
    before = emulator.stats.token_requests
    emulator.set_fault("hang")
    try:
        with pytest.raises(tokens.TokenTimeout):
            source.get()
        first = source._inflight
        assert until(lambda: emulator.stats.token_requests - before == 1, 5.0)
        clock.advance(source.stuck_after - 1)
        with pytest.raises(tokens.TokenTimeout):
            source.get()  # within the bound: waits for the hung fetch, asks nothing
        clock.advance(2)
        with pytest.raises(tokens.TokenTimeout):
            source.get()  # past it: asks again, with a new credential object (and hangs too)
        second = source._inflight
        assert until(lambda: emulator.stats.token_requests - before == 2, 5.0)
    finally:
        emulator.clear_faults()
    assert first is not None and second is not None and second is not first
    for hung in (second, first):  # the endpoint drops what it held (no retry inside a fetch:
        with contextlib.suppress(Exception):  # credentials.CREDENTIAL_RETRIES)
            hung.future.result(timeout=10)
    clock.advance(timing.OUTAGE_RETRY_MAX)  # past the outage cadence
    token = source.get_token()  # the endpoint answers again
    assert source.get_token() is token  # no late answer replaced it


def test_azure_pg_faults_leaves_no_spent_refusal_budget_behind(
    request: pytest.FixtureRequest, make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    wrapper = make_wrapper()
    login_once(wrapper)
    emulator.revoke_all()
    login_once(wrapper)  # refused, refreshed, retried: the refusal budget is spent for 30 s

    def next_test() -> None:
        # A user's next test, moments later: tokens rotated server-side again.
        emulator.revoke_all()
        login_once(wrapper)

    # Finalizers run last-in first-out: this one after azure_pg_faults' teardown.
    request.addfinalizer(next_test)
    request.getfixturevalue("azure_pg_faults")


def test_missing_role_is_reported_without_a_refresh(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    login_once(make_wrapper())
    before = emulator.stats.token_requests
    with pytest.raises(OperationalError) as info:
        login_once(make_wrapper(USER="aad_tests_typo"))
    assert isinstance(info.value.__cause__, errors.RoleMissing)
    assert emulator.stats.token_requests == before


def no_retry_credential(identity: Identity) -> Callable[[], ManagedIdentityCredential]:
    # azure-identity retries HTTP 429 itself (honouring Retry-After); without its retries
    # each fetch is one request, so the endpoint's log shows our own schedule.
    return lambda: ManagedIdentityCredential(
        client_id=identity.client_id, retry_total=0, raw_response_hook=tokens.observe_response
    )


def test_throttled_while_a_token_is_cached(
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    identity: Identity,
    short_tokens: Callable[[float], None],
) -> None:
    short_tokens(12)  # refresh window: the last 3 s
    emulator.retry_after = 1
    wrapper = make_wrapper(OPTIONS={"credential": no_retry_credential(identity)})
    login_once(wrapper)
    since, faulted = emulator.clock(), emulator.stats.faulted_requests
    emulator.set_fault("throttle")
    failures = 0
    logins = 0
    deadline = time.monotonic() + 14  # past the first token's expiry
    try:
        while time.monotonic() < deadline:
            if emulator.fault and emulator.stats.faulted_requests > faulted:
                emulator.clear_faults()  # the endpoint recovers after one throttled attempt
            try:
                login_once(wrapper)
                logins += 1
            except OperationalError:
                failures += 1
    finally:
        emulator.clear_faults()
        emulator.retry_after = 5
    asked = [t for t in emulator.request_times if t >= since]
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    print(f"\nthrottled: {logins} logins, {failures} failed, requests at gaps {gaps}")
    assert failures == 0
    assert len(asked) >= 2  # a throttled attempt, then the refresh
    assert gaps[0] >= 1 - 0.05  # not asked again before Retry-After


def test_throttled_with_nothing_cached_says_so_within_token_timeout(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    emulator.retry_after = 3
    emulator.set_fault("throttle")
    wrapper = make_wrapper(OPTIONS={"token_timeout": 2})  # the default credential choice
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="throttled") as info:
            login_once(wrapper)
    finally:
        elapsed = time.monotonic() - started
        emulator.clear_faults()
        emulator.retry_after = 5
    print(f"\nnothing cached: failed after {elapsed:.2f} s (token_timeout 2 s): {info.value}")
    assert isinstance(info.value.__cause__, errors.TokenAcquisitionError)
    assert isinstance(info.value.__cause__.__cause__, errors.TokenThrottled)
    assert elapsed < 2 + 0.5


def test_forked_workers_refresh_on_their_own_and_not_together(
    emulator: IdentityEmulator, identity: Identity, short_tokens: Callable[[float], None]
) -> None:
    """16 workers forked after the master cached a token, 8 s tokens, an endpoint taking
    0.3 s: each takes its own place in the refresh window, at most 4 requests overlap."""
    workers, lifetime, refreshes = 16, 8.0, 3
    short_tokens(lifetime)
    choice = credentials.choose({"client_id": identity.client_id}, os.environ)
    source = registry.get_source(choice.key(), choice.factory(), SCOPE, label=choice.name)
    first = source.get_token()  # the master fetched a token before forking (gunicorn --preload)
    emulator.set_fault(latency=0.3)
    emulator.stats.peak_concurrent_requests = 0

    def worker() -> str:
        seen = [first.value]
        moments = []
        deadline = time.time() + lifetime * refreshes + 2
        while time.time() < deadline and len(moments) < refreshes:
            token = source.get_token()
            if token.value != seen[-1]:
                moments.append(token.obtained_at - first.issued_at)
                seen.append(token.value)
            time.sleep(0.005)
        return (
            ",".join(f"{m:.3f}" for m in moments)
            + f";{os.getpid()};{source._next_refresh - first.issued_at:.2f}"
        )

    try:
        reports = in_children(workers, worker)
    finally:
        emulator.clear_faults()
    assert not [r for r in reports if r.startswith(("!", "?"))], reports
    print(reports, first.issued_at, first.obtained_at, emulator.request_times[-60:])
    reports = [r.split(";")[0] for r in reports]
    moments = [[float(m) for m in r.split(",")] for r in reports]
    firsts = sorted(m[0] for m in moments)
    histogram = Counter(round(m * 4) / 4 for m in firsts)
    print(
        f"\nforked: peak {emulator.stats.peak_concurrent_requests} concurrent token requests; "
        "first refresh (s into the token's life, 0.25 s bins): "
        + ", ".join(f"{b:.2f}: {n}" for b, n in sorted(histogram.items()))
    )
    assert all(len(m) == refreshes for m in moments)  # every worker refreshed, on its own
    assert emulator.stats.peak_concurrent_requests <= 4

"""The timing rules, as tables at real lifetimes: 6 s test, 1 h and 75 min user, 24 h managed identity."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from django_azure_pg._core import timing
from django_azure_pg._core.timing import Token
from django_azure_pg_testing import IdentityEmulator

from .conftest import MakeWrapper, in_children

H = 3600.0
T0 = 1_000_000.0


def token(lifetime: float, *, refresh_on: float | None = None, age: float = 0.0) -> Token:
    """A token issued at T0 and obtained ``age`` seconds later."""
    claims: dict[str, object] = {"iat": T0, "exp": T0 + lifetime}
    return Token.issued("t", T0 + lifetime, T0 + age, claims, refresh_on)


@pytest.mark.parametrize(
    ("lifetime", "refresh_on", "window", "skew"),
    [
        # no refresh_on: from a sixth of the lifetime to half-life
        (6.0, None, (1.0, 3.0), 0.6),
        (H, None, (600.0, 1800.0), 60.0),
        (75 * 60, None, (750.0, 2250.0), 60.0),
        (24 * H, None, (4 * H, 12 * H), 60.0),
        # refresh_on (MSAL: half-life for managed-identity tokens of 2 h or more): from it,
        # a third of what is left
        (24 * H, 12 * H, (12 * H, 16 * H), 60.0),
        (2 * H, 1 * H, (1 * H, 1 * H + 1200.0), 60.0),
    ],
)
def test_window_and_skew(
    lifetime: float,
    refresh_on: float | None,
    window: tuple[float, float],
    skew: float,
) -> None:
    t = token(lifetime, refresh_on=None if refresh_on is None else T0 + refresh_on)
    opens, closes = t.window()
    assert (opens - T0, closes - T0) == pytest.approx(window)
    assert t.skew == pytest.approx(skew)
    width = closes - opens
    for place in (0.0, 0.25, 0.5, 0.999):
        moment = t.refresh_at(place)
        assert opens <= moment < closes
        assert moment % width == pytest.approx(place * width, abs=1e-6)  # a phase of the grid


def test_a_75_minute_user_token_refreshes_before_its_40th_minute() -> None:
    t = token(75 * 60)
    assert t.refresh_at(0.999_999) - T0 < 40 * 60


def test_a_24_hour_token_is_refreshed_with_half_its_life_left_for_outages() -> None:
    t = token(24 * H, refresh_on=T0 + 12 * H)
    latest = t.refresh_at(0.999_999)
    assert t.expires_on - latest > 8 * H  # an outage starting after the refresh: 8 h headroom


def test_a_token_handed_out_late_in_its_life_keeps_its_issued_lifetime() -> None:
    late = token(24 * H, age=23 * H)  # the endpoint's cache handed it out an hour before expiry
    assert late.lifetime == 24 * H
    assert late.skew == 60.0  # as for any long token, not the skew of a 1-hour one
    assert late.refresh_at(0.5) < late.obtained_at  # past its window: retried, not waited for


def test_claims_after_our_fetch_or_after_expiry_are_ignored() -> None:
    now = T0
    ahead = Token.issued("t", now + 3600, now, {"iat": now + 5})  # issuer's clock ahead
    assert ahead.issued_at == now
    nonsense = Token.issued("t", now + 3600, now, {"iat": now + 7200, "nbf": "x"})
    assert nonsense.issued_at == now
    nbf = Token.issued("t", now + 3600, now, {"nbf": now - 100})
    assert nbf.issued_at == now - 100
    opaque = Token.issued("t", now + 3600, now, {})
    assert opaque.lifetime == 3600


def test_a_refresh_on_outside_the_lifetime_is_ignored() -> None:
    assert token(H, refresh_on=T0 + 2 * H).refresh_on is None
    assert token(H, refresh_on=T0 - 1).refresh_on is None
    assert token(H, refresh_on=T0 + 0.5 * H).refresh_on == T0 + 0.5 * H


@pytest.mark.parametrize("lifetime", [6.0, H, 24 * H])
def test_retries_halve_the_usable_time_left_down_to_a_floor(lifetime: float) -> None:
    t = token(lifetime)
    now = T0 + lifetime / 2
    waits = []
    while t.usable(now):
        nxt = t.retry_at(now)
        waits.append(nxt - now)
        now = nxt
    assert waits[0] == pytest.approx((t.usable_until - (T0 + lifetime / 2)) / 2)
    assert min(waits) == pytest.approx(lifetime * timing.BACKOFF_FLOOR)
    assert len(waits) <= timing.MAX_CALLS_AFTER_DUE


def test_margin_closes_the_window_earlier_but_never_before_it_opens() -> None:
    t = token(H)
    assert t.window(margin=3000.0) == (T0 + 600.0, T0 + 600.0)
    assert t.window(margin=2700.0) == (T0 + 600.0, T0 + 900.0)
    assert t.window(margin=60.0) == t.window()


@pytest.mark.parametrize("lifetime", [6.0, H, 24 * H])
def test_ran_out_during_login(lifetime: float) -> None:
    t = token(lifetime)
    assert not t.ran_out_during_login(T0 + lifetime / 2)
    assert t.ran_out_during_login(t.usable_until)
    assert t.ran_out_during_login(t.expires_on + 0.1)


def test_refusal_interval_is_a_fraction_of_the_lifetime() -> None:
    assert token(H).refusal_interval() == 30.0
    assert token(24 * H).refusal_interval() == 12 * 60.0
    assert token(6.0).refusal_interval() == pytest.approx(0.05)


def peak_overlap(starts: list[float], duration: float) -> int:
    events = sorted([(s, 1) for s in starts] + [(s + duration, -1) for s in starts])
    peak = level = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    return peak


@pytest.mark.parametrize("base", [0.0, 0.1234, 0.5, 0.9])
def test_sixteen_workers_forked_one_after_another_spread_over_the_window(base: float) -> None:
    """8 s tokens, an endpoint that takes 0.3 s: at most 3 requests overlap."""
    t = token(8.0)
    starts = [t.refresh_at(timing.child_place(base, k)) for k in range(1, 17)]
    assert len(set(starts)) == 16
    assert peak_overlap(starts, 0.32) <= 3


def test_a_master_restarting_workers_keeps_filling_the_gaps() -> None:
    """Workers 17..32 (restarts): any 16 successive children are as evenly spread."""
    t = token(8.0)
    for first in (1, 9, 17, 100):
        starts = [t.refresh_at(timing.child_place(0.3, k)) for k in range(first, first + 16)]
        assert peak_overlap(starts, 0.32) <= 3


def test_places_hold_round_after_round() -> None:
    """16 workers, each refreshing its own 8 s tokens (issued at whole seconds, as Entra's
    ``iat`` is) through an endpoint taking 0.3 s, for 10 rounds: at most 3 overlap."""
    lifetime, latency = 8.0, 0.3
    starts: list[float] = []
    for k in range(1, 17):
        place = timing.child_place(0.42, k)
        issued = T0  # the token inherited from the master
        for _ in range(10):
            t = Token.issued("t", issued + lifetime, issued, {"iat": issued})
            start = t.refresh_at(place)
            starts.append(start)
            issued = float(int(start + latency))
    assert peak_overlap(starts, latency + 0.02) <= 3


# -- the real stack in compressed time ------------------------------------------------
# A real ManagedIdentityCredential over HTTP to the kit's emulator; PostgreSQL checks
# each token's expiry at login (LDAP bind to the emulator).


def login_once(wrapper: Any) -> None:
    wrapper.ensure_connection()
    wrapper.close()


@pytest.mark.integration
def test_an_outage_from_two_thirds_of_a_token_to_one_point_two_lifetimes_fails_nothing(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator, short_tokens: Callable[[float], None]
) -> None:
    lifetime = 30.0
    short_tokens(lifetime)
    login_once(make_wrapper())  # the first token
    start = time.monotonic()
    before = emulator.stats.token_requests
    failures: list[str] = []
    logins = [0]

    def outage() -> None:
        time.sleep(max(start + lifetime * 2 / 3 - time.monotonic(), 0))
        emulator.set_fault("error")  # HTTP 500 from the identity endpoint
        time.sleep(max(start + lifetime * 1.2 - time.monotonic(), 0))
        emulator.clear_faults()

    def per_request() -> None:
        wrapper = make_wrapper()
        while time.monotonic() < start + lifetime * 1.4:
            try:
                login_once(wrapper)
                logins[0] += 1
            except Exception as exc:
                failures.append(f"{time.monotonic() - start:.1f} s: {type(exc).__name__}")

    threads = [threading.Thread(target=outage)]
    threads += [threading.Thread(target=per_request) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        emulator.clear_faults()
    print(
        f"\noutage 20-36 s of 30 s tokens: {logins[0]} logins, {len(failures)} failed, "
        f"{emulator.stats.token_requests - before} identity requests"
    )
    assert failures == []
    assert logins[0] > 100


@pytest.mark.integration
def test_forked_children_logging_in_over_short_tokens_fail_nothing(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator, short_tokens: Callable[[float], None]
) -> None:
    """12 children and their parent log in per request over 6 s tokens for 2.5 lifetimes,
    each login taking 0.3 s before the server checks the token: a token never reaches a
    login it will not outlive, and one that runs out on the way is retried, never reported
    as a wrong USER."""
    lifetime, children = 6.0, 12
    short_tokens(lifetime)
    login_once(make_wrapper())  # the parent holds a token when it forks
    emulator.set_fault(login_latency=0.3)
    wrappers = [make_wrapper() for _ in range(children + 1)]
    deadline = time.monotonic() + lifetime * 2.5
    index = iter(range(children))

    def work(wrapper: Any) -> str:
        logins, failed = 0, []
        while time.monotonic() < deadline:
            try:
                login_once(wrapper)
                logins += 1
            except Exception as exc:
                failed.append(f"{type(exc.__cause__ or exc).__name__}: {exc}"[:300])
        return f"{logins};" + "|".join(failed)

    refused_before = emulator.stats.logins_refused
    parent: list[str] = []
    in_parent = threading.Thread(target=lambda: parent.append(work(wrappers[-1])))
    in_parent.start()
    try:
        reports = in_children(children, lambda: work(wrappers[next(index)]))
    finally:
        in_parent.join()
    reports += parent
    failed = [r.split(";", 1)[1] for r in reports if not r[:1].isdigit() or r.split(";", 1)[1]]
    logins = sum(int(r.split(";", 1)[0]) for r in reports if r[:1].isdigit())
    print(
        f"\n{children} children + parent over {lifetime:g} s tokens: {logins} logins, "
        f"{emulator.stats.logins_refused - refused_before} refused by the server (and retried), "
        f"{len(failed)} processes with failures"
    )
    assert failed == []
    assert logins > children * 10


def test_the_outage_cadence_holds_through_any_number_of_failures() -> None:
    assert timing.outage_retry_delay(1) == timing.OUTAGE_RETRY_FIRST
    assert timing.outage_retry_delay(10**6) == timing.OUTAGE_RETRY_MAX  # no overflow
    assert timing.outage_attempts_bound(0) >= 1

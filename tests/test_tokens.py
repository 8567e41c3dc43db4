"""The token cache: single flight, refresh ahead, failures, timeouts, invalidation."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from django_azure_pg._core import sources as registry
from django_azure_pg._core import timing
from django_azure_pg._core import token_source as tokens
from django_azure_pg._core.token_source import TokenError, TokenSource, TokenThrottled, TokenTimeout

from .fakes import FakeClock, FakeCredential, FetchLog

SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


class Response:
    def __init__(self, status: int, retry_after: str | None) -> None:
        self.status_code = status
        self.headers = {"Retry-After": retry_after} if retry_after else {}


class ThrottledError(Exception):
    """Like azure-core's HttpResponseError: carries the response."""

    def __init__(self, retry_after: str | None = "120") -> None:
        super().__init__("(too_many_requests) slow down")
        self.response = Response(429, retry_after)
        self.status_code = 429


def make(cred: FakeCredential, clock: FakeClock, **kw: Any) -> TokenSource:
    return TokenSource(
        lambda: cred, SCOPE, label="FakeCredential", clock=clock, spread=lambda: 0.0, **kw
    )


@pytest.fixture
def fetches() -> Iterator[FetchLog]:
    with FetchLog() as log:
        yield log


def test_32_threads_cold_share_one_fetch() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.gate = threading.Event()
    source = make(cred, clock)
    barrier = threading.Barrier(32)

    def get() -> str:
        barrier.wait()
        return source.get()

    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(get) for _ in range(32)]
        assert cred.called.wait(5)
        cred.gate.set()
        results = {f.result(timeout=10) for f in futures}
    assert cred.calls == 1
    assert len(results) == 1


def test_warm_token_served_without_calls() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock)
    first = source.get()
    for _ in range(599):  # the refresh window opens at a sixth of the lifetime
        clock.advance(1)
        assert source.get() == first
    assert cred.calls == 1


def test_refresh_ahead_does_not_block_caller(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock, refresh_margin=300)
    first = source.get()
    clock.advance(3600 - 299)  # inside the margin, still valid
    cred.gate = threading.Event()  # the refresh will hang until released
    assert source.get() == first  # returned at once, with the refresh under way
    assert cred.called.wait(5)
    cred.gate.set()
    fetches.wait(2)
    assert cred.calls == 2
    assert source.get() != first


def test_a_margin_longer_than_the_token_refreshes_when_the_window_opens(
    fetches: FetchLog,
) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=60)
    source = make(cred, clock, refresh_margin=300)
    source.get()
    clock.advance(9)
    source.get()
    assert cred.calls == 1
    clock.advance(2)  # past a sixth of the lifetime: never earlier, whatever the margin
    source.get()
    fetches.wait(2)
    assert cred.calls == 2


def test_refresh_failure_while_valid_keeps_serving(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock)
    first = source.get()
    clock.advance(3400)
    cred.error = RuntimeError("endpoint down")
    assert source.get() == first
    fetches.wait(2)
    assert "still serving the cached token" in fetches.messages[-1]
    assert source.get() == first  # no immediate retry storm
    assert cred.calls == 2
    clock.advance(300)  # expired: now it must fail
    with pytest.raises(TokenError, match="endpoint down"):
        source.get()


def test_failed_refresh_retried_later_not_per_request(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock)
    source.get()
    clock.advance(3400)
    cred.error = RuntimeError("down")
    source.get()
    fetches.wait(2)
    for _ in range(50):
        source.get()
    assert cred.calls == 2
    clock.advance(69)  # half the usable time left (3540 - 3400) / 2 = 70 s: not yet
    source.get()
    assert cred.calls == 2
    clock.advance(1)
    cred.error = None
    source.get()
    fetches.wait(3)
    assert cred.calls == 3


def test_blocks_no_longer_than_timeout(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.gate = threading.Event()
    source = make(cred, clock, timeout=0.2)
    with pytest.raises(TokenTimeout, match=r"within 0\.2 s"):
        source.get()
    # A second caller joins the same hung fetch instead of starting another.
    with pytest.raises(TokenTimeout):
        source.get()
    assert cred.calls == 1
    cred.gate.set()
    fetches.wait(1)
    assert source.get()


def test_error_after_recovery_next_call_after_the_cadence_succeeds() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.error = RuntimeError("HTTP 500")
    source = make(cred, clock)
    with pytest.raises(TokenError):
        source.get()
    cred.error = None
    with pytest.raises(TokenError, match="HTTP 500"):
        source.get()  # within the outage cadence: the last error at once, no call
    assert cred.calls == 1
    clock.advance(timing.outage_retry_delay(1))
    assert source.get()  # the first caller after it asks, waits and is served
    assert cred.calls == 2


def test_error_text_never_contains_a_token() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    leaked = FakeCredential(clock).get_token(SCOPE).token
    cred.error = ValueError(f'JSON is invalid: {{"access_token": "{leaked}", "expires_in"')
    source = make(cred, clock)
    with pytest.raises(TokenError) as info:
        source.get()
    assert leaked not in str(info.value)
    assert leaked not in str(info.value.__cause__)
    assert "[redacted]" in str(info.value)


def test_repr_never_shows_the_token() -> None:
    clock = FakeClock()
    source = make(FakeCredential(clock), clock)
    token = source.get_token()
    assert token.value not in repr(token)
    assert token.value not in repr(source)


def test_registry_returns_one_source_per_key() -> None:
    cred = FakeCredential()
    a = registry.get_source("k", lambda: cred, SCOPE, label="x")
    b = registry.get_source("k", lambda: cred, SCOPE, label="x")
    c = registry.get_source("k", lambda: cred, "other/.default", label="x")
    assert a is b
    assert a is not c


def test_failed_credential_is_replaced_for_the_next_attempt() -> None:
    clock = FakeClock()
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        cred = FakeCredential(clock)
        if not built:
            cred.error = RuntimeError("unavailable (and stays so in this object)")
        built.append(cred)
        return cred

    source = TokenSource(factory, SCOPE, label="fake", clock=clock)
    with pytest.raises(TokenError):
        source.get()
    clock.advance(timing.outage_retry_delay(1))
    assert source.get()  # a new credential object, which works
    assert len(built) == 2


# -- refusals ---------------------------------------------------------------------


def test_refusal_forces_one_refresh_per_interval_and_keeps_the_cache() -> None:
    clock = FakeClock()
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        built.append(FakeCredential(clock))
        return built[-1]

    source = TokenSource(factory, SCOPE, label="fake", clock=clock)
    old = source.get_token()
    clock.advance(100)
    fresh = source.refresh_after_refusal(old)
    assert fresh is not None and fresh.value != old.value
    assert len(built) == 2  # a new credential object: its cache cannot return the refused token
    assert fresh.refusal_interval() == 30  # a 120th of an hour
    clock.advance(fresh.refusal_interval() - 1)
    assert source.refresh_after_refusal(fresh) is None  # budget spent: no fetch
    assert source.get() == fresh.value  # and the cached token is still served
    assert sum(c.calls for c in built) == 2
    clock.advance(2)
    assert source.refresh_after_refusal(fresh) is not None
    assert sum(c.calls for c in built) == 3


def test_burst_of_refusals_shares_one_fetch_and_others_do_not_wait() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    source = make(cred, clock)
    old = source.get_token()
    clock.advance(100)
    cred.gate = threading.Event()
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(source.refresh_after_refusal, old) for _ in range(16)]
        assert cred.called.wait(5)
        # While the forced refresh hangs, everyone else still gets the cached token at once.
        assert source.get() == old.value
        cred.gate.set()
        results = {f.result(timeout=10).value for f in futures}  # type: ignore[union-attr]
    assert len(results) == 1 and old.value not in results
    assert cred.calls == 2


def test_refusal_of_an_old_token_returns_the_newer_cached_one() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    source = make(cred, clock)
    old = source.get_token()
    clock.advance(100)
    newer = source.refresh_after_refusal(old)
    assert newer is not None
    assert source.refresh_after_refusal(old) == newer  # no fetch: a newer token is cached
    assert cred.calls == 2


class Failing:
    """A credential factory: the first object works, every later one fails with ``error``."""

    def __init__(self, clock: FakeClock, error: BaseException | None) -> None:
        self.clock = clock
        self.error = error
        self.built: list[FakeCredential] = []

    def __call__(self) -> FakeCredential:
        cred = FakeCredential(self.clock)
        if self.built:
            cred.error = self.error
        self.built.append(cred)
        return cred

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.built)


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (RuntimeError("HTTP 500 emulated outage"), TokenError),
        (ThrottledError("120"), TokenThrottled),
    ],
)
def test_a_failed_forced_refresh_raises_and_never_returns_the_refused_token(
    error: BaseException, raised: type[TokenError]
) -> None:
    clock = FakeClock()
    factory = Failing(clock, error)
    source = TokenSource(factory, SCOPE, label="fake", clock=clock)
    old = source.get_token()  # still valid locally, but the server refused it
    clock.advance(100)
    with pytest.raises(raised):
        source.refresh_after_refusal(old)
    assert factory.calls == 2
    assert source.get() == old.value  # the cached token still serves other aliases
    clock.advance(1)
    if raised is TokenThrottled:
        # Retry-After (120 s) is honoured: said again without another identity call.
        with pytest.raises(TokenThrottled):
            source.refresh_after_refusal(old)
        assert factory.calls == 2
        clock.advance(120)
    else:
        # A failed forced refresh spends nothing: the next refusal asks again.
        with pytest.raises(TokenError):
            source.refresh_after_refusal(old)
        assert factory.calls == 3
    factory.error = None  # the endpoint is back: the very next refusal gets a token
    fresh = source.refresh_after_refusal(old)
    assert fresh is not None and fresh.value != old.value


class CachingCredential(FakeCredential):
    """Hands back its last token while it has more than 5 minutes left, as azure-identity does."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600) -> None:
        super().__init__(clock, lifetime)
        self.last: AccessToken | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        last = self.last
        if last is not None and last.expires_on - self.clock() > 300:
            with self._lock:
                self.calls += 1
            self.called.set()
            if self.gate is not None:
                self.gate.wait(30)
            return last
        self.last = super().get_token(*scopes, **kwargs)
        return self.last


class Said(logging.Handler):
    """Sets an event when the token cache logs a line containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_a_forced_refresh_does_not_join_a_fetch_on_the_old_credential() -> None:
    clock = FakeClock()
    built: list[CachingCredential] = []

    def factory() -> CachingCredential:
        built.append(CachingCredential(clock))
        return built[-1]

    source = TokenSource(
        factory, SCOPE, label="fake", clock=clock, refresh_margin=600, spread=lambda: 0
    )
    old = source.get_token()
    clock.advance(3600 - 599)  # refresh due: a background fetch on the same credential object
    built[0].gate = threading.Event()
    built[0].called.clear()
    assert source.get() == old.value
    assert built[0].called.wait(5)
    said = Said("refused by the server")
    log = logging.getLogger("django_azure_pg._core.token_source")
    log.addHandler(said)
    try:
        with ThreadPoolExecutor(1) as pool:
            refreshed = pool.submit(source.refresh_after_refusal, old)
            assert said.event.wait(5)
            built[0].gate.set()  # the background fetch returns the refused token, from its cache
            fresh = refreshed.result(timeout=10)
    finally:
        log.removeHandler(said)
    assert fresh is not None and fresh.value != old.value
    assert len(built) == 2  # asked a new credential object, after the old one had answered


def test_a_hung_fetch_is_abandoned_after_the_bound_and_its_late_answer_ignored() -> None:
    clock = FakeClock()
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        cred = FakeCredential(clock)
        if not built:
            cred.gate = threading.Event()  # the first call hangs
        built.append(cred)
        return cred

    source = TokenSource(factory, SCOPE, label="fake", clock=clock, timeout=0.2, spread=lambda: 0)
    assert source.stuck_after == tokens.STUCK_FETCH_AFTER  # 3 x 0.2 s is less
    with pytest.raises(TokenTimeout):
        source.get()
    hung = source._inflight
    assert hung is not None
    clock.advance(source.stuck_after - 1)
    with pytest.raises(TokenTimeout):
        source.get()  # still within the bound: joins the hung fetch
    assert len(built) == 1
    clock.advance(2)
    token = source.get_token()  # past it: a new fetch, with a new credential object
    assert len(built) == 2
    gate = built[0].gate
    assert gate is not None
    gate.set()  # the hung call answers at last
    late = hung.future.result(timeout=5)
    assert late.value != token.value
    assert source.get_token() is token  # the late answer did not replace the newer token
    assert source._inflight is None


def test_the_same_token_from_the_credentials_cache_keeps_its_age(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = CachingCredential(clock)
    source = make(cred, clock)
    first = source.get_token()
    # Our refresh moment comes long before the credential's cache would refresh.
    clock.advance(source._next_refresh - clock.now)
    assert source.get_token() is first
    running = source._inflight
    assert running is not None
    assert running.future.result(timeout=5) is first  # the same object: same obtained_at
    assert source.get_token() is first
    assert cred.calls == 2
    assert not [m for m in fetches.messages if m.startswith("Refreshed")]
    # No tight loop: the next attempt waits half the usable time left.
    wait = (first.usable_until - clock.now) / 2
    clock.advance(wait - 1)
    source.get()
    assert cred.calls == 2
    clock.advance(1)
    source.get()
    running = source._inflight
    assert running is not None
    running.future.result(timeout=5)
    assert cred.calls == 3


@pytest.mark.parametrize("lifetime", [24 * 3600, 3600, 75 * 60])
def test_a_credential_handing_back_its_cached_token_is_asked_a_bounded_number_of_times(
    lifetime: float,
) -> None:
    """Its cache answers until the token's last 5 minutes (as azure-identity's and App
    Service's do): from the refresh moment on, at most timing.MAX_CALLS_AFTER_DUE calls."""
    clock = FakeClock()
    cred = CachingCredential(clock, lifetime=lifetime)
    source = make(cred, clock)
    first = source.get_token()
    step = lifetime / 2000
    while (token := source.get_token()).value == first.value:
        running = source._inflight
        if running is not None:
            running.future.result(timeout=5)
        clock.advance(step)
        assert clock.now < first.expires_on
    calls_after_due = cred.calls - 1
    print(f"\n{lifetime / 3600:g} h token: {calls_after_due} calls until a new token")
    assert calls_after_due <= timing.MAX_CALLS_AFTER_DUE
    assert token.expires_on - clock.now > 240  # and the new token came in time


def test_reset_forgets_what_live_sources_know() -> None:
    clock = FakeClock()
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        built.append(FakeCredential(clock))
        return built[-1]

    source = TokenSource(factory, SCOPE, label="fake", clock=clock)  # held by a wrapper or pool
    old = source.get_token()
    clock.advance(100)
    fresh = source.refresh_after_refusal(old)
    assert fresh is not None
    assert source.refresh_after_refusal(fresh) is None  # the refusal budget is spent
    registry.reset()
    assert source._token is None
    again = source.get_token()
    assert len(built) == 3  # a new credential object: its own cache cannot hand back `fresh`
    newer = source.refresh_after_refusal(again)  # and a budget again: a new test, a new start
    assert newer is not None and newer.value != again.value


def test_reset_keeping_tokens_forgets_only_what_faults_left() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    source = make(cred, clock)
    old = source.get_token()
    clock.advance(100)
    fresh = source.refresh_after_refusal(old)
    assert fresh is not None
    assert source.refresh_after_refusal(fresh) is None
    registry.reset(keep_tokens=True)  # the end of an azure_pg_faults test
    assert source.get_token() is fresh  # still warm: no fetch
    assert cred.calls == 2
    newer = source.refresh_after_refusal(fresh)  # but the refusal budget is there again
    assert newer is not None and newer.value != fresh.value
    assert cred.calls == 3


# -- spreading refreshes ------------------------------------------------------------


def test_refresh_moment_follows_the_process_place_in_the_window() -> None:
    clock = FakeClock()
    moments = []
    for place in (0.0, 0.5, 0.999):
        cred = FakeCredential(clock, lifetime=3600)
        source = TokenSource(
            lambda c=cred: c, SCOPE, label="x", clock=clock, spread=lambda p=place: p
        )
        token = source.get_token()
        moments.append(source._next_refresh - token.issued_at)
        # the window opens at a sixth of the lifetime and closes at half-life
        assert 600 <= moments[-1] < 1800
        assert source._next_refresh % 1200 == pytest.approx(place * 1200)
    assert len(set(moments)) == 3


def test_the_default_place_is_the_processes() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = TokenSource(lambda: cred, SCOPE, label="x", clock=clock)
    token = source.get_token()
    assert source._next_refresh == token.refresh_at(tokens.place())


# -- throttling -------------------------------------------------------------------


def test_throttled_refresh_keeps_serving_and_waits_for_retry_after(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock)
    first = source.get()
    clock.advance(3400)
    cred.error = ThrottledError("120")
    assert source.get() == first
    fetches.wait(2)
    for _ in range(100):
        clock.advance(1)  # 100 s: still before Retry-After
        assert source.get() == first
    assert cred.calls == 2  # nothing asked before the endpoint said so
    cred.error = None
    clock.advance(21)
    source.get()
    fetches.wait(3)
    assert cred.calls == 3
    assert source.get() != first


def test_throttled_with_no_token_fails_fast_saying_so() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.error = ThrottledError("120")
    source = make(cred, clock, timeout=5)
    with pytest.raises(TokenThrottled, match="throttled") as info:
        source.get()
    assert info.value.retry_after == 120
    # Until Retry-After has passed, callers fail at once without asking the endpoint.
    for _ in range(10):
        with pytest.raises(TokenThrottled, match="throttled"):
            source.get()
    assert cred.calls == 1


def test_throttled_retry_within_the_timeout_waits_on_the_injected_clock() -> None:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    cred = FakeCredential(clock)
    cred.error = ThrottledError("4")
    source = make(cred, clock, timeout=5, sleep=sleep)
    with pytest.raises(TokenThrottled):
        source.get()
    cred.error = None
    clock.advance(timing.outage_retry_delay(1))
    # The next attempt's one caller waits out the rest of the 4 s (on the clock), then fetches.
    assert source.get()
    assert slept == [4 - timing.outage_retry_delay(1)]
    assert cred.calls == 2


class HookedCredential(FakeCredential):
    """Reports its HTTP responses through the raw_response_hook, as azure-core does."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        if self.error is not None:
            tokens.observe_response(Response(429, "90"))
        return super().get_token(*scopes, **kwargs)


def test_throttle_seen_through_the_response_hook() -> None:
    clock = FakeClock()
    cred = HookedCredential(clock)
    cred.error = RuntimeError("App Service managed identity configuration not found")
    source = make(cred, clock, timeout=5)
    with pytest.raises(TokenThrottled, match="retry after 90 s"):
        source.get()


def test_slow_throttled_fetch_times_out_saying_throttled() -> None:
    clock = FakeClock()
    cred = HookedCredential(clock)
    cred.error = RuntimeError("unavailable")
    cred.gate = threading.Event()  # azure-identity still inside its own 429 retries
    source = make(cred, clock, timeout=0.3)
    with pytest.raises(TokenThrottled, match="throttled"):
        source.get()
    cred.gate.set()


# -- real lifetimes, injected clock -------------------------------------------------


class MsalLikeCredential(FakeCredential):
    """Like azure-identity's ManagedIdentityCredential over MSAL: ``get_token_info`` with
    ``refresh_on`` at half-life for tokens of 2 h or more, its own cache answering until
    then, and an endpoint that is down while ``down(now)`` says so."""

    def __init__(self, clock: FakeClock, lifetime: float, down: Any) -> None:
        super().__init__(clock, lifetime)
        self.down = down
        self.cached: AccessTokenInfo | None = None
        self.lifetime_for_refresh_on = 7200.0  # MSAL: tokens of 2 h or more

    def get_token_info(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        now = self.clock()
        cached = self.cached
        if cached is not None and cached.refresh_on is not None and now < cached.refresh_on:
            return cached
        if self.down(now):
            with self._lock:
                self.calls += 1
            if cached is not None and now < cached.expires_on:
                return cached  # MSAL keeps the cached token when a recommended refresh fails
            raise RuntimeError("identity endpoint down")
        access = self.get_token(*scopes)
        refresh_on = (
            now + self.lifetime / 2 if self.lifetime >= self.lifetime_for_refresh_on else None
        )
        self.cached = AccessTokenInfo(access.token, access.expires_on, refresh_on=refresh_on)
        return self.cached


def logins_over(source: TokenSource, clock: FakeClock, hours: float, every: float) -> list[str]:
    """Log in every ``every`` seconds for ``hours``; the server refuses expired tokens."""
    failures = []
    end = clock.now + hours * 3600
    while clock.now < end:
        try:
            token = source.get_token()
            if clock.now >= token.expires_on:
                failures.append(f"expired token at {clock.now / 3600:.2f} h")
        except TokenError as exc:
            failures.append(f"{clock.now / 3600:.2f} h: {type(exc).__name__}")
        running = source._inflight
        if running is not None:
            with contextlib.suppress(Exception):
                running.future.result(timeout=5)
        clock.advance(every)
    return failures


@pytest.mark.parametrize("place", [0.0, 0.5, 0.999])
def test_24_hour_token_rides_out_an_outage_from_hour_17_to_hour_25(place: float) -> None:
    clock = FakeClock(0.0)
    cred = MsalLikeCredential(clock, 24 * 3600, down=lambda now: 17 * 3600 <= now < 25 * 3600)
    source = TokenSource(lambda: cred, SCOPE, label="mi", clock=clock, spread=lambda: place)
    assert logins_over(source, clock, hours=48, every=60) == []
    assert source.get_token().refresh_on is not None  # refresh_on was honoured


def test_a_75_minute_user_token_is_refreshed_before_its_40th_minute() -> None:
    clock = FakeClock(0.0)
    cred = FakeCredential(clock, lifetime=75 * 60)  # get_token only, no refresh_on
    source = TokenSource(lambda: cred, SCOPE, label="cli", clock=clock, spread=lambda: 0.999)
    source.get_token()
    while cred.calls == 1:
        logins_over(source, clock, hours=1 / 60, every=10)
    assert clock.now < 40 * 60


@pytest.mark.parametrize(
    ("lifetime", "msal_refresh_on", "headroom"),
    [
        # lifetime, does the credential report refresh_on, longest outage survived when it
        # starts at the worst moment (just before the refresh of the last place) and the
        # credential keeps answering with its cached token until expiry, as azure-identity
        # does after a failed recommended refresh: the docs/reliability.md table
        (24 * 3600, True, 8 * 3600),
        (24 * 3600, False, 12 * 3600),
        (75 * 60, False, 37.5 * 60),
        (3600, False, 30 * 60),
        (6, False, 3),
    ],
)
def test_outage_headroom_table(lifetime: float, msal_refresh_on: bool, headroom: float) -> None:
    # The place whose refresh moment is the last of the window (places are grid phases).
    opens, closes = (
        (lifetime / 2, lifetime / 2 + lifetime / 2 * timing.WINDOW)
        if msal_refresh_on
        else (lifetime / 6, lifetime / 2)
    )
    width = closes - opens
    place = ((closes - 1e-6) % width) / width
    step = lifetime / 4000
    for outage, survives in ((headroom - 3 * step, True), (headroom + 3 * step, False)):
        clock = FakeClock(0.0)
        begins: list[float] = []

        def down(now: float, outage: float = outage, begins: list[float] = begins) -> bool:
            return bool(begins) and begins[0] <= now < begins[0] + outage

        cred = MsalLikeCredential(clock, lifetime, down=down)
        if not msal_refresh_on:
            cred.lifetime_for_refresh_on = float("inf")
        source = TokenSource(lambda c=cred: c, SCOPE, label="x", clock=clock, spread=lambda: place)
        first = source.get_token()
        assert source._next_refresh == pytest.approx(closes, abs=1e-3)
        begins.append(source._next_refresh - step)
        failures = logins_over(source, clock, hours=lifetime * 1.2 / 3600, every=step)
        assert (failures == []) is survives, (outage, failures[:3])
    assert first.refresh_on is not None if msal_refresh_on else first.refresh_on is None


@pytest.mark.parametrize("lifetime", [6.0, 3600.0, 4500.0, 86400.0])
@pytest.mark.parametrize("msal", [False, True])
def test_the_documented_refresh_window_is_the_caches_own(lifetime: float, msal: bool) -> None:
    """docs/reliability.md's headroom table is computed from the rule README states
    (harness.soak.refresh_window); it must be the rule the cache follows."""
    from harness.soak import refresh_window

    refresh_on = lifetime / 2 if msal else None
    token = timing.Token.issued("t", lifetime, 0.0, {"iat": 0}, refresh_on)
    assert refresh_window(lifetime, refresh_on) == pytest.approx(token.window())


# -- identity down, nothing usable cached: fail fast, one attempt at a time --------------


def test_while_the_identity_fails_callers_get_the_last_error_at_once() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.error = RuntimeError('HTTP 500 {"access_token": "eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.c2ln"}')
    source = make(cred, clock, timeout=5)
    with pytest.raises(TokenError):
        source.get()
    for _ in range(50):
        with pytest.raises(TokenError, match="HTTP 500") as info:
            source.get()
        assert "identity failing: 1 attempt(s) failed" in str(info.value)
        assert "eyJ4IjoxfQ" not in str(info.value)  # redacted, as the first report
        cause = info.value.__cause__
        assert isinstance(cause, tokens.CredentialFailure) and cause.exc_type is RuntimeError
        assert cause.__traceback__ is None  # frameless: no locals of the credential's frames
    assert cred.calls == 1


def test_each_failing_caller_gets_an_exception_of_its_own() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.error = RuntimeError("HTTP 500")
    source = make(cred, clock)
    with pytest.raises(TokenError):
        source.get()
    raised = []
    for _ in range(2):
        with pytest.raises(TokenError) as info:
            source.get()
        raised.append(info.value)
    assert raised[0] is not raised[1]  # threads never share (and grow) one traceback


@pytest.mark.parametrize("lifetime", [3600.0, 86_400.0])
def test_an_outage_outliving_the_token_fails_fast_bounded_and_recovers_within_a_second(
    lifetime: float,
) -> None:
    """At real lifetimes: the endpoint goes down before the refresh window and stays down
    past expiry; once nothing usable is left, calls fail at once, the endpoint is asked at
    the outage cadence (not a fraction of the lifetime) and the first caller after its
    return is served within OUTAGE_RETRY_MAX."""
    clock = FakeClock()
    start = clock.now
    outage = (start + lifetime * 0.1, start + lifetime * 1.2)
    cred = MsalLikeCredential(clock, lifetime, lambda now: outage[0] <= now < outage[1])
    source = make(cred, clock, timeout=5)
    token = source.get_token()
    step = 0.05
    while clock.now < token.usable_until:  # serving the cached token; sparse refresh attempts
        source.get_token()
        running = source._inflight
        if running is not None:
            with contextlib.suppress(Exception):
                running.future.result(timeout=5)
        clock.advance(max(step, (token.usable_until - clock.now) / 50))
    failed = 0
    while clock.now < outage[1] - 60:  # callers every 10 s until the outage's last minute
        try:
            source.get_token()  # MSAL's cache may hand back the token until it expires
        except TokenError:
            failed += 1
        clock.advance(10)
    assert failed > 0
    # The last minute, a caller every 50 ms: the calls stay within the documented bound.
    calls_before = cred.calls
    while clock.now < outage[1]:
        with contextlib.suppress(TokenError):
            source.get_token()
        clock.advance(step)
    calls = cred.calls - calls_before
    assert calls <= timing.outage_attempts_bound(60), calls
    assert calls >= 60 / timing.OUTAGE_RETRY_MAX - 2  # still asking, a second apart
    returned = clock.now
    while True:
        try:
            served = source.get_token()
            break
        except TokenError:
            clock.advance(step)
    assert clock.now - returned <= timing.OUTAGE_RETRY_MAX + step
    assert served.expires_on > clock.now + lifetime / 2


def test_the_outage_cadence_ramps_to_its_bound() -> None:
    delays = [timing.outage_retry_delay(n) for n in range(1, 8)]
    assert delays == sorted(delays)
    assert delays[0] < timing.OUTAGE_RETRY_MAX
    assert delays[-1] == timing.OUTAGE_RETRY_MAX
    assert timing.outage_attempts_bound(60) <= 60 / timing.OUTAGE_RETRY_MAX + 5


def test_a_hung_fetch_makes_one_caller_wait_and_the_others_share_its_deadline() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.gate = threading.Event()
    source = make(cred, clock, timeout=0.4)
    results: dict[str, float] = {}

    def caller(name: str) -> None:
        began = time.monotonic()
        with contextlib.suppress(TokenTimeout):
            source.get()
        results[name] = time.monotonic() - began

    first = threading.Thread(target=caller, args=("first",))
    first.start()
    assert cred.called.wait(5)
    time.sleep(0.2)  # a second caller arrives halfway through the first one's wait
    second = threading.Thread(target=caller, args=("second",))
    second.start()
    first.join(5)
    second.join(5)
    assert 0.35 <= results["first"] < 1.0, results
    assert results["second"] < 0.35, results  # the rest of the first's timeout, not its own
    # Past the deadline, while the fetch still hangs: at once, saying it timed out.
    began = time.monotonic()
    with pytest.raises(TokenTimeout, match=r"within 0\.4 s"):
        source.get()
    assert time.monotonic() - began < 0.1
    assert cred.calls == 1
    cred.gate.set()


def test_warm_starts_one_background_fetch_only_when_needed(fetches: FetchLog) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    source = make(cred, clock)
    source.warm()
    fetches.wait(1)
    assert cred.calls == 1
    source.warm()  # a usable token is cached
    assert source.get() and cred.calls == 1
    clock.advance(4000)
    cred.error = RuntimeError("down")
    source.warm()
    fetches.wait(2)
    source.warm()  # the identity is failing: callers drive the next attempt
    assert cred.calls == 2

"""The token cache: single flight, refresh ahead, failures, timeouts, invalidation."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from django_azure_pg import tokens
from django_azure_pg.tokens import TokenError, TokenSource, TokenTimeout

from .fakes import FakeClock, FakeCredential

SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


def make(cred: FakeCredential, clock: FakeClock, **kw: float) -> TokenSource:
    return TokenSource(lambda: cred, SCOPE, label="FakeCredential", clock=clock, **kw)


def wait_for_refresh(source: TokenSource) -> None:
    source.wait_idle(timeout=5)


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
    for _ in range(1000):
        clock.advance(1)
        assert source.get() == first
    assert cred.calls == 1


def test_refresh_ahead_does_not_block_caller() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock, refresh_margin=300)
    first = source.get()
    clock.advance(3600 - 299)  # inside the margin, still valid
    cred.gate = threading.Event()  # the refresh will hang until released
    assert source.get() == first  # returned at once, with the refresh under way
    assert cred.called.wait(5)
    cred.gate.set()
    wait_for_refresh(source)
    assert cred.calls == 2
    assert source.get() != first


def test_refresh_margin_is_capped_at_a_quarter_of_lifetime() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=60)
    source = make(cred, clock, refresh_margin=300)
    source.get()
    clock.advance(44)
    source.get()
    assert cred.calls == 1
    clock.advance(2)  # past three quarters of the lifetime
    source.get()
    wait_for_refresh(source)
    assert cred.calls == 2


def test_refresh_failure_while_valid_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock)
    first = source.get()
    clock.advance(3400)
    cred.error = RuntimeError("endpoint down")
    with caplog.at_level(logging.WARNING, "django_azure_pg"):
        assert source.get() == first
        wait_for_refresh(source)
    assert "still serving the cached token" in caplog.text
    assert source.get() == first  # no immediate retry storm
    assert cred.calls == 2
    clock.advance(300)  # expired: now it must fail
    with pytest.raises(TokenError, match="endpoint down"):
        source.get()


def test_failed_refresh_retried_later_not_per_request() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock, lifetime=3600)
    source = make(cred, clock)
    source.get()
    clock.advance(3400)
    cred.error = RuntimeError("down")
    for _ in range(50):
        source.get()
        wait_for_refresh(source)
    assert cred.calls == 2
    clock.advance(60)  # the retry interval has passed
    cred.error = None
    source.get()
    wait_for_refresh(source)
    assert cred.calls == 3


def test_blocks_no_longer_than_timeout() -> None:
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
    wait_for_refresh(source)
    assert source.get()


def test_error_after_recovery_next_call_succeeds() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    cred.error = RuntimeError("HTTP 500")
    source = make(cred, clock)
    with pytest.raises(TokenError):
        source.get()
    cred.error = None
    assert source.get()


def test_invalidate_once_for_a_burst() -> None:
    clock = FakeClock()
    cred = FakeCredential(clock)
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        built.append(cred)
        return cred

    source = TokenSource(factory, SCOPE, label="fake", clock=clock)
    bad = source.get()
    results = [source.invalidate(bad) for _ in range(16)]
    assert results.count(True) == 1
    fresh = {source.get() for _ in range(16)}
    assert cred.calls == 2
    assert fresh != {bad}
    assert len(built) == 2  # the fetch after a refusal uses a new credential object


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
    value = source.get()
    assert value not in repr(source.cached())
    assert value not in repr(source)


def test_registry_returns_one_source_per_key() -> None:
    cred = FakeCredential()
    a = tokens.get_source("k", lambda: cred, SCOPE, label="x")
    b = tokens.get_source("k", lambda: cred, SCOPE, label="x")
    c = tokens.get_source("k", lambda: cred, "other/.default", label="x")
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
    assert source.get()  # a new credential object, which works
    assert len(built) == 2

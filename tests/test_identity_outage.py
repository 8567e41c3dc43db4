"""The identity endpoint down, on the real stack (issues 23 and 30).

Inside Azure the ENGINE builds ManagedIdentityCredential, not DefaultAzureCredential:
a failing endpoint is reported once, as the managed identity's failure. With nothing
usable cached, a request fails at once with the last error while one attempt at a
time asks the endpoint again (the outage cadence, _core/timing.py); the credential's
own retry cycle is no longer what a request waits for (_core/credentials.py,
CREDENTIAL_RETRIES). Real time, real ManagedIdentityCredential, the emulator's faults.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db.utils import OperationalError

from django_azure_pg._core import credentials, timing
from django_azure_pg.errors import TokenAcquisitionError
from django_azure_pg_testing import IdentityEmulator

from .conftest import ITEST_DB, ROLE, MakeWrapper

pytestmark = pytest.mark.integration

CALLS_PER_ATTEMPT = 1 + credentials.CREDENTIAL_RETRIES


def test_endpoint_answering_500_fails_once_and_names_the_managed_identity(
    make_wrapper: MakeWrapper,
    emulator: IdentityEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.allow_role(ROLE)  # the system-assigned identity: no client id anywhere
    wrapper = make_wrapper(OPTIONS={"client_id": None}, NAME=ITEST_DB)
    assert wrapper.azure_login is not None
    assert wrapper.azure_login.choice.name == "ManagedIdentityCredential"
    assert "IDENTITY_ENDPOINT" in wrapper.azure_login.choice.reason
    emulator.set_fault("error")
    first = len(emulator.request_times)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO), pytest.raises(OperationalError) as info:
            wrapper.ensure_connection()
        took = time.monotonic() - started
        asked = len(emulator.request_times) - first
    finally:
        emulator.set_fault(None)

    assert isinstance(info.value.__cause__, TokenAcquisitionError)
    text = str(info.value)
    assert "ManagedIdentityCredential" in text
    assert "DefaultAzureCredential" not in text and "AzureCliCredential" not in text
    # One bounded attempt, not azure-identity's 4.86 s retry cycle.
    assert asked == CALLS_PER_ATTEMPT
    assert took < 1.0, took
    # One report per failure: our ERROR; azure-identity's WARNINGs about the same fetch are
    # dropped (they would repeat it twice more).
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in loud] == ["django_azure_pg._core.token_source"], [
        r.getMessage() for r in loud
    ]
    assert "ManagedIdentityCredential" in loud[0].getMessage()


def requests_on(
    wrappers: list[Any], stop: threading.Event
) -> tuple[list[float], list[float], list[BaseException], Callable[[], None]]:
    """Each wrapper's thread connects and closes until ``stop``: (failed latencies, success
    moments, errors, join)."""
    failed: list[float] = []
    served: list[float] = []
    errors: list[BaseException] = []

    def loop(wrapper: Any) -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                wrapper.ensure_connection()
            except OperationalError as exc:
                failed.append(time.monotonic() - began)
                errors.append(exc)
            else:
                served.append(time.monotonic())
            finally:
                wrapper.close()
            time.sleep(0.01)  # a request's other work

    threads = [threading.Thread(target=loop, args=(w,)) for w in wrappers]
    for t in threads:
        t.start()

    def join() -> None:
        stop.set()
        for t in threads:
            t.join(10)

    return failed, served, errors, join


def test_an_outage_with_nothing_cached_fails_requests_at_once_and_recovers_fast(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    """4 threads requesting through one identity while the endpoint answers HTTP 500."""
    emulator.allow_role(ROLE)
    wrappers = [make_wrapper(OPTIONS={"client_id": None}) for _ in range(4)]
    emulator.set_fault("error")
    first = len(emulator.request_times)
    stop = threading.Event()
    try:
        outage = 3.0
        failed, served, errors, join = requests_on(wrappers, stop)
        time.sleep(outage)
        calls = len(emulator.request_times) - first
        returned = time.monotonic()
        emulator.set_fault(None)
        deadline = returned + 5
        while not served and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        join()
        emulator.set_fault(None)
    assert len(failed) > 40  # requests kept coming, none held
    assert statistics.median(failed[1:]) < 0.5, statistics.median(failed[1:])
    assert max(failed[1:]) < 1.0, max(failed)
    # Every failure carries the endpoint's error, chained: what the first attempt said.
    assert all(isinstance(e.__cause__, TokenAcquisitionError) for e in errors)
    assert all("ManagedIdentityCredential" in str(e) for e in errors)
    # The endpoint was asked at the outage cadence, not per request.
    bound = timing.outage_attempts_bound(outage) * CALLS_PER_ATTEMPT
    assert calls <= bound, (calls, bound, len(failed))
    assert calls < len(failed) / 4
    # Served again within about half a second of the endpoint's return.
    assert served, "no request served after the endpoint returned"
    recovery = min(served) - returned
    assert recovery < 0.7, recovery


def test_an_endpoint_that_hangs_holds_one_waiter_and_no_queue(
    make_wrapper: MakeWrapper, emulator: IdentityEmulator
) -> None:
    emulator.allow_role(ROLE)
    timeout = 1.0
    wrappers = [make_wrapper(OPTIONS={"client_id": None, "token_timeout": timeout})]
    wrappers += [make_wrapper(OPTIONS={"client_id": None, "token_timeout": timeout})]
    emulator.set_fault("hang")
    stop = threading.Event()
    try:
        failed, served, _, join = requests_on(wrappers, stop)
        time.sleep(2.5 * timeout)
    finally:
        join()
        emulator.set_fault(None)
    assert failed, "no request finished"
    assert max(failed) < timeout + 0.5, failed  # nobody waits longer than one timeout
    slow = [f for f in failed if f > timeout / 2]
    # Per timeout, one waiter pays it (the one who started the attempt); the rest fail at once.
    assert len(slow) <= 3, failed
    assert statistics.median(failed) < 0.1, failed
    assert not served


def test_azure_identity_warnings_outside_our_fetches_are_left_alone(
    emulator: IdentityEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ManagedIdentityCredential

    emulator.set_fault("error")
    try:
        with caplog.at_level(logging.INFO), pytest.raises(ClientAuthenticationError):
            ManagedIdentityCredential(retry_total=0).get_token(
                "https://ossrdbms-aad.database.windows.net/.default"
            )
    finally:
        emulator.set_fault(None)
    assert any(
        r.name.startswith("azure.identity") and r.levelno == logging.WARNING for r in caplog.records
    )

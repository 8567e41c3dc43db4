"""An identity endpoint answering HTTP 500, on the real stack (issue 23).

Inside Azure the ENGINE builds ManagedIdentityCredential, not DefaultAzureCredential:
a failing endpoint is reported once, as the managed identity's failure, right after
azure-identity's own retries — not after walking (and printing) the whole chain.
"""

from __future__ import annotations

import logging
import time

import pytest
from django.db.utils import OperationalError

from django_azure_pg._core.diagnosis import classify
from django_azure_pg.errors import TokenAcquisitionError
from django_azure_pg_testing import IdentityEmulator

from .conftest import ITEST_DB, ROLE, MakeWrapper

pytestmark = pytest.mark.integration


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
        retried = emulator.request_times[first:]
    finally:
        emulator.set_fault(None)

    assert isinstance(info.value.__cause__, TokenAcquisitionError)
    assert classify(info.value) is TokenAcquisitionError
    text = str(info.value)
    assert "ManagedIdentityCredential" in text
    assert "DefaultAzureCredential" not in text and "AzureCliCredential" not in text
    # azure-identity's own retries, and under 1 s of ours around them.
    assert len(retried) >= 2
    ours = took - (retried[-1] - retried[0])
    assert ours < 1.0, (took, retried)
    # One report per failure: our ERROR; azure-identity's WARNINGs about the same fetch are
    # dropped (they would repeat it twice more).
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in loud] == ["django_azure_pg._core.tokens"], [
        r.getMessage() for r in loud
    ]
    assert "ManagedIdentityCredential" in loud[0].getMessage()


def test_azure_identity_warnings_outside_our_fetches_are_left_alone(
    emulator: IdentityEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ManagedIdentityCredential

    emulator.set_fault("error")
    try:
        with caplog.at_level(logging.INFO), pytest.raises(ClientAuthenticationError):
            ManagedIdentityCredential().get_token(
                "https://ossrdbms-aad.database.windows.net/.default"
            )
    finally:
        emulator.set_fault(None)
    assert any(
        r.name.startswith("azure.identity") and r.levelno == logging.WARNING for r in caplog.records
    )

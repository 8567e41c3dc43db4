"""A token is a password: never in error reports, logs, exception text or reprs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import django
import pytest
from django.core import mail
from django.db import OperationalError
from django.test import RequestFactory, override_settings
from django.utils.log import AdminEmailHandler

from django_azure_pg_testing import IdentityEmulator

from .conftest import MakeWrapper

pytestmark = pytest.mark.integration


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[_Collect]:
    """Every log record of every logger, at DEBUG, formatted with tracebacks."""
    handler = _Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def assert_no_token(text: str, emulator: IdentityEmulator) -> None:
    issued = emulator.issued_tokens()
    assert issued, "the scenario fetched no token, so it proves nothing"
    for token in issued:
        assert token not in text
        assert token[-40:] not in text  # not even the signature


# Django 6 takes plain addresses and deprecates (name, address) pairs; 4.2 needs pairs.
ADMINS = ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]


@override_settings(DEBUG=False, ADMINS=ADMINS)
def test_admin_email_of_a_failed_login_has_no_token(
    emulator: IdentityEmulator, make_wrapper: MakeWrapper, all_logs: _Collect, mailoutbox: list
) -> None:
    wrapper = make_wrapper(USER="aad_missing")  # token fetched, login refused
    with pytest.raises(OperationalError):
        try:
            wrapper.ensure_connection()
        except OperationalError:
            record = logging.LogRecord(
                "django.request",
                logging.ERROR,
                __file__,
                0,
                "Internal Server Error: /",
                (),
                sys.exc_info(),
            )
            record.request = RequestFactory().get("/")  # type: ignore[attr-defined]
            AdminEmailHandler(include_html=True).emit(record)
            raise
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    html = message.alternatives[0][0]
    assert "aad_missing" in html  # the report is real and detailed
    assert "get_new_connection" in html
    assert_no_token(message.body + str(html), emulator)
    assert_no_token("\n".join(all_logs.lines), emulator)


def test_debug_logs_through_refresh_and_refusal_have_no_token(
    emulator: IdentityEmulator,
    short_tokens: object,
    make_wrapper: MakeWrapper,
    all_logs: _Collect,
) -> None:
    short_tokens(2.0)  # type: ignore[operator]
    wrapper = make_wrapper()
    wrapper.ensure_connection()
    wrapper.close()
    emulator.revoke_all()  # next login is refused and retried
    wrapper.ensure_connection()
    wrapper.close()
    emulator.set_fault("error")
    try:
        broken = make_wrapper(OPTIONS={"token_timeout": 1, "client_id": "unknown-client"})
        with pytest.raises(OperationalError) as info:
            broken.ensure_connection()
    finally:
        emulator.clear_faults()
    text = "\n".join(all_logs.lines) + str(info.value) + repr(info.value.__cause__)
    assert "refused by the server" in text
    assert_no_token(text, emulator)

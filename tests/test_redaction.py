from __future__ import annotations

import logging
import sys

from django_azure_pg.redaction import MASK, RedactingFilter, redact
from django_azure_pg_testing import jwt


def test_jwts_and_token_fields_are_masked() -> None:
    token = jwt.mint({"a": 1})
    assert redact(f"bad reply {token} here") == f"bad reply {MASK} here"
    assert redact('{"access_token": "opaque123", "expires_in": 5}') == (
        '{"access_token": "' + MASK + '", "expires_in": 5}'
    )
    assert redact("password=hunter2 host=x") == f"password={MASK} host=x"
    assert redact("nothing secret") == "nothing secret"


def _record(name: str, exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.getLogger(name).makeRecord(
            name, logging.WARNING, __file__, 1, "failed: %s", (exc,), sys.exc_info()
        )


def test_identity_records_lose_their_frames_and_tokens() -> None:
    token = jwt.mint({"a": 1})
    record = _record("azure.identity._internal", ValueError(f"body {token}"))
    assert RedactingFilter().filter(record)
    assert record.exc_info is None  # frames (and their locals) are gone for every handler
    assert token not in record.getMessage() and token not in (record.exc_text or "")


def test_other_sdk_records_keep_a_clean_exception() -> None:
    keep = RedactingFilter(keep_clean_exceptions=True)
    clean = _record("azure.core.pipeline", ValueError("timeout"))
    assert keep.filter(clean) and clean.exc_info is not None  # error trackers still get it
    token = jwt.mint({"b": 2})
    dirty = _record("azure.core.pipeline", ValueError(f"reply {token}"))
    assert keep.filter(dirty) and dirty.exc_info is None
    assert token not in (dirty.exc_text or "")


def test_loggers_created_after_install_are_redacted_before_the_roots_handlers() -> None:
    import uuid

    from django_azure_pg import redaction

    redaction.install_log_redaction()
    token = jwt.mint({"c": 3})
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    keep, level = Keep(), root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        for parent in redaction.PARENT_LOGGERS:  # created after install, never filtered itself
            late = logging.getLogger(f"{parent}.late_{uuid.uuid4().hex}")
            late.warning("body: %s", f'{{"access_token": "{token}"}}junk')
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
    assert len(seen) == 2 and all(MASK in line and token not in line for line in seen)

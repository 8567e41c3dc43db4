"""Error trackers receive no token: Sentry at its default options, and redaction.scrub.

sentry-sdk's Django integration sends the local variables of every frame of an
exception by default; its own scrubber looks at top-level variable names only, not
at a ``"password"`` inside a dict or a conninfo string. These tests run sentry-sdk's
real client (an in-memory transport, nothing leaves the process) against a login the
server refuses — a wrong USER, the first failure many users meet — through the
ENGINE, the suite's PostgreSQL and tokens from the identity emulator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client, override_settings

from django_azure_pg import redaction
from django_azure_pg.redaction import MASK, scrub
from django_azure_pg_testing import Identity, IdentityEmulator

sentry_sdk = pytest.importorskip("sentry_sdk")
from sentry_sdk.integrations.django import DjangoIntegration  # noqa: E402
from sentry_sdk.integrations.logging import LoggingIntegration  # noqa: E402
from sentry_sdk.transport import Transport  # noqa: E402

TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJvaWQiOiIxMjM0NTY3ODkwYWJjZGVmIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


# -- scrub, offline ---------------------------------------------------------------------


def test_scrub_masks_a_remembered_secret_whole_and_in_pieces() -> None:
    redaction.remember(TOKEN)
    cut = TOKEN[:30]  # a value an error tracker cut short
    event = {
        "frames": [{"vars": {"params": {"'password'": f"'{TOKEN}'", "'dbname'": "'app'"}}}],
        "conninfo": f"host=x dbname=app password={TOKEN}",
        "message": f"value was {cut}...",
        "tail": [f"...{TOKEN[-40:]}", ("kept", 3)],
        "PGPASSWORD": "hunter2-static",
        "token_timeout": 10,
        "bare": TOKEN[10:60],
    }
    scrubbed = scrub(event)
    flat = repr(scrubbed)
    assert TOKEN[:16] not in flat and TOKEN[-16:] not in flat and TOKEN[20:36] not in flat
    assert "hunter2" not in flat
    assert scrubbed["frames"][0]["vars"]["params"]["'dbname'"] == "'app'"
    assert scrubbed["token_timeout"] == 10  # a number under a token-like key is no secret
    assert scrubbed["tail"][1] == ("kept", 3)
    assert scrubbed["conninfo"].startswith("host=x dbname=app ") and MASK in scrubbed["conninfo"]
    assert scrub("nothing secret here, 0123456789abcdefghij") == (
        "nothing secret here, 0123456789abcdefghij"
    )
    assert event["PGPASSWORD"] == "hunter2-static"  # the caller's object is left as it was


def test_a_short_static_password_is_masked_where_it_stands_as_a_password() -> None:
    """Replaced everywhere, ``postgres`` would garble every path in a traceback (and the
    gaps would spell it out): a short secret is masked only where it is a password."""
    redaction.remember("postgres")
    scrubbed = scrub(
        {
            "path": "django/db/backends/postgresql/base.py",
            "settings": {"PASSWORD": "postgres"},
            "conninfo": "host=db user=app password=postgres",
        }
    )
    assert scrubbed["path"] == "django/db/backends/postgresql/base.py"
    assert scrubbed["settings"]["PASSWORD"] == MASK
    assert "postgres" not in scrubbed["conninfo"]


def test_scrub_walks_a_structure_that_contains_itself_once() -> None:
    redaction.remember(TOKEN)
    looped: dict[str, Any] = {"value": TOKEN}
    looped["self"] = looped
    scrubbed = scrub(looped)
    assert scrubbed["value"] == MASK and scrubbed["self"] == MASK


def test_the_sentry_processor_drops_an_event_it_cannot_scrub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sentry-sdk 2 sends the event as it was when a processor raises: ours never raises."""

    def broken(obj: Any) -> Any:
        raise ValueError("cannot scrub")

    monkeypatch.setattr(redaction, "scrub", broken)
    assert redaction._sentry_event({"message": TOKEN}, {}) is None


# -- Sentry's real client --------------------------------------------------------------


class _Memory(Transport):
    """Keeps every envelope, serialized as it would be sent."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.sent: list[bytes] = []

    def capture_envelope(self, envelope: Any) -> None:
        self.sent.append(envelope.serialize())


@pytest.fixture
def sentry() -> Iterator[_Memory]:
    """sentry-sdk with its Django and logging integrations at default options (frame
    locals on; sentry-sdk 2 enables the logging one by itself, 3 on request)."""
    transport = _Memory()
    sentry_sdk.init(
        dsn="https://public@127.0.0.1/1",  # never dialled: the transport keeps everything
        transport=transport,
        integrations=[DjangoIntegration(), LoggingIntegration()],
    )
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)


def _copies(sent: list[bytes], emulator: IdentityEmulator) -> int:
    """Copies of any issued token, or of any 16-character piece of one, in what was sent."""
    issued = emulator.issued_tokens()
    assert issued, "no token was fetched: the scenario proves nothing"
    text = b"\n".join(sent).decode("utf-8", "replace")
    pieces = {t[i : i + 16] for t in issued for i in range(0, len(t) - 16, 8)}
    return sum(text.count(t) for t in issued) + sum(1 for p in pieces if p in text)


@pytest.fixture
def refused_alias(add_alias: Callable[..., str], identity: Identity) -> str:
    """An alias whose USER is not the identity's role: a token is fetched, then refused."""
    return add_alias(
        f"refused_{identity.client_id[:6]}",
        NAME="itest",
        USER="aad_missing",
        OPTIONS={"client_id": identity.client_id},
    )


def _fail_three_ways(alias: str) -> None:
    """An unhandled 500, an app's own capture_exception, and logger.exception."""
    with override_settings(ROOT_URLCONF="tests.error_tracker_urls", DEBUG=False):
        response = Client(raise_request_exception=False).get("/login", {"alias": alias})
    assert response.status_code == 500
    from django.db import connections

    try:
        connections[alias].ensure_connection()
    except OperationalError:
        sentry_sdk.capture_exception()
    try:  # another failure: Sentry drops a second event for the same exception
        connections[alias].ensure_connection()
    except OperationalError:
        logging.getLogger("myapp").exception("could not reach the database")
    sentry_sdk.flush()


@pytest.mark.integration
def test_sentry_receives_no_token_from_a_refused_login(
    sentry: _Memory, emulator: IdentityEmulator, refused_alias: str
) -> None:
    _fail_three_ways(refused_alias)
    assert len(sentry.sent) >= 3  # the 500, capture_exception, logger.exception
    sent = b"".join(sentry.sent)
    assert b"aad_missing" in sent and b"could not reach the database" in sent
    assert b'"vars"' in sent  # frame local variables were sent
    assert _copies(sentry.sent, emulator) == 0


@pytest.mark.integration
def test_without_the_scrubber_sentry_would_receive_the_token(
    sentry: _Memory,
    emulator: IdentityEmulator,
    refused_alias: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: the same events, the scrubber made a no-op, do carry the token."""
    monkeypatch.setattr(redaction, "scrub", lambda obj: obj)
    _fail_three_ways(refused_alias)
    assert _copies(sentry.sent, emulator) > 0


@pytest.mark.integration
def test_a_failed_logins_exception_chain_holds_no_token(
    emulator: IdentityEmulator, refused_alias: str
) -> None:
    from django.db import connections

    with pytest.raises(OperationalError) as raised:
        connections[refused_alias].ensure_connection()
    chain: list[BaseException] = []
    current: BaseException | None = raised.value
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    assert len(chain) >= 2  # Django's error, ours, psycopg's
    for exc in chain:
        assert getattr(exc, "pgconn", None) is None
        for token in emulator.issued_tokens():
            assert token not in repr(exc) and token not in str(exc)

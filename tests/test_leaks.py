"""A token is a password: never in error reports, logs, exception text or reprs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core import mail
from django.db import OperationalError
from django.test import RequestFactory, override_settings
from django.utils.log import AdminEmailHandler

from django_azure_pg_testing import Identity, IdentityEmulator

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


class _BadEndpoint:
    """An App Service identity endpoint whose answer holds a real token but breaks the parser.

    ``expires``: ``expires_on`` is not a number (msal's parser fails holding the
    payload in a local); ``junk``: valid JSON followed by junk (azure-core's error
    text quotes the body, and azure-identity logs it at WARNING).
    """

    def __init__(self, emulator: IdentityEmulator, identity: Identity, mode: str) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                token, expires_on = emulator.issue(identity)
                body = json.dumps(
                    {
                        "access_token": token,
                        "expires_on": "soon" if mode == "expires" else str(expires_on),
                        "resource": "https://ossrdbms-aad.database.windows.net",
                        "token_type": "Bearer",
                        "client_id": identity.client_id,
                    }
                ) + ("junk" if mode == "junk" else "")
                data = body.encode()
                outer.served += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.served = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode", ["expires", "junk"])
@override_settings(DEBUG=False, ADMINS=ADMINS)
def test_admin_email_of_a_failed_fetch_in_the_token_thread_has_no_token(
    mode: str,
    emulator: IdentityEmulator,
    identity: Identity,
    make_wrapper: MakeWrapper,
    all_logs: _Collect,
    mailoutbox: list,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = _BadEndpoint(emulator, identity, mode)
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    try:
        wrapper = make_wrapper(OPTIONS={"token_timeout": 20})
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
    finally:
        endpoint.close()
    assert endpoint.served >= 1  # the token was on the wire and in the parser's hands
    html = mail.outbox[0].alternatives[0][0]
    assert "could not get an Entra access token" in html  # the report is real
    assert_no_token(mail.outbox[0].body + str(html), emulator)
    assert_no_token("\n".join(all_logs.lines), emulator)


def test_redacting_filter_masks_azure_identity_warnings(emulator: IdentityEmulator) -> None:
    from django_azure_pg import redaction

    token, _ = emulator.issue(emulator.system)
    logger = logging.getLogger("azure.identity._internal.decorators")
    redaction.install_log_redaction()
    handler = _Collect()
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f'JSON is invalid\nContent: {{"access_token": "{token}"}}junk')
        except ValueError as exc:
            logger.warning("get_token failed: %s", exc, exc_info=True)
    finally:
        logger.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert "get_token failed" in text and "[redacted]" in text
    assert token not in text and token[-40:] not in text


_FIRST_FETCH = r"""
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(name)s %(levelname)s %(message)s")
import django_azure_pg  # the package as an app imports it: nothing built yet
from django_azure_pg._core.login import TokenLogin
login = TokenLogin.from_settings("default", {"client_id": sys.argv[1], "token_timeout": 20}, "r")
for name in list(logging.Logger.manager.loggerDict):
    logging.getLogger(name).setLevel(logging.DEBUG)  # every logger that exists, at DEBUG
logging.getLogger().setLevel(logging.DEBUG)
try:
    login.token()
except Exception as exc:
    print("raised", type(exc).__name__, exc)
created = sorted(n for n in logging.Logger.manager.loggerDict if n.startswith(("azure", "msal")))
print("loggers", *created)
"""


def test_first_fetch_in_a_fresh_process_logs_no_token(
    emulator: IdentityEmulator, identity: Identity, tmp_path: Any
) -> None:
    """A user-assigned identity's first fetch, answered with a token followed by junk:
    azure-identity creates ``msal_managed_identity_client``'s logger only now, and it logs
    the body at WARNING. Every logger at DEBUG, stdout and stderr: 0 copies of the token."""
    import os
    import subprocess

    endpoint = _BadEndpoint(emulator, identity, "junk")
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "DJANGO_AZURE_PG_"))
    }
    environ |= {
        "IDENTITY_ENDPOINT": endpoint.url,
        "IDENTITY_HEADER": emulator.identity_header,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FIRST_FETCH, identity.client_id],
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        endpoint.close()
    text = done.stdout + done.stderr
    assert endpoint.served >= 1, text  # the token was on the wire and in the parser's hands
    assert "raised" in done.stdout, text
    assert "azure.identity._internal.msal_managed_identity_client" in done.stdout, text
    assert "[redacted]" in done.stderr, text  # azure-identity did log the body
    assert_no_token(text, emulator)

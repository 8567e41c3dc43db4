"""What the identity endpoint said, as far as the token cache needs it.

HTTP 429 and its ``Retry-After`` (seen through azure-core's response hook,
because the error azure-identity raises afterwards does not say it), and what a
credential raised, reduced to text that carries no frames and no token. No
Django import here.
"""

from __future__ import annotations

import datetime
import email.utils
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..redaction import redact


def retry_after_seconds(headers: Any) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) from response headers, if any."""
    if not headers:
        return None
    value = None
    for name in ("Retry-After", "retry-after"):
        try:
            value = headers.get(name)
        except AttributeError:
            return None
        if value:
            break
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds(), 0.0)


THROTTLE_FALLBACK = 30.0
"""How long to leave a throttling endpoint alone when it named no ``Retry-After``."""


@dataclass
class Throttle:
    """The HTTP 429s one fetch met, and the longest wait the endpoint asked for."""

    count: int = 0
    retry_after: float = THROTTLE_FALLBACK


observing = threading.local()
"""``observing.throttle``: the :class:`Throttle` of the fetch this thread is running."""


def observe_response(response: Any) -> None:
    """azure-core ``raw_response_hook``: notes HTTP 429 and ``Retry-After`` for the fetch.

    azure-identity retries a 429 itself, honouring ``Retry-After`` (azure-core
    ``RetryPolicy``, used for App Service, IMDS and the confidential clients;
    IMDS adds 429 to its retried codes: sdk/identity/azure-identity/azure/identity/
    _credentials/imds.py ``PIPELINE_SETTINGS``; sdk/core/azure-core/azure/core/
    pipeline/policies/_retry.py). We add no retry loop of our own; we only need
    to know that the endpoint throttled, and for how long, which the error
    azure-identity raises afterwards does not say (App Service's reads
    "invalid_scope").
    """
    seen: Throttle | None = getattr(observing, "throttle", None)
    http = getattr(response, "http_response", response)
    _note_answer(http)
    if seen is None or getattr(http, "status_code", None) != 429:
        return
    seen.count += 1
    seen.retry_after = retry_after_seconds(getattr(http, "headers", None)) or THROTTLE_FALLBACK


@dataclass(frozen=True)
class Answer:
    """One answer of an identity endpoint: its HTTP status and where it came from."""

    status: int
    url: str  # scheme://host:port/path — no query string, no user info
    at: float  # time.monotonic()


last_answer: Answer | None = None
"""The last answer any credential this package built got (the doctor reads it:
azure-identity reports an App Service endpoint's HTTP 500 as "configuration not
found", without the status)."""


def _note_answer(http: Any) -> None:
    global last_answer
    status = getattr(http, "status_code", None)
    if not isinstance(status, int):
        return
    try:
        parts = urlsplit(str(http.request.url))
        port = f":{parts.port}" if parts.port else ""
        url = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
    except (AttributeError, ValueError):
        url = "?"
    last_answer = Answer(status, url, time.monotonic())


class CredentialFailure(Exception):
    """What a credential raised, as text only: type name and redacted message, no frames.

    The original exception's traceback holds frames whose locals hold the
    endpoint's raw response or the token (azure-identity's and msal's parsers,
    ``_call_credential``); Django's error reports print frame locals, and the
    token thread runs under no ``@sensitive_variables``. So nothing of it but
    this copy leaves the thread. ``exc_type`` keeps the original class for
    dispatch on types.
    """

    exc_type: type[BaseException] = Exception
    status_code: int | None = None  # the endpoint's HTTP status, where azure-core kept one


def safe_cause(exc: BaseException, depth: int = 0) -> CredentialFailure:
    """``exc`` and its causes as :class:`CredentialFailure` copies (at most 6 deep)."""
    inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    safe = CredentialFailure(f"{type(exc).__name__}: {redact(str(exc))}")
    safe.exc_type = type(exc)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):  # azure-core's HttpResponseError: the endpoint's HTTP status
        safe.status_code = status
    if inner is not None and depth < 5:
        safe.__cause__ = safe_cause(inner, depth + 1)
    return safe

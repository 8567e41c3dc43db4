"""Process-wide cache of Entra access tokens.

PostgreSQL checks a token only at login, so every new physical connection needs
one that is valid *now*. Fetching one per connection is slow (an HTTP call or an
``az`` subprocess) and stampedes the identity endpoint; fetching one at import
time breaks a day later. A :class:`TokenSource` sits in between:

* one fetch at a time per (credential, scope) — concurrent callers share it;
* a still-valid token is served at once and refreshed ahead of expiry in a
  background thread, so warm processes never wait;
* a refresh that fails while the token is still valid is logged and retried
  later; callers block only when no valid token is left, and then no longer
  than ``timeout`` seconds;
* each process picks its refresh moment at random inside the refresh window
  (again after ``fork()``), so workers sharing a token do not call the
  identity endpoint together;
* an endpoint that throttles (HTTP 429 / ``Retry-After``) is not asked again
  before the time it named; a valid cached token keeps being served meanwhile;
* a token the server refused forces a refresh at most once per
  ``REFUSAL_REFRESH_INTERVAL`` per identity, and never discards the cached
  token other aliases are using;
* after ``fork()`` the child gets fresh locks and a fresh credential object, so
  it never shares an HTTP connection with its parent.

This module deliberately has no Django import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import TokenCredential

from .errors import THROTTLE_FALLBACK, retry_after_seconds, throttled_retry_after
from .errors import TokenError as TokenError
from .errors import TokenThrottled as TokenThrottled
from .errors import TokenTimeout as TokenTimeout
from .redaction import install_log_redaction, redact

logger = logging.getLogger("django_azure_pg.tokens")

DEFAULT_REFRESH_MARGIN = 300.0
"""Refresh this many seconds before expiry (at most a quarter of the token's lifetime)."""

DEFAULT_TIMEOUT = 10.0
"""Longest a caller waits for a token when no valid one is cached."""

_MAX_RETRY_INTERVAL = 30.0

REFUSAL_REFRESH_INTERVAL = 30.0
"""At most one refresh per identity per this many seconds because the server refused a token."""


CredentialFactory = Callable[[], TokenCredential]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_on: float
    obtained_at: float

    @property
    def lifetime(self) -> float:
        return max(self.expires_on - self.obtained_at, 0.0)

    def skew(self) -> float:
        """Seconds before expiry at which the token is no longer handed out.

        A login takes a moment; a token that expires during it is refused.
        """
        return min(30.0, self.lifetime * 0.1)

    def usable(self, now: float) -> bool:
        return now < self.expires_on - self.skew()

    def refresh_at(self, margin: float, spread: float = 0.0) -> float:
        """When to refresh: inside the first half of the refresh window.

        The window opens ``margin`` seconds (at most a quarter of the lifetime)
        before expiry; ``spread`` in [0, 1) picks the moment within its first
        half, so processes sharing a token refresh at different times and the
        second half is left for retries.
        """
        window = min(margin, self.lifetime / 4)
        return self.expires_on - window + spread * window / 2


def _retry_interval(token: Token | None, now: float) -> float:
    """How long to wait before another background attempt."""
    if token is None:
        return 0.0
    remaining = token.expires_on - now
    return min(_MAX_RETRY_INTERVAL, max(remaining / 4, 0.05))


class TokenSource:
    """Tokens for one credential and one scope, shared by every thread."""

    def __init__(
        self,
        credential_factory: CredentialFactory,
        scope: str,
        *,
        label: str = "credential",
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock = time.time,
        rebuild_after_fork: bool = True,
        spread: Callable[[], float] = random.random,
    ) -> None:
        self.scope = scope
        self.label = label
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.clock = clock
        self._factory = credential_factory
        self._rebuild_after_fork = rebuild_after_fork
        self._spread = spread
        self._credential: TokenCredential | None = None
        self._fresh_credential = False
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._inflight: Future[Token] | None = None
        self._next_refresh = 0.0
        self._throttled_until = 0.0
        self._throttle_seen: _Throttle | None = None  # 429s seen by the fetch under way
        self._forced_at = -REFUSAL_REFRESH_INTERVAL  # last refresh forced by a refusal
        self._forced: Future[Token] | None = None
        _all_sources.add(self)

    def __repr__(self) -> str:
        return f"<TokenSource {self.label} scope={self.scope!r}>"

    # -- public API ---------------------------------------------------------

    def get(self) -> str:
        """A token valid now; waits only when none is cached."""
        return self.get_token().value

    def get_token(self) -> Token:
        now = self.clock()
        token = self._token
        if token is not None and token.usable(now):
            if now >= self._next_refresh:
                self._start_fetch(background=True)
            return token
        wait = self._throttled_until - now
        if wait >= self.timeout:
            raise self._throttled_error(wait)
        future = self._start_fetch(background=False)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            seen = self._throttle_seen
            if seen is not None and seen.count:
                raise self._throttled_error(seen.retry_after) from None
            raise TokenTimeout(
                f"{self.label} returned no token for scope {self.scope!r} within "
                f"{self.timeout:g} s (the identity endpoint is slow or not answering)"
            ) from None

    def refresh_after_refusal(self, refused: Token) -> Token | None:
        """A token worth one more login after the server refused ``refused``.

        The cached token is never dropped, so other aliases sharing this
        identity keep using it. If a newer token is already cached (or a
        forced refresh is under way), that one is returned without a fetch.
        Otherwise one refresh is forced — with a new credential object, whose
        own cache cannot hand back the refused token — at most once per
        ``REFUSAL_REFRESH_INTERVAL``: ``None`` means the budget is spent,
        i.e. a token fetched moments ago was refused as well, and another
        fetch would only hammer the identity endpoint.
        """
        now = self.clock()
        with self._lock:
            current = self._token
            if current is not None and current.value != refused.value and current.usable(now):
                return current
            forced = self._forced
            if forced is None or forced.done():
                if now - self._forced_at < REFUSAL_REFRESH_INTERVAL:
                    return None
                self._forced_at = now
                self._fresh_credential = True
                forced = self._forced = self._start_fetch_locked()
        logger.warning(
            "Access token from %s was refused by the server; fetching a new one", self.label
        )
        try:
            token = forced.result(timeout=self.timeout)
        except FutureTimeout:
            raise TokenTimeout(
                f"{self.label} returned no token for scope {self.scope!r} within "
                f"{self.timeout:g} s (the identity endpoint is slow or not answering)"
            ) from None
        return token if token.value != refused.value else None

    # -- internals ----------------------------------------------------------

    def _throttled_error(self, retry_after: float) -> TokenThrottled:
        return TokenThrottled(
            f"{self.label} could not get a token for scope {self.scope!r}: the identity "
            f"endpoint throttled the requests (HTTP 429) and asked to retry after "
            f"{retry_after:g} s",
            retry_after,
        )

    def _start_fetch(self, *, background: bool) -> Future[Token]:
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            # Another thread may have finished a fetch between our check and the lock.
            now, token = self.clock(), self._token
            usable = token is not None and token.usable(now)
            if usable and (not background or now < self._next_refresh):
                return _done(token)
            return self._start_fetch_locked()

    def _start_fetch_locked(self) -> Future[Token]:
        if self._inflight is not None:
            return self._inflight
        future: Future[Token] = Future()
        self._inflight = future
        thread = threading.Thread(
            target=self._fetch, args=(future,), name="django-azure-pg-token", daemon=True
        )
        thread.start()
        return future

    def _credential_for_fetch(self) -> TokenCredential:
        with self._lock:
            replaced = None
            if self._credential is None or self._fresh_credential:
                replaced, self._credential = self._credential, self._factory()
                self._fresh_credential = False
            credential = self._credential
        if replaced is not None and replaced is not credential:
            # Single flight: nothing else is using it. Release its HTTP session.
            with contextlib.suppress(Exception):
                replaced.close()  # type: ignore[attr-defined]
        return credential

    def _fetch(self, future: Future[Token]) -> None:
        previous = self._token
        # Never ask a throttling endpoint before the time it named. Callers are
        # only made to wait here when that time falls within their timeout.
        delay = self._throttled_until - self.clock()
        if delay > 0:
            time.sleep(delay)
        seen = self._throttle_seen = _Throttle()
        _observing.throttle = seen
        started = time.monotonic()
        install_log_redaction()
        try:
            token = self._call_credential()
        except BaseException as exc:
            self._fetch_failed(future, exc, previous, time.monotonic() - started, seen)
            return
        finally:
            _observing.throttle = None
        elapsed = time.monotonic() - started
        now = self.clock()
        with self._lock:
            self._token = token
            self._next_refresh = max(
                token.refresh_at(self.refresh_margin, self._spread()),
                now + _retry_interval(token, now),
            )
            self._inflight = None
        logger.info(
            "%s access token from %s in %.0f ms; expires in %.0f s",
            "Refreshed" if previous is not None else "Fetched",
            self.label,
            elapsed * 1000,
            token.expires_on - now,
        )
        future.set_result(token)

    def _call_credential(self) -> Token:
        credential = self._credential_for_fetch()
        access = credential.get_token(self.scope)
        return Token(access.token, float(access.expires_on), self.clock())

    def _fetch_failed(
        self,
        future: Future[Token],
        exc: BaseException,
        previous: Token | None,
        elapsed: float,
        seen: _Throttle,
    ) -> None:
        now = self.clock()
        retry_after = seen.retry_after if seen.count else throttled_retry_after(exc)
        if retry_after is not None:
            error: TokenError = self._throttled_error(retry_after)
        else:
            error = TokenError(
                f"{self.label} could not get a token for scope {self.scope!r} "
                f"after {elapsed:.1f} s: {type(exc).__name__}: {redact(str(exc))}"
            )
        # Only a frameless, redacted copy of the credential's exception leaves this thread.
        error.__cause__ = _safe_cause(exc)
        with self._lock:
            self._inflight = None
            # azure-identity's managed-identity credentials stay "unavailable" after the
            # endpoint failed once, even when it has recovered: the next attempt gets a new one.
            self._fresh_credential = True
            still_valid = previous is not None and previous is self._token and previous.usable(now)
            self._next_refresh = now + _retry_interval(self._token, now)
            if retry_after is not None:
                self._throttled_until = now + retry_after
                self._next_refresh = max(self._next_refresh, self._throttled_until)
        if still_valid:
            assert previous is not None
            logger.warning(
                "Token refresh failed; still serving the cached token (expires in %.0f s): %s",
                previous.expires_on - now,
                error,
            )
            future.set_result(previous)
        else:
            logger.error("%s", error)
            future.set_exception(error)

    def _reschedule(self) -> None:
        """A new random refresh moment for the inherited token (after ``fork()``)."""
        token = self._token
        if token is not None:
            self._next_refresh = token.refresh_at(self.refresh_margin, self._spread())

    def _after_fork(self) -> None:
        # In the child: the parent's threads are gone, so a lock they held stays held
        # and a fetch they ran never completes; the credential's HTTP connection is
        # the parent's. Fresh locks, no fetch in flight, and a new credential.
        self._lock = threading.Lock()
        self._inflight = self._latest = None
        if self._rebuild_after_fork and self._credential is not None:
            # Keep the old object alive: its finalizers must not run (or take a
            # lock a parent thread held) in the child.
            _retired.append(self._credential)
            self._credential = None


def _done(token: Token | None) -> Future[Token]:
    future: Future[Token] = Future()
    if token is not None:
        future.set_result(token)
    return future


# -- what the identity endpoint said ------------------------------------------


@dataclass
class _Throttle:
    count: int = 0
    retry_after: float = THROTTLE_FALLBACK


_observing = threading.local()


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
    seen: _Throttle | None = getattr(_observing, "throttle", None)
    http = getattr(response, "http_response", response)
    if seen is None or getattr(http, "status_code", None) != 429:
        return
    seen.count += 1
    seen.retry_after = retry_after_seconds(getattr(http, "headers", None)) or THROTTLE_FALLBACK


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


def _safe_cause(exc: BaseException, depth: int = 0) -> CredentialFailure:
    inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    safe = CredentialFailure(f"{type(exc).__name__}: {redact(str(exc))}")
    safe.exc_type = type(exc)
    if inner is not None and depth < 5:
        safe.__cause__ = _safe_cause(inner, depth + 1)
    return safe


_retired: list[TokenCredential] = []


# -- process-wide registry ------------------------------------------------

_all_sources: weakref.WeakSet[TokenSource] = weakref.WeakSet()
_registry: dict[Hashable, TokenSource] = {}
_registry_lock = threading.Lock()


def get_source(
    key: Hashable,
    credential_factory: CredentialFactory,
    scope: str,
    *,
    label: str,
    refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    timeout: float = DEFAULT_TIMEOUT,
    rebuild_after_fork: bool = True,
) -> TokenSource:
    """The one :class:`TokenSource` for this credential configuration and scope."""
    full_key = (key, scope, refresh_margin, timeout)
    source = _registry.get(full_key)
    if source is not None:
        return source
    with _registry_lock:
        source = _registry.get(full_key)
        if source is None:
            source = TokenSource(
                credential_factory,
                scope,
                label=label,
                refresh_margin=refresh_margin,
                timeout=timeout,
                rebuild_after_fork=rebuild_after_fork,
            )
            _registry[full_key] = source
        return source


def reset() -> None:
    """Forget every cached token (tests, and after settings change)."""
    with _registry_lock:
        _registry.clear()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for source in list(_all_sources):
        source._after_fork()


def _spread_after_fork_in_child() -> None:
    # Every child draws its own refresh moment for the token it inherited, so
    # workers forked from one master (gunicorn --preload, Celery prefork) do not
    # all call the identity endpoint at the same instant. (``random`` reseeds
    # itself in the child.)
    for source in list(_all_sources):
        source._forced = None
        source._reschedule()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
    os.register_at_fork(after_in_child=_spread_after_fork_in_child)

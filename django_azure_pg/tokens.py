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
* after ``fork()`` the child gets fresh locks and a fresh credential object, so
  it never shares an HTTP connection with its parent.

This module deliberately has no Django import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from azure.core.credentials import TokenCredential

from .redaction import install_log_redaction, redact

logger = logging.getLogger("django_azure_pg.tokens")

DEFAULT_REFRESH_MARGIN = 300.0
"""Refresh this many seconds before expiry (at most a quarter of the token's lifetime)."""

DEFAULT_TIMEOUT = 10.0
"""Longest a caller waits for a token when no valid one is cached."""

_MAX_RETRY_INTERVAL = 30.0


CredentialFactory = Callable[[], TokenCredential]
Clock = Callable[[], float]


class TokenError(Exception):
    """No token could be obtained. The message never contains a token."""


class TokenTimeout(TokenError):
    """The credential did not answer within the configured bound."""


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

    def refresh_at(self, margin: float) -> float:
        return self.expires_on - min(margin, self.lifetime / 4)


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
    ) -> None:
        self.scope = scope
        self.label = label
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self._factory = credential_factory
        self._clock = clock
        self._rebuild_after_fork = rebuild_after_fork
        self._credential: TokenCredential | None = None
        self._fresh_credential = False
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._inflight: Future[Token] | None = None
        self._latest: Future[Token] | None = None  # completed only after its logging
        self._next_refresh = 0.0
        _all_sources.add(self)

    def __repr__(self) -> str:
        return f"<TokenSource {self.label} scope={self.scope!r}>"

    # -- public API ---------------------------------------------------------

    def get(self) -> str:
        """A token valid now; waits only when none is cached."""
        return self.get_token().value

    def get_token(self) -> Token:
        now = self._clock()
        token = self._token
        if token is not None and token.usable(now):
            if now >= self._next_refresh:
                self._start_fetch(background=True)
            return token
        future = self._start_fetch(background=False)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            raise TokenTimeout(
                f"{self.label} returned no token for scope {self.scope!r} within "
                f"{self.timeout:g} s (the identity endpoint is slow or not answering)"
            ) from None

    def invalidate(self, value: str) -> bool:
        """Forget ``value`` after the server refused it.

        Only the first caller holding that token invalidates it; the others find
        a newer token already cached (or a fetch under way) and share it, so a
        burst of rejected logins causes one fetch, not a stampede. The next fetch
        uses a new credential object, whose own cache cannot hand back the
        refused token.
        """
        with self._lock:
            if self._token is None or self._token.value != value:
                return False
            self._token = None
            self._next_refresh = 0.0
            self._fresh_credential = True
        logger.warning(
            "Access token from %s was refused by the server; fetching a new one", self.label
        )
        return True

    def cached(self) -> Token | None:
        return self._token

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for the latest fetch, background ones included, to finish (tests, diagnostics)."""
        latest = self._latest
        if latest is not None:
            latest.exception(timeout)

    # -- internals ----------------------------------------------------------

    def _start_fetch(self, *, background: bool) -> Future[Token]:
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            if background and self._clock() < self._next_refresh and self._latest is not None:
                # Another thread finished a refresh between our check and the lock.
                return self._latest
            future: Future[Token] = Future()
            self._inflight = self._latest = future
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
        started = time.monotonic()
        install_log_redaction()
        try:
            token = self._call_credential()
        except BaseException as exc:
            self._fetch_failed(future, exc, previous, time.monotonic() - started)
            return
        elapsed = time.monotonic() - started
        now = self._clock()
        with self._lock:
            self._token = token
            self._next_refresh = max(
                token.refresh_at(self.refresh_margin), now + _retry_interval(token, now)
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
        return Token(access.token, float(access.expires_on), self._clock())

    def _fetch_failed(
        self, future: Future[Token], exc: BaseException, previous: Token | None, elapsed: float
    ) -> None:
        now = self._clock()
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


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

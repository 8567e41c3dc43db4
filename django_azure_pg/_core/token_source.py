"""Process-wide cache of Entra access tokens.

PostgreSQL checks a token only at login, so every new physical connection needs
one that is valid *now*. Fetching one per connection is slow (an HTTP call or an
``az`` subprocess) and stampedes the identity endpoint; fetching one at import
time breaks a day later. A :class:`TokenSource` sits in between:

* one fetch at a time per (credential, scope) — concurrent callers share it;
* a still-valid token is served at once and refreshed in a background
  thread from half its lifetime (or when the credential recommends,
  ``refresh_on``), so warm processes never wait and an identity outage of up
  to about half a token's lifetime goes unnoticed (rules: :mod:`.timing`);
* a refresh that fails, or brings back the token already held (the
  credential's or the endpoint's own cache), while the token is still usable
  is retried after half the usable time left; callers block only when no
  usable token is left, and then no longer than ``timeout`` seconds;
* while the identity is down (no usable token, the last fetch failed) callers
  fail at once with the last error; the next attempt is made by the first
  caller after the outage cadence (:func:`.timing.outage_retry_delay`: at most
  two a second), and that caller alone waits for it — so the first request
  after the endpoint's return gets a token, and nobody queues behind an
  endpoint that hangs: callers joining a fetch share the first waiter's
  ``timeout``, and once it has run out they fail at once too;
* a fetch that hangs (no answer after ``TokenSource.stuck_after``) is
  abandoned and the next caller asks again with a new credential object; the
  late answer of the abandoned one never overwrites newer state;
* each process has its own place inside the refresh window (again after
  ``fork()``), so workers sharing a token do not call the identity endpoint
  together;
* an endpoint that throttles (HTTP 429 / ``Retry-After``) is not asked again
  before the time it named; a valid cached token keeps being served meanwhile;
* a token the server refused forces a refresh, which never discards the
  cached token other aliases are using; a token fetched by such a refresh and
  refused again blocks further forced refreshes for a fraction of its
  lifetime (a configuration error, not a stale token); a forced refresh that
  fails spends nothing, so the first login after the endpoint recovers gets
  a token; a refusal because the token ran out of time during the login
  never counts as a configuration error;
* after ``fork()`` the child gets fresh locks and a fresh credential object, so
  it never shares an HTTP connection with its parent.

The rest of the token path, one job per module: the timing rules
(:mod:`.timing`), what the identity endpoint said (:mod:`.endpoint`), one
source per credential configuration (:mod:`.registry`), the at-fork handler
(:mod:`.forksafe`). This module deliberately has no Django import.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field

from azure.core.credentials import TokenCredential

from ..errors import TokenError as TokenError
from ..errors import TokenThrottled as TokenThrottled
from ..errors import TokenTimeout as TokenTimeout
from ..redaction import install_log_redaction, redact
from . import claims, endpoint, forksafe, telemetry
from .diagnosis import throttled_retry_after
from .endpoint import CredentialFailure as CredentialFailure
from .endpoint import observe_response as observe_response
from .timing import Token as Token
from .timing import child_place, outage_retry_delay

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_MARGIN: float | None = None
"""``OPTIONS["token_refresh_margin"]``: unset, the refresh window follows :mod:`.timing` alone."""

DEFAULT_TIMEOUT = 10.0
"""Longest a caller waits for a token when no valid one is cached."""

STUCK_FETCH_AFTER = 90.0
"""A fetch in flight this long (or three times ``timeout``, if longer) is abandoned: see ``_running``."""


CredentialFactory = Callable[[], TokenCredential]
Clock = Callable[[], float]


@dataclass(eq=False)
class _Fetch:
    """One call to the credential, run in its own thread, and the callers waiting for it."""

    started: float  # by the source's clock
    generation: int  # the source's state generation when it started (see TokenSource.forget)
    refused: str | None = field(default=None, repr=False)  # set for a refusal-forced refresh
    timed: bool = False  # forced because the refused token ran out of time: spends no budget
    after: _Fetch | None = None  # a fetch in flight that a forced refresh waits for first
    future: Future[Token] = field(default_factory=Future)
    began: float = field(default_factory=time.monotonic)  # its callers' deadline: + timeout
    thread: threading.Thread = field(init=False, repr=False)
    seen: endpoint.Throttle = field(default_factory=lambda: endpoint.Throttle())  # its 429s

    @property
    def forced(self) -> bool:
        return self.refused is not None

    def throttled(self) -> endpoint.Throttle | None:
        for fetch in (self, self.after):
            if fetch is not None and fetch.seen.count:
                return fetch.seen
        return None


@dataclass
class _Outage:
    """The identity is failing: no usable token, and the last fetch failed (see ``get_token``)."""

    error: TokenError  # the last failure, as callers get it (redacted, frameless cause)
    failures: int  # consecutive
    failed_at: float  # by the source's clock
    retry_at: float  # the next attempt, started by the first caller after it

    def again(self, now: float) -> TokenError:
        """A new exception (threads never share one) saying the last error, chained as it was."""
        ago = max(now - self.failed_at, 0.0)
        text = (
            f"{self.error} [identity failing: {self.failures} attempt(s) failed, the last "
            f"{ago:.1f} s ago; callers fail at once until an attempt succeeds]"
        )
        if isinstance(self.error, TokenThrottled):
            copy: TokenError = TokenThrottled(text, self.error.retry_after)
        else:
            copy = type(self.error)(text)
        copy.__cause__ = self.error.__cause__
        return copy


def _ready(token: Token, now: float) -> _Fetch:
    fetch = _Fetch(now, 0)
    fetch.future.set_result(token)
    return fetch


class TokenSource:
    """Tokens for one credential and one scope, shared by every thread.

    State changes only under ``_lock``, and only the fetch in flight
    (``_inflight``) may change it: a fetch that was abandoned (hung too long,
    ``reset()``) or displaced (by a forced refresh) still answers its own
    callers but leaves the cache alone, so a late answer never overwrites a
    newer one.
    """

    def __init__(
        self,
        credential_factory: CredentialFactory,
        scope: str,
        *,
        label: str = "credential",
        refresh_margin: float | None = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rebuild_after_fork: bool = True,
        spread: Callable[[], float] | None = None,
    ) -> None:
        self.scope = scope
        self.label = label
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep  # waits measured by ``clock``: tests inject both
        self._factory = credential_factory
        self._rebuild_after_fork = rebuild_after_fork
        self._spread = spread or place
        self._credential: TokenCredential | None = None
        self._fresh_credential = False
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._inflight: _Fetch | None = None
        self._last_error: tuple[float, str] | None = None  # time.time(), redacted text
        self._next_refresh = 0.0
        self._throttled_until = 0.0
        # The token the last successful refusal-forced refresh brought, and when:
        # that token refused as well means a configuration error (see refresh_after_refusal).
        self._forced: Token | None = None
        self._forced_ok_at = 0.0
        self._outage: _Outage | None = None
        self._generation = 0
        _all_sources.add(self)

    def __repr__(self) -> str:
        return f"<TokenSource {self.label} scope={self.scope!r}>"

    @property
    def stuck_after(self) -> float:
        """After this many seconds a fetch in flight is abandoned and another one started."""
        return max(3 * self.timeout, STUCK_FETCH_AFTER)

    # -- public API ---------------------------------------------------------

    def get(self) -> str:
        """A token valid now; waits only when none is cached."""
        return self.get_token().value

    def get_token(self) -> Token:
        now = self.clock()
        token = self._token
        if token is not None and token.usable(now):
            if now >= self._next_refresh:
                self._start_refresh()
            return token
        wait = self._throttled_until - now
        if wait >= self.timeout:
            raise self._throttled_error(wait)
        return self._wait(self._fetch_for_caller())

    def wait_for_fetch(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the fetch in flight, if any (before ``fork()``:
        warm start)."""
        fetch = self._inflight
        if fetch is not None:
            futures_wait([fetch.future], timeout=timeout)

    def warm(self) -> None:
        """Start fetching in the background unless a usable token is cached, a fetch is in
        flight, or the identity is failing (warm start: ``django_azure_pg/_warm.py``)."""
        with self._lock:
            now = self.clock()
            token = self._token
            if token is not None and token.usable(now):
                return
            if self._running(now) is not None or self._outage is not None:
                return
            if self._throttled_until > now:
                return
            self._begin(now)

    def refresh_after_refusal(self, refused: Token, *, timed: bool = False) -> Token | None:
        """A token worth one more login after the server refused ``refused``.

        The cached token is never dropped, so other aliases sharing this
        identity keep using it. If a newer usable token is already cached (or
        a forced refresh is under way), that one is returned without a fetch.
        Otherwise one refresh is forced, with a new credential object (whose
        own cache cannot hand back the refused token).

        ``None`` means: the refused token was itself brought by a forced
        refresh less than :meth:`Token.refusal_interval` ago — fresh tokens are
        refused too, so the configuration is wrong and another fetch would only
        load the identity endpoint. A forced refresh that failed spends nothing:
        the next refusal tries again (one fetch at a time, ``Retry-After``
        honoured), so the first login after the endpoint recovers works.
        ``timed=True`` (the token ran out of time during the login) never
        counts towards that: it says nothing about the configuration.

        A forced refresh that fails raises :class:`TokenError`: the refused
        token is never handed back as if it were new, so the caller reports
        "no token", not "wrong USER".
        """
        now = self.clock()
        with self._lock:
            current = self._token
            if current is not None and current.value != refused.value and current.usable(now):
                return current
            fetch = self._running(now)
            if fetch is None or not fetch.forced:
                forced = self._forced
                if (
                    not timed
                    and forced is not None
                    and forced.value == refused.value
                    and now - self._forced_ok_at < forced.refusal_interval()
                ):
                    return None
                wait = self._throttled_until - now
                if wait >= self.timeout:
                    raise self._throttled_error(wait)
                if fetch is None:
                    self._fresh_credential = True
                else:
                    # A fetch in flight on the old credential object (whose own cache may
                    # hold the refused token): wait for it, then ask a new object.
                    self._credential = None
                fetch = self._begin(now, refused=refused.value, after=fetch, start=False)
                fetch.timed = timed
                # Said before the fetch starts: a fork from another thread must never find
                # this thread inside a handler's stream lock (the child would hang on it).
                logger.warning(
                    "Access token from %s was refused by the server; fetching a new one",
                    self.label,
                )
                fetch.thread.start()
        token = self._wait(fetch)
        return token if token.value != refused.value else None

    # -- internals ----------------------------------------------------------

    def _throttled_error(self, retry_after: float) -> TokenThrottled:
        return TokenThrottled(
            f"{self.label} could not get a token for scope {self.scope!r}: the identity "
            f"endpoint throttled the requests (HTTP 429) and asked to retry after "
            f"{retry_after:g} s",
            retry_after,
        )

    def _timeout_error(self) -> TokenTimeout:
        return TokenTimeout(
            f"{self.label} returned no token for scope {self.scope!r} within "
            f"{self.timeout:g} s (the identity endpoint is slow or not answering)"
        )

    def _wait(self, fetch: _Fetch) -> Token:
        """The fetch's token; its callers share one deadline, ``timeout`` after it began,
        so nobody queues behind an endpoint that hangs."""
        left = self.timeout - (time.monotonic() - fetch.began)
        try:
            return fetch.future.result(timeout=max(left, 0.0))
        except FutureTimeout:
            seen = fetch.throttled()
            error = (
                self._throttled_error(seen.retry_after)
                if seen is not None
                else self._timeout_error()
            )
            with self._lock:
                now = self.clock()
                token = self._token
                usable = token is not None and token.usable(now)
                if self._inflight is fetch and self._outage is None and not usable:
                    # Later callers fail at once while it hangs (see _fetch_for_caller).
                    self._outage = _Outage(error, 1, now, now + outage_retry_delay(1))
            raise error from None

    def _fetch_for_caller(self) -> _Fetch:
        """What a caller with no usable token waits for; raises at once while the identity fails.

        While it fails, the first caller after the outage cadence starts the next
        attempt and waits for it alone; everyone else gets the last error now.
        """
        with self._lock:
            now = self.clock()
            running = self._running(now)
            token = self._token
            if token is not None and token.usable(now):
                return _ready(token, now)  # another thread's fetch finished meanwhile
            outage = self._outage
            if running is not None:
                if outage is None:
                    return running
            elif outage is None or now >= outage.retry_at:
                return self._begin(now)
            assert outage is not None
            failure = outage.again(now)
        raise failure

    def _running(self, now: float) -> _Fetch | None:
        """The fetch in flight, unless it has run longer than ``stuck_after`` (under the lock).

        azure-core's HTTP read timeout is 300 s by default, per attempt, and it
        retries (azure-core ``ConnectionConfiguration``, ``RetryPolicy``:
        sdk/core/azure-core/azure/core/configuration.py and pipeline/policies/
        _retry.py in Azure/azure-sdk-for-python; azure-core 1.41.0): a hung
        endpoint would keep every caller waiting for a token for many minutes.
        So a fetch older than the bound is abandoned: its thread runs on with
        its own credential object (never closed under it), the next caller
        starts a new fetch with a new object. The bound (at least 90 s) lets
        azure-identity's longest own retry schedule finish: IMDS answering 410
        is retried for about 75 s (``ImdsRetryPolicy``, sdk/identity/
        azure-identity/azure/identity/_credentials/imds.py; azure-identity 1.27.0).
        """
        fetch = self._inflight
        if fetch is None or now - fetch.started < self.stuck_after:
            return fetch
        logger.warning(
            "Token fetch from %s has not returned after %.0f s; abandoning it and asking "
            "again with a new credential object",
            self.label,
            now - fetch.started,
        )
        self._inflight = None
        self._credential = None
        return None

    def _start_refresh(self) -> None:
        """A background refresh of the cached token, unless a fetch is in flight already."""
        with self._lock:
            now = self.clock()
            if self._running(now) is not None:
                return
            # Another thread may have finished a refresh between our check and the lock.
            token = self._token
            if token is not None and token.usable(now) and now < self._next_refresh:
                return
            self._begin(now)

    def _begin(
        self,
        now: float,
        *,
        refused: str | None = None,
        after: _Fetch | None = None,
        start: bool = True,
    ) -> _Fetch:
        """A fetch in its own thread; it becomes the one in flight (under the lock)."""
        fetch = _Fetch(now, self._generation, refused=refused, after=after)
        fetch.thread = threading.Thread(
            target=self._run, args=(fetch,), name="django-azure-pg-token", daemon=True
        )
        self._inflight = fetch
        cached = self._token
        telemetry.fetch_started(fetch, fetch.forced or cached is None or not cached.usable(now))
        if start:
            fetch.thread.start()
        return fetch

    def _credential_for_fetch(self) -> TokenCredential:
        with self._lock:
            replaced = None
            if self._credential is None or self._fresh_credential:
                replaced, self._credential = self._credential, self._factory()
                self._fresh_credential = False
            credential = self._credential
        if replaced is not None and replaced is not credential:
            # No fetch uses it: one abandoned or displaced keeps its own object, and
            # ``_credential`` is cleared then. Release its HTTP session.
            with contextlib.suppress(Exception):
                replaced.close()  # type: ignore[attr-defined]
        return credential

    def _run(self, fetch: _Fetch) -> None:
        telemetry.fetch_running(fetch, self.label, self.scope, fetch.forced)
        started = time.monotonic()
        try:
            token = self._obtain(fetch)
        except BaseException as exc:
            self._failed(fetch, exc, time.monotonic() - started)
        else:
            self._succeeded(fetch, token, time.monotonic() - started)

    def _obtain(self, fetch: _Fetch) -> Token:
        if fetch.after is not None:
            # The fetch already in flight may bring a token other than the refused one:
            # then no second call is needed.
            with contextlib.suppress(Exception):
                earlier = fetch.after.future.result(timeout=self.stuck_after)
                if earlier.value != fetch.refused and earlier.usable(self.clock()):
                    return earlier
        # Never ask a throttling endpoint before the time it named. Callers are
        # only made to wait here when that time falls within their timeout.
        delay = self._throttled_until - self.clock()
        if delay > 0:
            self.sleep(delay)
        endpoint.observing.throttle = fetch.seen
        try:
            install_log_redaction()
            credential = self._credential_for_fetch()
            refresh_on: float | None = None
            if callable(getattr(credential, "get_token_info", None)):
                info = credential.get_token_info(self.scope)  # type: ignore[attr-defined]
                value, expires_on = info.token, info.expires_on
                refresh_on = getattr(info, "refresh_on", None)
            else:
                access = credential.get_token(self.scope)
                value, expires_on = access.token, access.expires_on
        finally:
            endpoint.observing.throttle = None
        return Token.issued(
            value, float(expires_on), self.clock(), claims.decode(value), refresh_on
        )

    def _succeeded(self, fetch: _Fetch, token: Token, elapsed: float) -> None:
        telemetry.fetch_done(None, elapsed, fetch.seen.count > 0)
        now = self.clock()
        with self._lock:
            current = self._inflight is fetch
            previous = self._token
            if current:
                self._inflight = None
                if previous is not None and previous.value == token.value:
                    # The credential's (or the endpoint's) own cache answered: the same
                    # token, of the same age; ask again after half its usable time left.
                    token = previous
                    self._next_refresh = token.retry_at(now)
                else:
                    due = token.refresh_at(self._spread(), self.refresh_margin)
                    # A token handed out late in its life may be past its window already.
                    self._next_refresh = due if due > now else token.retry_at(now)
                if fetch.forced and not fetch.timed:
                    self._forced, self._forced_ok_at = token, now
                self._token = token
                self._outage = None
                next_refresh = self._next_refresh
        if not current:
            logger.info(
                "A superseded token fetch from %s returned after %.0f ms; the cache keeps "
                "the newer state",
                self.label,
                elapsed * 1000,
            )
        elif token is previous:
            logger.info(
                "%s returned the token it had given before (expires in %.0f s); asking "
                "again in %.0f s",
                self.label,
                token.expires_on - now,
                next_refresh - now,
            )
        else:
            logger.info(
                "%s access token from %s in %.0f ms; expires in %.0f s",
                "Refreshed" if previous is not None else "Fetched",
                self.label,
                elapsed * 1000,
                token.expires_on - now,
            )
        fetch.future.set_result(token)

    def _failed(self, fetch: _Fetch, exc: BaseException, elapsed: float) -> None:
        telemetry.fetch_done(exc, elapsed, fetch.seen.count > 0)
        self._last_error = (time.time(), redact(f"{type(exc).__name__}: {exc}")[:300])
        now = self.clock()
        retry_after = fetch.seen.retry_after if fetch.seen.count else throttled_retry_after(exc)
        if retry_after is not None:
            error: TokenError = self._throttled_error(retry_after)
        else:
            error = TokenError(
                f"{self.label} could not get a token for scope {self.scope!r} "
                f"after {elapsed:.1f} s: {type(exc).__name__}: {redact(str(exc))}"
            )
        # Only a frameless, redacted copy of the credential's exception leaves this thread.
        error.__cause__ = endpoint.safe_cause(exc)
        with self._lock:
            if retry_after is not None and fetch.generation == self._generation:
                # What the endpoint said holds whichever fetch heard it.
                self._throttled_until = max(self._throttled_until, now + retry_after)
            current = self._inflight is fetch
            if current:
                self._inflight = None
                # azure-identity's managed-identity credentials stay "unavailable" after the
                # endpoint failed once, even when it has recovered: the next attempt gets a
                # new one.
                self._fresh_credential = True
                retry = self._token.retry_at(now) if self._token is not None else now
                self._next_refresh = max(retry, self._throttled_until)
                if self._token is None or not self._token.usable(now):
                    failures = 1 + (self._outage.failures if self._outage is not None else 0)
                    # A Retry-After is honoured by the attempt itself (_obtain), which its
                    # one caller waits out when it falls within the timeout.
                    self._outage = _Outage(error, failures, now, now + outage_retry_delay(failures))
            cached = self._token
        # A refusal-forced refresh never falls back to the token that was refused.
        fallback = cached is not None and cached.usable(now) and cached.value != fetch.refused
        if not current:
            logger.info("A superseded token fetch from %s failed: %s", self.label, error)
        if fallback:
            assert cached is not None
            if current:
                logger.warning(
                    "Token refresh failed; still serving the cached token (expires in %.0f s): %s",
                    cached.expires_on - now,
                    error,
                )
            fetch.future.set_result(cached)
        else:
            if current:
                logger.error("%s", error)
            fetch.future.set_exception(error)

    def forget(self, *, keep_token: bool = False) -> None:
        """Drop the fetch in flight, refusal and throttle records and the token (``reset()``)."""
        with self._lock:
            if self._inflight is not None:
                self._inflight = None
                self._credential = None  # the abandoned fetch keeps using it
            if not keep_token:
                self._token = None
                self._next_refresh = 0.0
                self._fresh_credential = True  # its own cache would hand the old token back
            self._throttled_until = 0.0
            self._forced = None
            self._outage = None
            self._generation += 1

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, no fetch, a new credential, its own refresh moment.

        The parent's threads are gone, so a lock they held stays held and a
        fetch they ran never completes; the credential's HTTP connection is the
        parent's. A refusal-forced refresh of the parent is not this process's:
        its budget starts afresh. A ``Retry-After`` the endpoint gave is kept.
        Every child takes its own place in the refresh window of the token it
        inherited (see :func:`place`), so workers forked from one
        master (gunicorn --preload, Celery prefork) do not call the identity
        endpoint at the same instant.
        """
        self._lock = threading.Lock()
        self._inflight = None
        self._forced = None
        self._outage = None  # the child's first caller tries on its own
        if self._rebuild_after_fork and self._credential is not None:
            # Keep the old object alive: its finalizers must not run (or take a
            # lock a parent thread held) in the child.
            forksafe.retire(self._credential)
            self._credential = None
        token = self._token
        if token is not None:
            self._next_refresh = max(
                token.refresh_at(self._spread(), self.refresh_margin), self._throttled_until
            )

    def status(self) -> TokenStatus:
        """What this source knows now, for the doctor, the health view and metrics (read-only).

        Times are seconds relative to now on this source's clock; nothing secret.
        """
        now = self.clock()
        with self._lock:
            token, fetch = self._token, self._inflight
            next_refresh, throttled_until = self._next_refresh, self._throttled_until
            forced, forced_ok_at = self._forced, self._forced_ok_at
        failed = self._last_error
        return TokenStatus(
            label=self.label,
            scope=self.scope,
            cached=token is not None,
            usable=token is not None and token.usable(now),
            age_s=None if token is None else now - token.obtained_at,
            remaining_s=None if token is None else token.expires_on - now,
            lifetime_s=None if token is None else token.lifetime,
            next_refresh_in_s=None if token is None else next_refresh - now,
            fetch_running_s=None if fetch is None else now - fetch.started,
            last_error=None if failed is None else failed[1],
            last_error_ago_s=None if failed is None else time.time() - failed[0],
            throttled_for_s=max(throttled_until - now, 0.0),
            refusal_refresh_in_s=(
                0.0
                if forced is None
                else max(forced.refusal_interval() - (now - forced_ok_at), 0.0)
            ),
        )


@dataclass(frozen=True)
class TokenStatus:
    """A snapshot of one :class:`TokenSource` (``TokenSource.status()``); never holds a token."""

    label: str  # the credential, as the doctor names it
    scope: str
    cached: bool  # a token is cached (possibly expired)
    usable: bool  # ... and would be handed out now
    age_s: float | None  # since the cached token was obtained
    remaining_s: float | None  # until it expires (negative: expired)
    lifetime_s: float | None
    next_refresh_in_s: float | None  # when the next (background) fetch is due
    fetch_running_s: float | None  # a fetch in flight, for this long
    last_error: str | None  # the last failed fetch in this process: type and redacted text
    last_error_ago_s: float | None
    throttled_for_s: float  # the endpoint's Retry-After still to run (0: not throttled)
    refusal_refresh_in_s: float  # until a refusal of the token the last forced refresh
    # brought may force another refresh (0: available now; see refresh_after_refusal)


# -- every live source, and this process's place in refresh windows ------------------

_all_sources: weakref.WeakSet[TokenSource] = weakref.WeakSet()


def live_sources() -> list[TokenSource]:
    """Every token source alive in this process (also those only a wrapper or a pool holds)."""
    return list(_all_sources)


telemetry.watch_sources(
    lambda: [(s.label, s.scope, s.status().remaining_s) for s in list(_all_sources)]
)

_place = random.random()
_forks = 0


def place() -> float:
    """This process's place in every refresh window, in [0, 1) (see :mod:`.timing`)."""
    return _place


def _before_fork() -> None:
    global _forks
    _forks += 1


def _after_fork_in_child() -> None:
    """The k-th child takes the k-th place after its parent's; every source starts afresh."""
    global _place, _forks
    _place, _forks = child_place(_place, _forks), 0
    for source in list(_all_sources):
        source._after_fork()


forksafe.on_fork(before=_before_fork, child=_after_fork_in_child)

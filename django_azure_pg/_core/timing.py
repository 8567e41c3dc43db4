"""When a token is refreshed, handed out, retried and given up on: pure rules.

Every rule is a fraction of the token's *issued* lifetime (``iat``/``nbf`` to
``exp`` from its claims), or the moment the credential itself recommends
(``AccessTokenInfo.refresh_on``), or a documented bound — never a number of
seconds that only fits one scale. So 6 s test tokens, 1 h user tokens and 24 h
managed-identity tokens follow the same rules, and the table tests in
``tests/test_timing.py`` check them at all three.

Where the numbers come from:

* **Refresh from half-life.** MSAL sets ``refresh_in = expires_in / 2`` for
  managed-identity tokens of 2 h or more (``msal/managed_identity.py``);
  azure-identity reports it as ``AccessTokenInfo.refresh_on`` and refreshes
  then, keeping the cached token while that refresh fails
  (``azure/identity/_internal/utils.py`` ``get_refresh_status``). So an app
  that calls ``get_token`` per connection rides out an identity outage of
  about half a token's lifetime; a cache must not do worse.
* **Hand-out skew.** A login takes a moment, and the server checks expiry
  when the login arrives. A token is not handed to a login once less than
  a tenth of its lifetime is left, and never less than
  :data:`LOGIN_BOUND` seconds before expiry on long tokens.
* **Spread.** Workers forked from one master hold the same token. Random
  moments cluster (16 workers drawn uniformly over a window collide 4+ deep
  most of the time); the golden-ratio (Weyl) sequence puts the master's
  successive children evenly over the window (three-distance theorem): the
  k-th child forked takes place ``base + k * phi``, whatever else the host
  does meanwhile (process ids are no use: other processes take them too).
  A place is a phase on a wall-clock grid, so it holds round after round.
* **Outage cadence.** With no usable token and the last fetch failed, there
  is no lifetime to take a fraction of, and the unit is the recovery a user
  sees: callers fail at once with the last error, and the next attempt is
  made no sooner than :func:`outage_retry_delay` after the last failure —
  doubling from :data:`OUTAGE_RETRY_FIRST` to :data:`OUTAGE_RETRY_MAX`. Only
  a caller starts an attempt (never a timer), so an idle process asks
  nothing, and a busy one at most once per :data:`OUTAGE_RETRY_MAX` per
  identity (:func:`outage_attempts_bound` over an outage), each at most 1 +
  ``credentials.CREDENTIAL_RETRIES`` HTTP calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HANDOUT_SKEW = 0.1
"""A token is not handed out in the last tenth of its issued lifetime ..."""

LOGIN_BOUND = 60.0
"""... nor, for long tokens, in its last 60 s: PostgreSQL's default
``authentication_timeout``, the longest a server lets client authentication take
("The default is one minute", PostgreSQL documentation, runtime-config-connection)."""

WINDOW = 1 / 3
"""Width of the refresh window, as a fraction of the token's lifetime (or of
what is left after ``refresh_on``). Wide enough that 16 workers sharing a token
with a 0.3 s identity endpoint overlap at most 3 deep at 8 s tokens."""

BACKOFF_FLOOR = 1 / 256
"""Shortest wait between two attempts while a usable token is cached, as a
fraction of its lifetime (24 h → 5.6 min, 1 h → 14 s, 6 s → 23 ms)."""

REFUSAL_INTERVAL = 1 / 120
"""A token fetched by a refusal-forced refresh and refused again means the
configuration is wrong; no further forced refresh for this fraction of its
lifetime (1 h → 30 s, 24 h → 12 min)."""

MAX_CALLS_AFTER_DUE = 2 + math.ceil(math.log2(1 / (2 * BACKOFF_FLOOR)))
"""Calls to a credential that keeps handing back the cached token, from the
refresh moment to the end of the token's usable life: the wait halves the
usable time left (at least the floor), so at most log2(1 / (2 * floor)) halvings
and two floor-length steps. 9 with the floor above."""

OUTAGE_RETRY_FIRST = 0.125
"""Seconds between the first failure with no usable token and the next attempt:
a one-off failure (a restarting endpoint) is retried almost at once."""

OUTAGE_RETRY_MAX = 0.5
"""Longest wait between attempts while no usable token is cached: the recovery
this package promises (README, "Identity down"): the first request after the
endpoint answers again is served within about half a second plus one fetch
(issue 30: "within 0.7 s", as before fail-fast), without a timer polling an idle
process. Also the bound on calls: two attempts a second, per identity and
process, while requests arrive — each one HTTP call (``credentials.CREDENTIAL_RETRIES``
is 0), as many as azure-identity's own cycle made for each request before."""


def outage_retry_delay(failures: int) -> float:
    """Wait after the ``failures``-th consecutive failure before the next attempt:
    0.125 s, 0.25 s, then 0.5 s (:data:`OUTAGE_RETRY_MAX`) for as long as it lasts."""
    return min(OUTAGE_RETRY_FIRST * 2.0 ** min(max(failures - 1, 0), 32), OUTAGE_RETRY_MAX)


def outage_attempts_bound(seconds: float) -> int:
    """Most attempts one process makes per identity over an outage of ``seconds``:
    the first, the ramp to :data:`OUTAGE_RETRY_MAX`, then one per
    :data:`OUTAGE_RETRY_MAX` (the ramp's waits add up to less than one of those)."""
    ramp = 1
    while outage_retry_delay(ramp) < OUTAGE_RETRY_MAX:
        ramp += 1
    return ramp + 1 + math.ceil(seconds / OUTAGE_RETRY_MAX)


_PHI = (math.sqrt(5) - 1) / 2


def child_place(base: float, index: int) -> float:
    """The place in [0, 1) of a process's ``index``-th forked child, the parent's being ``base``."""
    return (base + index * _PHI) % 1.0


@dataclass(frozen=True)
class Token:
    """An access token and the moments that matter for it (seconds since the epoch)."""

    value: str = field(repr=False)
    expires_on: float
    obtained_at: float
    issued_at: float
    """``iat``/``nbf`` from the claims when plausible, else ``obtained_at``."""
    refresh_on: float | None = None
    """When the credential recommends a refresh (``AccessTokenInfo.refresh_on``)."""

    @classmethod
    def issued(
        cls,
        value: str,
        expires_on: float,
        obtained_at: float,
        claims: dict[str, object],
        refresh_on: float | None = None,
    ) -> Token:
        """A token whose lifetime is measured from when it was issued, not when we got it.

        An endpoint may hand out a token from its own cache, late in its life:
        measured from our fetch it would look short-lived and get almost no skew.
        """
        issued_at = obtained_at
        for claim in ("iat", "nbf"):
            moment = claims.get(claim)
            if (
                isinstance(moment, (int, float))
                and not isinstance(moment, bool)
                and math.isfinite(moment)
                and moment < expires_on
            ):
                issued_at = min(float(moment), obtained_at)
                break
        if refresh_on is not None and not issued_at < refresh_on < expires_on:
            refresh_on = None
        return cls(value, float(expires_on), obtained_at, issued_at, refresh_on)

    @property
    def lifetime(self) -> float:
        return max(self.expires_on - self.issued_at, 0.0)

    @property
    def skew(self) -> float:
        """Seconds before expiry from which no login is given this token."""
        return min(self.lifetime * HANDOUT_SKEW, LOGIN_BOUND)

    @property
    def usable_until(self) -> float:
        return self.expires_on - self.skew

    def usable(self, now: float) -> bool:
        return now < self.usable_until

    def window(self, margin: float | None = None) -> tuple[float, float]:
        """When this token's refresh is due: ``(opens, closes)``.

        With ``refresh_on`` the window opens there (the credential's own cache
        answers with the same token before it) and spans a third of what is
        left. Without, it closes at half-life and spans a third of the
        lifetime. ``margin`` (``OPTIONS["token_refresh_margin"]``) closes it
        at least that many seconds before expiry, but never before it opens.
        """
        if self.refresh_on is not None:
            opens = self.refresh_on
            closes = opens + (self.expires_on - opens) * WINDOW
        else:
            closes = self.issued_at + self.lifetime / 2
            opens = closes - self.lifetime * WINDOW
        if margin is not None:
            closes = max(min(closes, self.expires_on - margin), opens)
        return opens, closes

    def refresh_at(self, place: float, margin: float | None = None) -> float:
        """The moment inside the window for a process whose place is ``place`` in [0, 1).

        Places are phases on a wall-clock grid as wide as the window, not offsets
        from its opening: a process refreshing at the start of its window gets a
        token whose next window starts later, so offsets would let processes with
        different places drift into each other from the second refresh on; phases
        keep every process at its own place in every round.
        """
        opens, closes = self.window(margin)
        width = closes - opens
        if width <= 0:
            return opens
        return opens + (place * width - opens) % width

    def retry_at(self, now: float) -> float:
        """The next attempt after one that failed or brought this same token back.

        Half the usable time left, but at least :data:`BACKOFF_FLOOR` of the
        lifetime: attempts grow denser towards the end, so an endpoint that
        recovers late is still caught, and one that hands back its cached
        token is asked at most :data:`MAX_CALLS_AFTER_DUE` times.
        """
        return now + max((self.usable_until - now) / 2, self.lifetime * BACKOFF_FLOOR)

    def refusal_interval(self) -> float:
        """How long a refusal of a token fetched by a forced refresh blocks the next one."""
        return self.lifetime * REFUSAL_INTERVAL

    def ran_out_during_login(self, now: float) -> bool:
        """Refused at ``now``: was the token (nearly) out of time when the server checked it?

        Then the refusal says nothing about the configuration: a slow login or
        a server clock ahead of ours is enough.
        """
        return now >= self.usable_until

"""Test doubles for unit tests: a controllable clock and TokenCredential."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AccessToken

from django_azure_pg_testing import jwt


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeCredential:
    """Counts calls; can block on a gate, fail, or return tokens with given claims."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        lifetime: float = 3600,
        claims: dict[str, Any] | None = None,
    ) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.claims = claims or {"upn": "dev@contoso.com"}
        self.calls = 0
        self.gate: threading.Event | None = None
        self.error: BaseException | None = None
        self.called = threading.Event()
        self.returned = threading.Event()
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.calls += 1
        self.called.set()
        if self.gate is not None:
            self.gate.wait(30)
        try:
            if self.error is not None:
                raise self.error
            exp = int(self.clock() + self.lifetime)
            token = jwt.mint({**self.claims, "exp": exp, "n": self.calls})
            self.issued.append(token)
            return AccessToken(token, exp)
        finally:
            self.returned.set()


class FetchLog(logging.Handler):
    """Waits for the token cache to report finished fetches (its INFO/WARNING/ERROR lines).

    Each fetch, foreground or background, logs exactly once after the cache
    state is updated, so tests wait on the log instead of sleeping.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.done = 0
        self.messages: list[str] = []
        self._cond = threading.Condition()
        self._logger = logging.getLogger("django_azure_pg._core.token_source")

    def __enter__(self) -> FetchLog:
        self._level = self._logger.level
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if record.getMessage().startswith(("Fetched", "Refreshed", "Token refresh failed")) or (
            record.levelno >= logging.ERROR
        ):
            with self._cond:
                self.done += 1
                self._cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.done >= count, timeout):
                raise AssertionError(f"{self.done} fetches finished, expected {count}")

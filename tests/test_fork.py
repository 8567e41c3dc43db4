"""After fork(), a child shares no lock, no fetch in flight and no socket with its parent.

Every test here fails with the package's one at-fork handler
(forksafe._after_fork_in_child) removed: the child deadlocks on a lock held at
fork time, waits for a fetch that will never finish, is refused a refresh its
parent spent, or talks to the identity endpoint over its parent's keep-alive
connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
from azure.identity import ManagedIdentityCredential

from django_azure_pg import redaction
from django_azure_pg._core import credentials, forksafe, timing
from django_azure_pg._core import token_source as tokens
from django_azure_pg_testing import Identity, IdentityEmulator

from .conftest import SCOPE
from .fakes import FakeClock, FakeCredential


def in_child(work: Callable[[], str], timeout: float = 20.0) -> str:
    """Run ``work`` in a forked child; its answer, or 'timeout' if it hangs."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover — runs in the child
        answer = "?"
        try:
            answer = work()
        except BaseException as exc:
            answer = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write, answer.encode()[:2000])
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return "timeout"
        return os.read(read, 4000).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)


# -- locks and fetches in flight (unit) ----------------------------------------------


def test_a_lock_held_by_a_parent_thread_does_not_block_the_child() -> None:
    credential = FakeCredential()
    source = tokens.TokenSource(lambda: credential, SCOPE, timeout=5)
    with source._lock:  # as a parent thread would, in the middle of a fetch
        answer = in_child(lambda: "ok" if source.get() else "no token", timeout=10)
    assert answer == "ok"


def test_a_fetch_in_flight_in_the_parent_is_not_awaited_by_the_child() -> None:
    credential = FakeCredential()
    credential.gate = threading.Event()  # the parent's fetch hangs
    source = tokens.TokenSource(lambda: credential, SCOPE, timeout=3)
    waiter = threading.Thread(target=source.get)
    waiter.start()
    assert credential.called.wait(5)

    def child() -> str:
        credential.gate = None
        return "ok" if source.get() else "no token"

    try:
        answer = in_child(child)
    finally:
        credential.gate.set()
        waiter.join()
    assert answer == "ok"


def test_a_child_forked_while_the_identity_fails_asks_on_its_own_at_once() -> None:
    """The parent's outage cadence is the parent's: a worker forked during an outage (or
    recycled) makes its own first attempt instead of failing with the parent's error."""
    clock = FakeClock()
    credential = FakeCredential(clock)
    credential.error = RuntimeError("HTTP 500")
    source = tokens.TokenSource(lambda: credential, SCOPE, clock=clock)
    with pytest.raises(tokens.TokenError):
        source.get()
    with pytest.raises(tokens.TokenError, match="identity failing"):
        source.get()  # the parent fails at once until its next attempt

    def child() -> str:
        credential.error = None
        return "ok" if source.get() else "no token"

    assert in_child(child) == "ok"
    with pytest.raises(tokens.TokenError, match="identity failing"):
        source.get()  # the parent's own cadence is untouched


def test_a_redaction_lock_held_at_fork_does_not_block_the_childs_fetch() -> None:
    source = tokens.TokenSource(lambda: FakeCredential(), SCOPE, timeout=3)

    def child() -> str:
        # A logger the filter is not on yet: this fetch installs it, under the lock.
        logging.getLogger(f"azure.identity.fork_test_{os.getpid()}")
        return "ok" if source.get() else "no token"

    with redaction._lock:  # as the parent's token thread would, installing the filter
        answer = in_child(child, timeout=10)
    assert answer == "ok"


def test_a_forced_refresh_in_flight_in_the_parent_does_not_bind_the_child() -> None:
    clock = FakeClock()
    hanging = FakeCredential(clock)
    hanging.gate = threading.Event()  # the parent's forced refresh hangs
    built: list[FakeCredential] = []

    def factory() -> FakeCredential:
        built.append(hanging if len(built) == 1 else FakeCredential(clock))
        return built[-1]

    source = tokens.TokenSource(factory, SCOPE, clock=clock, timeout=3)
    old = source.get_token()
    clock.advance(100)
    waiter = threading.Thread(target=source.refresh_after_refusal, args=(old,))
    waiter.start()
    assert hanging.called.wait(5)

    def child() -> str:
        fresh = source.refresh_after_refusal(old)  # the child's own forced refresh
        return "ok" if fresh is not None and fresh.value != old.value else f"got {fresh!r}"

    try:
        answer = in_child(child)
    finally:
        hanging.gate.set()
        waiter.join()
    assert answer == "ok"


def test_each_child_takes_the_next_place_in_the_refresh_window() -> None:
    parent = tokens.place()
    answers = [in_child(lambda: repr(tokens.place())) for _ in range(3)]
    places = [float(a) for a in answers]
    assert tokens.place() == parent  # the parent's own place does not move
    first = tokens._forks - 2  # forks this process made before these three
    assert places == [timing.child_place(parent, first + k) for k in range(3)]
    assert len({parent, *places}) == 4


# -- sockets: a real ManagedIdentityCredential and a keep-alive endpoint ---------------


class CountingProxy:
    """A loopback TCP proxy to the emulator that counts requests per client connection."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.requests: list[int] = []  # per accepted connection, in order
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            index = len(self.requests)
            self.requests.append(0)
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, upstream, index), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, index: int | None) -> None:
        try:
            while data := src.recv(65536):
                if index is not None:
                    self.requests[index] += data.count(b"GET /")
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def proxy(emulator: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingProxy]:
    counting = CountingProxy(emulator.port)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{counting.port}/msi/token")
    yield counting
    counting.close()


def _refresh_in_child_then_parent(
    source: tokens.TokenSource, clock: FakeClock, proxy: CountingProxy
) -> None:
    first = source.get()  # the parent's credential now holds a keep-alive connection
    assert proxy.requests == [1]
    clock.advance(190)  # refresh due, token still valid: a background refresh

    def refreshed() -> str:
        assert source.get() == first  # served at once, the refresh runs in the background
        running = source._inflight
        assert running is not None
        return running.future.result(timeout=10).value

    def child() -> str:
        return "ok" if refreshed() != first else "not refreshed"

    assert in_child(child) == "ok"
    # The parent refreshes too, over its own connection, which still works.
    assert refreshed() != first
    deadline = time.monotonic() + 5
    while sum(proxy.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # the proxy thread may count the last request a moment later
    assert proxy.requests == [2, 1]  # parent: first + refresh on one connection; child: its own


@pytest.mark.integration
def test_child_refreshes_over_its_own_connection_with_a_credential_we_build(
    proxy: CountingProxy, identity: Identity, short_tokens: Callable[[float], None]
) -> None:
    short_tokens(240)  # under 5 min: azure-identity's own cache never answers
    choice = credentials.choose({"client_id": identity.client_id}, os.environ)
    clock = FakeClock(time.time())
    source = tokens.TokenSource(
        choice.factory(), SCOPE, clock=clock, rebuild_after_fork=choice.rebuilds, spread=lambda: 0
    )
    _refresh_in_child_then_parent(source, clock, proxy)


@pytest.mark.integration
def test_child_refreshes_over_its_own_connection_with_a_credential_object(
    proxy: CountingProxy, identity: Identity, short_tokens: Callable[[float], None]
) -> None:
    short_tokens(240)
    credential = ManagedIdentityCredential(client_id=identity.client_id)  # an object in OPTIONS
    choice = credentials.choose({"credential": credential}, os.environ)
    assert not choice.rebuilds  # it cannot be rebuilt: its transport is renewed instead
    clock = FakeClock(time.time())
    source = tokens.TokenSource(
        choice.factory(), SCOPE, clock=clock, rebuild_after_fork=False, spread=lambda: 0
    )
    _refresh_in_child_then_parent(source, clock, proxy)


def test_a_transport_we_cannot_renew_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    class HoldsASocket:
        def __init__(self) -> None:
            self.sock = socket.socket()

        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise NotImplementedError

    holder = HoldsASocket()
    credentials.choose({"credential": holder}, os.environ).factory()

    def child() -> str:
        return "\n".join(r.getMessage() for r in caplog.records if "may share" in r.getMessage())

    try:
        answer = in_child(child)
    finally:
        holder.sock.close()
        forksafe._explicit_objects.pop(id(holder), None)
    assert "HoldsASocket" in answer and answer.count("may share") == 1

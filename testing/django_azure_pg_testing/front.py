"""A loopback PostgreSQL-protocol front that refuses logins with Azure's own texts.

The local PostgreSQL checks tokens through its ``ldap`` auth method, so on its
own it answers every refused token with "LDAP authentication failed" —
something Azure never sends. This front sits on the server's public port:

* it answers ``SSLRequest`` and terminates TLS with the server's certificate
  (and speaks TLS to the server behind it, so ``pg_stat_ssl`` is still true),
  declines ``GSSENCRequest``, and passes ``CancelRequest`` through;
* it forwards the startup message; when the server asks for a cleartext
  password (the token path) it forwards the token and reads the verdict —
  the server still decides, through the emulator's LDAP responder;
* on a refusal it asks the emulator *why* (expired, unknown, not this role's
  principal) and sends the ErrorResponse Azure Database for PostgreSQL sends
  for that case; for a role that does not exist it says so, as Azure does;
* after a successful login it only pumps bytes.

It runs in the process that started it. psycopg's deprecated blocking
``Connection.cancel()`` holds the GIL while it waits for the server, so from
that same process it would wait on this front forever; ``cancel_safe()``
(what psycopg itself uses) works.

Azure's texts (see ``AZURE_TEXTS``): "The access token has expired. Please acquire
a new token and retry." for an expired token (as quoted in darold/ora2pg issue #1851);
'password authentication failed for user "…"' for a token not valid for the role
and 'role "…" does not exist' for a missing role (microsoft/GitHub-Copilot-for-Azure
plugin/skills/azure-postgres/references/TROUBLESHOOTING.md). Microsoft documents no
SQLSTATE for them: PostgreSQL's own codes are used (28P01 invalid_password,
28000 invalid_authorization_specification). Loopback only.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future

from .wire import recv_exact

logger = logging.getLogger("django_azure_pg_testing.front")

_SSL_REQUEST, _GSSENC_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102
_PROTOCOL_3 = 196608
_AUTH_OK, _AUTH_CLEARTEXT = 0, 3

AZURE_TEXTS: dict[str, tuple[str, str]] = {
    "expired": ("28000", "The access token has expired. Please acquire a new token and retry."),
    "refused": ("28P01", 'password authentication failed for user "{role}"'),
    "role_missing": ("28000", 'role "{role}" does not exist'),
}
"""Refusal reason → (SQLSTATE, Azure's message)."""

Reason = Callable[[str, str], str]
"""``why(role, token) -> "expired" | "refused"`` for a login the server refused."""


def error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed protocol message: (type byte, whole raw message)."""
    head = recv_exact(sock, 5)
    (length,) = struct.unpack("!I", head[1:])
    return head[:1], head + recv_exact(sock, length - 4)


def _startup_params(packet: bytes) -> dict[str, str]:
    parts = packet[8:].split(b"\0")
    return {
        parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]
    }


def _close(sock: socket.socket) -> None:
    if isinstance(sock, ssl.SSLSocket):
        # A TLS close_notify first: libpq reads a bare EOF after a cancel as an error.
        with contextlib.suppress(OSError, ValueError):
            sock.settimeout(0.2)
            sock.unwrap()
    with contextlib.suppress(OSError):
        sock.close()


class PostgresFront:
    """``PostgresFront(backend_port, why, role_exists, certfile, keyfile).start()``."""

    def __init__(
        self,
        backend_port: int,
        why: Reason,
        role_exists: Callable[[str], bool],
        certfile: str | None = None,
        keyfile: str | None = None,
        port: int = 0,
    ) -> None:
        self.backend_port = backend_port
        self.why = why
        self.role_exists = role_exists
        self._server_tls: ssl.SSLContext | None = None
        if certfile and keyfile:
            self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_tls.minimum_version = ssl.TLSVersion.TLSv1_2
            self._server_tls.load_cert_chain(certfile, keyfile)
        self._client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._client_tls.check_hostname = False
        self._client_tls.verify_mode = ssl.CERT_NONE
        self._listener = socket.create_server(("127.0.0.1", port), backlog=256)
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> PostgresFront:
        threading.Thread(target=self._accept, name="pg-front", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._serve, args=(client,), name="pg-front-conn", daemon=True
            ).start()

    # -- one connection ---------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        backend: socket.socket | None = None
        dialing: Future[socket.socket] | None = None
        try:
            client, startup, dialing = self._negotiate(client)
            if startup is None:
                return
            backend = dialing.result(timeout=30) if dialing else self._dial(tls=False)
            backend.sendall(startup)
            if self._authenticate(client, backend, _startup_params(startup).get("user", "")):
                self._pump(client, backend)
        except (EOFError, OSError, ssl.SSLError, struct.error, UnicodeDecodeError):
            pass
        finally:
            if backend is None and dialing is not None:
                with contextlib.suppress(Exception):
                    backend = dialing.result(timeout=30)
            for sock in (client, backend):
                if sock is not None:
                    _close(sock)

    def _dial(self, *, tls: bool) -> socket.socket:
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            backend.sendall(struct.pack("!II", 8, _SSL_REQUEST))
            if recv_exact(backend, 1) != b"S":
                raise EOFError
            backend = self._client_tls.wrap_socket(backend)
        return backend

    def _dial_meanwhile(self) -> Future[socket.socket]:
        """Open the TLS connection to the server while the client's handshake runs."""
        future: Future[socket.socket] = Future()

        def dial() -> None:
            try:
                future.set_result(self._dial(tls=True))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=dial, name="pg-front-dial", daemon=True).start()
        return future

    def _negotiate(
        self, client: socket.socket
    ) -> tuple[socket.socket, bytes | None, Future[socket.socket] | None]:
        """TLS and GSS negotiation: the (possibly wrapped) socket, the startup packet, and
        the TLS connection to the server being opened meanwhile (``None`` without TLS)."""
        tls = False
        dialing = None
        while True:
            head = recv_exact(client, 8)
            length, code = struct.unpack("!II", head)
            packet = head + recv_exact(client, length - 8)
            if code == _SSL_REQUEST and not tls:
                if self._server_tls is None:
                    client.sendall(b"N")
                    continue
                dialing = self._dial_meanwhile()
                client.sendall(b"S")
                client = self._server_tls.wrap_socket(client, server_side=True)
                tls = True
            elif code == _GSSENC_REQUEST:
                client.sendall(b"N")
            elif code == _CANCEL_REQUEST:
                with socket.create_connection(("127.0.0.1", self.backend_port)) as backend:
                    backend.sendall(packet)
                return client, None, dialing
            else:
                return client, packet, dialing

    def _authenticate(self, client: socket.socket, backend: socket.socket, role: str) -> bool:
        kind, message = _read_message(backend)
        if kind != b"R" or struct.unpack("!I", message[5:9])[0] != _AUTH_CLEARTEXT:
            # Not the token path: a password role (SCRAM), or a role that does not exist.
            if kind == b"R" and not self.role_exists(role):
                self._refuse(client, "role_missing", role)
                return False
            client.sendall(message)
            return True
        client.sendall(message)
        kind, password_message = _read_message(client)
        if kind != b"p":
            return False
        backend.sendall(password_message)
        kind, verdict = _read_message(backend)
        if kind == b"E":
            token = password_message[5:].rstrip(b"\0").decode("utf-8", "replace")
            self._refuse(client, self.why(role, token), role)
            return False
        client.sendall(verdict)
        return True

    def _refuse(self, client: socket.socket, reason: str, role: str) -> None:
        sqlstate, text = AZURE_TEXTS.get(reason, AZURE_TEXTS["refused"])
        client.sendall(error_response(sqlstate, text.format(role=role)))

    def _pump(self, client: socket.socket, backend: socket.socket) -> None:
        """Copy bytes both ways until either side closes (one thread, no shared SSL state)."""
        peers: dict[socket.socket, socket.socket] = {client: backend, backend: client}
        tls: list[ssl.SSLSocket] = [s for s in peers if isinstance(s, ssl.SSLSocket)]
        for sock in peers:
            sock.setblocking(False)
        poller = select.poll()
        by_fd = {sock.fileno(): sock for sock in peers}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while True:
            ready: list[socket.socket] = [s for s in tls if s.pending()]
            if not ready:
                ready = [by_fd[fd] for fd, _ in poller.poll()]
            for sock in ready:
                try:
                    data = sock.recv(262144)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                if not data:
                    return
                _send_all(peers[sock], data)


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([], [sock], [], 1.0)

"""A fake PostgreSQL server that asks for a cleartext password and keeps what it gets.

Stands in for a man-in-the-middle: it can present any certificate, or refuse
TLS and carry on in plaintext. It refuses every password (SQLSTATE 28P01), so
a client that retries with a fresh token shows up as a second capture.
Loopback only.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from pathlib import Path

from django_azure_pg_testing.wire import recv_exact

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class FakePostgres:
    """``with FakePostgres(cert=(crt, key)) as fake: ... fake.passwords``"""

    def __init__(self, cert: tuple[Path, Path] | None = None, *, accept: bool = False) -> None:
        self.cert = cert  # None: answer 'N' to SSLRequest and go on in plaintext
        self.accept = accept  # accept the password, then drop the session at the first query
        self.passwords: list[str] = []
        self.connections = 0
        self.tls_failures = 0
        self.tls_failed = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()

    def __enter__(self) -> FakePostgres:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        sock: socket.socket = conn
        try:
            sock.settimeout(10)
            while True:
                length, code = struct.unpack("!ii", recv_exact(sock, 8))
                if code == SSL_REQUEST and self.cert is not None:
                    sock.sendall(b"S")
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
                    try:
                        sock = context.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError):
                        self.tls_failures += 1  # the client refused our certificate
                        self.tls_failed.set()
                        return
                    continue
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    sock.sendall(b"N")
                    continue
                recv_exact(sock, length - 8)  # the startup packet
                break
            sock.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            kind, size = struct.unpack("!ci", recv_exact(sock, 5))
            if kind == b"p":
                self.passwords.append(recv_exact(sock, size - 4).rstrip(b"\0").decode())
            if self.accept:
                sock.sendall(_logged_in())
                recv_exact(sock, 5)  # the first query's header: hang up on it
                return
            fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "x"\0\0'
            sock.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        except (OSError, EOFError, struct.error):
            pass
        finally:
            sock.close()


def _logged_in() -> bytes:
    """AuthenticationOk, the parameters psycopg and Django read, ReadyForQuery."""

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack("!i", len(body) + 4) + body

    out = message(b"R", struct.pack("!i", 0))
    for name, value in (
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ):
        out += message(b"S", name.encode() + b"\0" + value.encode() + b"\0")
    out += message(b"K", struct.pack("!ii", 1, 2))
    return out + message(b"Z", b"I")

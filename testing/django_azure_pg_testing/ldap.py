"""A loopback LDAP responder that answers simple binds — nothing else.

PostgreSQL's ``ldap`` auth method (simple-bind mode) sends the login's
password to an LDAP server as a BindRequest for ``cn=<role>,<suffix>``. This
responder asks a callback whether that (role, password) pair is acceptable,
which lets the local PostgreSQL accept exactly the tokens the emulator issued
— any number of them at once, as Azure does — and refuse expired ones.

Only the BER needed for BindRequest/BindResponse/UnbindRequest is implemented.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable

from .wire import recv_exact

logger = logging.getLogger("django_azure_pg_testing.ldap")

SUCCESS, INVALID_CREDENTIALS, PROTOCOL_ERROR = 0, 49, 2
_BIND_REQUEST, _BIND_RESPONSE, _UNBIND_REQUEST = 0x60, 0x61, 0x42

Checker = Callable[[str, str], bool]
"""``check(role, password) -> accepted``."""

Explainer = Callable[[str, str], str | None]
"""``why(role, password) -> None | "expired" | "refused"`` — asked, never counted."""

WHY_MARKER = ",ou=why,"
"""A bind DN containing this asks why a login would be refused (the reason comes back as
the diagnostic message), without counting it as a login."""


def _read_tlv(sock: socket.socket) -> tuple[int, bytes]:
    tag = recv_exact(sock, 1)[0]
    first = recv_exact(sock, 1)[0]
    length = first if first < 128 else int.from_bytes(recv_exact(sock, first & 127), "big")
    return tag, recv_exact(sock, length)


def _parse(data: bytes) -> list[tuple[int, bytes]]:
    items, i = [], 0
    while i < len(data):
        tag, first = data[i], data[i + 1]
        i += 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        items.append((tag, data[i : i + length]))
        i += length
    return items


def _encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + value


def bind_response(message_id: bytes, code: int, message: str = "") -> bytes:
    body = _encode(0x0A, bytes([code])) + _encode(0x04, b"") + _encode(0x04, message.encode())
    return _encode(0x30, _encode(0x02, message_id) + _encode(_BIND_RESPONSE, body))


def role_from_dn(dn: str) -> str:
    """``cn=aad_app,dc=…`` → ``aad_app`` (PostgreSQL puts the role name after the prefix)."""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1] if "=" in first else first


class _Handler(socketserver.BaseRequestHandler):
    server: LdapServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while True:
                tag, envelope = _read_tlv(sock)
                if tag != 0x30:
                    return
                parts = _parse(envelope)
                if len(parts) < 2:
                    return
                (_, message_id), (op, body) = parts[0], parts[1]
                if op == _UNBIND_REQUEST:
                    return
                if op != _BIND_REQUEST:
                    sock.sendall(bind_response(message_id, PROTOCOL_ERROR, "bind only"))
                    return
                fields = _parse(body)
                dn = fields[1][1].decode("utf-8", "replace")
                password = fields[2][1].decode("utf-8", "replace") if len(fields) > 2 else ""
                if WHY_MARKER in dn:
                    reason = self.server.why(role_from_dn(dn), password)
                    code = SUCCESS if reason is None else INVALID_CREDENTIALS
                    sock.sendall(bind_response(message_id, code, reason or ""))
                    continue
                ok = bool(password) and self.server.check(role_from_dn(dn), password)
                code = SUCCESS if ok else INVALID_CREDENTIALS
                sock.sendall(bind_response(message_id, code, "" if ok else "token not accepted"))
        except (EOFError, ConnectionError, IndexError, OSError):
            return


class LdapServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, check: Checker, port: int = 0, why: Explainer | None = None) -> None:
        self.check = check
        self.why: Explainer = why or (
            lambda role, password: None if check(role, password) else "refused"
        )
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, name="emulator-ldap", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def ask_why(port: int, role: str, password: str) -> str:
    """Ask the responder on ``port`` why it refuses ``password`` for ``role`` ("" if it would not)."""
    dn = f"cn={role}{WHY_MARKER}dc=emulator,dc=local".encode()
    request = _encode(0x02, b"\x03") + _encode(0x04, dn) + _encode(0x80, password.encode())
    message = _encode(0x30, _encode(0x02, b"\x01") + _encode(_BIND_REQUEST, request))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(message)
        _, envelope = _read_tlv(sock)
    _, body = _parse(envelope)[1]
    fields = _parse(body)
    return fields[2][1].decode() if len(fields) > 2 else ""

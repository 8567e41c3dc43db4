"""A fake PostgreSQL server that asks for a cleartext password and keeps what it gets.

Stands in for a man-in-the-middle: it can present any certificate, or refuse
TLS and carry on in plaintext. It refuses every password (SQLSTATE 28P01), so
a client that retries with a fresh token shows up as a second capture.
Loopback only.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import threading
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def make_ca(
    directory: Path, name: str = "django-azure-pg test CA"
) -> tuple[Path, Path, object, object]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    crt_path, key_path = directory / "ca.crt", directory / "ca.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt_path, key_path, cert, key


def make_server_cert(
    directory: Path, hostname: str, issuer: tuple[object, object] | None = None
) -> tuple[Path, Path]:
    """A certificate for ``hostname``: self-signed, or signed by ``issuer`` (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)  # type: ignore[attr-defined]
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    stem = hostname.split(".")[0]
    crt_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return crt_path, key_path


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class FakePostgres:
    """``with FakePostgres(cert=(crt, key)) as fake: ... fake.passwords``"""

    def __init__(self, cert: tuple[Path, Path] | None = None) -> None:
        self.cert = cert  # None: answer 'N' to SSLRequest and go on in plaintext
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
                length, code = struct.unpack("!ii", _recv(sock, 8))
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
                _recv(sock, length - 8)  # the startup packet
                break
            sock.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            kind, size = struct.unpack("!ci", _recv(sock, 5))
            if kind == b"p":
                self.passwords.append(_recv(sock, size - 4).rstrip(b"\0").decode())
            fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "x"\0\0'
            sock.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            sock.close()

"""The sandbox's self-signed certificate, made once with ``cryptography`` and kept in the state dir.

Its fingerprint is computed the way PVE shows it (``vzkeep.fingerprint``); clients pin exactly that string.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vzkeep.atomic import write_atomic, write_private
from vzkeep.fingerprint import fingerprint_of_der, normalize_fingerprint

CERT_NAME = "pve-ssl.pem"  # the names PVE uses in /etc/pve/nodes/<node>/
KEY_NAME = "pve-ssl.key"

__all__ = ["CERT_NAME", "KEY_NAME", "ThreadingTLSServer", "ensure_certificate", "fingerprint_of_der",
           "normalize_fingerprint", "server_context"]


def _make_certificate(common_name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vzkeep sandbox")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.DNSName(common_name),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(directory: Path, common_name: str) -> tuple[Path, Path, str]:
    """Create the cert at first start, reuse it afterwards; return (cert, key, fingerprint)."""
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if not (cert_path.exists() and key_path.exists()):
        cert_pem, key_pem = _make_certificate(common_name)
        write_private(key_path, key_pem)  # 0600 from creation, even over an older, wider file
        write_atomic(cert_path, cert_pem)
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return cert_path, key_path, fingerprint_of_der(der)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


class ThreadingTLSServer(ThreadingHTTPServer):
    """An HTTPS server whose TLS handshake runs in each connection's own thread, so a slow or rejecting
    client never blocks the accept loop; responses leave without Nagle's delay (``TCP_NODELAY``).

    Subclasses set ``context`` (``server_context``) and may set ``idle_timeout`` (seconds a connection may
    sit idle or stall mid-request)."""

    daemon_threads = True
    context: ssl.SSLContext
    idle_timeout: float | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.idle_timeout is not None:
            request.settimeout(self.idle_timeout)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        except (ssl.SSLError, OSError):
            pass  # the client hung up, stalled past the timeout or spoke garbage: nothing to log
        finally:
            tls.close()

"""Certificate pinning by SHA-256 fingerprint, the way PVE shows fingerprints.

PVE prints a certificate's fingerprint as SHA-256 over its DER bytes, upper-case hex bytes joined by
colons (pve-common ``src/PVE/Certificate.pm`` ``get_certificate_fingerprint``: OpenSSL's
``X509_get_fingerprint(cert, 'sha256')``; shown by ``pvenode cert info`` and the GUI).
A client that pins exactly that string accepts that certificate and no other, which is how a
self-signed PVE node (or the sandbox) is reached safely without a CA.

Only ``hashlib`` and ``requests``/``urllib3``: the exporter, verify and the sandbox's own client use
it, and none of them should load the x509 machinery the sandbox needs to *make* a certificate.
"""

from __future__ import annotations

import hashlib
from typing import Any

from requests.adapters import HTTPAdapter

_HEX = frozenset("0123456789abcdef")


def fingerprint_of_der(der: bytes) -> str:
    """``AA:BB:…``: the SHA-256 of a DER certificate, as PVE prints it."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def normalize_fingerprint(text: str) -> str:
    """Accept ``aa:bb…``, ``AABB…`` or ``sha256:…`` and return PVE's ``AA:BB:…`` form, or raise ValueError."""
    hexdigits = text.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
    if len(hexdigits) != 64 or not set(hexdigits) <= _HEX:
        raise ValueError(f"not a SHA-256 fingerprint: {text!r} (expected 32 colon-separated hex bytes)")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 64, 2)).upper()


class FingerprintAdapter(HTTPAdapter):
    """A requests adapter that accepts exactly the certificate whose SHA-256 is pinned.

    urllib3's ``assert_fingerprint`` compares the peer certificate's digest during the handshake, on
    every new connection of the pool; a mismatch fails the request before anything is sent.
    """

    def __init__(self, fingerprint: str, **kwargs: Any) -> None:
        self.fingerprint = normalize_fingerprint(fingerprint).replace(":", "").lower()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)

"""Client-side TLS: how a target is trusted and what a handshake tells us.

All client connections use the standard library ``ssl`` module, which can resume a
session on a new socket (``session=``): that is what FTPS data channels need.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class PinMismatch(ssl.SSLError):
    """The server's certificate does not match the SHA-256 pin."""


def normalize_fingerprint(value: str) -> str:
    """Accept ``AA:BB:..``, ``aabb..`` or ``sha256/AA:BB`` and return lowercase hex."""
    text = value.strip().lower()
    if text.startswith("sha256/") or text.startswith("sha256:"):
        text = text[7:]
    return text.replace(":", "").replace(" ", "")


def sha256_fingerprint(der: bytes) -> str:
    """Colon-separated upper-case SHA-256 fingerprint, the form IIS and openssl print."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class Trust:
    """How a client decides to trust a server certificate.

    Exactly one of: a CA bundle (``ca_file``, with host-name check), a SHA-256 pin of the
    leaf (``pin_sha256``), or ``insecure``. With none set the system trust store is used.
    """

    ca_file: Path | None = None
    pin_sha256: str | None = None
    insecure: bool = False

    @property
    def mode(self) -> str:
        if self.pin_sha256:
            return "pin"
        if self.ca_file:
            return "ca"
        if self.insecure:
            return "insecure"
        return "system"

    def verify_pin(self, der: bytes | None) -> None:
        """Raise :class:`PinMismatch` when a pin is set and the leaf does not match it."""
        if not self.pin_sha256:
            return
        if der is None:
            raise PinMismatch("server sent no certificate to compare with the pin")
        got = normalize_fingerprint(sha256_fingerprint(der))
        if got != normalize_fingerprint(self.pin_sha256):
            raise PinMismatch(
                f"certificate SHA-256 {sha256_fingerprint(der)} does not match the pin"
            )


def client_context(
    trust: Trust,
    *,
    min_version: str | None = "1.2",
    max_version: str | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """Build a client context for ``trust``; pins are checked after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust.mode == "ca":
        ctx.load_verify_locations(cafile=str(trust.ca_file))
    elif trust.mode == "system":
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if min_version:
        ctx.minimum_version = TLS_VERSIONS[min_version]
    if max_version:
        ctx.maximum_version = TLS_VERSIONS[max_version]
    return ctx


def legacy_client_context(version: str) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 or 1.1, at security level 0, verifying nothing.

    Used to ask "does the server refuse legacy TLS?": the client must be *able* to speak
    the old protocol, or a refusal would be our own failure rather than the server's.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = TLS_VERSIONS[version]
    ctx.maximum_version = TLS_VERSIONS[version]
    return ctx


@dataclass
class TLSFacts:
    """What a completed handshake revealed."""

    version: str
    cipher: str
    cipher_bits: int | None
    session_reused: bool
    peer_der: bytes | None = field(repr=False, default=None)

    @property
    def fingerprint(self) -> str | None:
        return sha256_fingerprint(self.peer_der) if self.peer_der else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tls_version": self.version,
            "cipher": self.cipher,
            "cipher_bits": self.cipher_bits,
            "session_reused": self.session_reused,
            "certificate_sha256": self.fingerprint,
        }


def facts_of(sock: ssl.SSLSocket) -> TLSFacts:
    cipher = sock.cipher() or ("", "", None)
    return TLSFacts(
        version=sock.version() or "",
        cipher=cipher[0],
        cipher_bits=cipher[2],
        session_reused=bool(sock.session_reused),
        peer_der=sock.getpeercert(binary_form=True),
    )


def is_protocol_alert(exc: BaseException) -> bool:
    """True when an SSL error came from the server's alert, not from our own refusal.

    OpenSSL reasons carrying ``ALERT`` (``TLSV1_ALERT_PROTOCOL_VERSION``,
    ``SSLV3_ALERT_HANDSHAKE_FAILURE``...) were sent by the peer; an EOF during the
    handshake also counts as the server walking away from the offer.
    """
    if isinstance(exc, ssl.SSLEOFError):
        return True
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        return "ALERT" in reason or "WRONG_VERSION_NUMBER" in reason
    return isinstance(exc, ConnectionResetError)


# OpenSSL reasons, grouped by what they mean for the person fixing the server.
_CLIENT_CANNOT_OFFER = ("NO_CIPHERS_AVAILABLE", "NO_PROTOCOLS_AVAILABLE")
_NO_SHARED_CIPHER = ("NO_SHARED_CIPHER", "HANDSHAKE_FAILURE", "INSUFFICIENT_SECURITY",
                     "NO_SUITABLE_SIGNATURE_ALGORITHM", "NO_SHARED_SIGNATURE_ALGORITHMS")
_NO_SHARED_VERSION = ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "VERSION_TOO_LOW",
                      "VERSION_TOO_HIGH", "WRONG_SSL_VERSION", "TLSV1_ALERT_INAPPROPRIATE_FALLBACK")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
            "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL")


def explain_tls_failure(exc: BaseException) -> str:
    """What a failed handshake means, in the words an operator searches for.

    OpenSSL's reason codes (``SSLV3_ALERT_HANDSHAKE_FAILURE``...) stay in the text, in
    parentheses, so nothing is lost; the words in front name the fault.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc}"
    reason = str(getattr(exc, "reason", None) or "").upper()
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                        BrokenPipeError)) or "UNEXPECTED_EOF" in reason:
        detail = f" ({reason})" if reason else ""
        return f"the server closed the connection during the TLS handshake{detail}"
    if any(marker in reason for marker in _CLIENT_CANNOT_OFFER):
        return f"this client has nothing to offer for these settings ({reason})"
    if any(marker in reason for marker in _NO_SHARED_CIPHER):
        return (f"no shared cipher suite: the server rejected every cipher suite this client "
                f"offered ({reason})")
    if any(marker in reason for marker in _NO_SHARED_VERSION):
        return (f"no shared TLS version: the server and this client have no protocol version "
                f"in common ({reason})")
    if any(marker in reason for marker in _NOT_TLS):
        return f"the server did not answer with TLS: wrong protocol on this port ({reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "the TLS handshake timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

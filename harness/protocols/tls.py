"""Client-side TLS: how a target is trusted and what a handshake tells us.

All client connections use the standard library ``ssl`` module, which can resume a
session on a new socket (``session=``): that is what FTPS data channels need. What
those clients offer (versions, suites, signature algorithms, groups) is never the
interpreter's default: it comes from :mod:`harness.protocols.tlspolicy`.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from harness.protocols.tlspolicy import (
    CLIENT_POLICY,
    TLS_VERSIONS,
    legacy_probe_policy,
    policy_context,
)

__all__ = [
    "TLS_VERSIONS",
    "PinMismatch",
    "TLSFacts",
    "TLSReason",
    "Trust",
    "classify_tls_failure",
    "client_context",
    "explain_tls_failure",
    "facts_of",
    "is_protocol_alert",
    "legacy_client_context",
    "normalize_fingerprint",
    "openssl_reason",
    "sha256_fingerprint",
]


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
    min_version: str | None = None,
    max_version: str | None = None,
) -> ssl.SSLContext:
    """A judging client for ``trust`` under the client policy; pins are checked later.

    ``min_version``/``max_version`` may only narrow the policy (TLS 1.2-1.3), e.g. to
    force TLS 1.2 or 1.3 for one check; legacy versions are refused here on purpose.
    """
    ctx = policy_context(ssl.PROTOCOL_TLS_CLIENT, CLIENT_POLICY.bounded(min_version, max_version))
    if trust.mode == "ca":
        ctx.load_verify_locations(cafile=str(trust.ca_file))
    elif trust.mode == "system":
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def legacy_client_context(version: str) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 or 1.1, at security level 0, verifying nothing.

    Used to ask "does the server refuse legacy TLS?": the client must be *able* to speak
    the old protocol, or a refusal would be our own failure rather than the server's.
    The only place the harness lowers its TLS policy.
    """
    ctx = policy_context(ssl.PROTOCOL_TLS_CLIENT, legacy_probe_policy(version))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
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
    handshake also counts as the server walking away from the offer (asyncio servers
    on some Python builds, Debian's 3.11.2 among them, close without sending the alert:
    ``SSLZeroReturnError``).
    """
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True
    if isinstance(exc, ssl.SSLError):
        reason = openssl_reason(exc)
        return "_ALERT_" in reason or "WRONG_VERSION_NUMBER" in reason
    return isinstance(exc, ConnectionResetError)


class TLSReason(NamedTuple):
    """What one OpenSSL reason code means, and whose refusal it was."""

    words: str
    this_client: bool  # True: this client could not offer, or refused the server's choice


_CANNOT_OFFER = "this client has nothing to offer for these settings"
_NO_SHARED_CIPHER = ("no shared cipher suite: the server rejected every cipher suite this "
                     "client offered")
_NO_SHARED_VERSION = ("no shared TLS version: the server and this client have no protocol "
                      "version in common")
_NOT_TLS = "the server did not answer with TLS: wrong protocol on this port"
# The one table of OpenSSL reasons (``exc.reason``). Alerts (``..._ALERT_<NAME>``) came
# from the server and are looked up by ``<NAME>``; everything else was raised by this
# client. ``this_client`` reasons are never the server's refusal: for the legacy-TLS
# probe they mean "untestable here", for a judging check they name what the server chose
# that this client's policy does not accept.
TLS_REASONS: dict[str, TLSReason] = {
    # This client could not build a ClientHello for its settings.
    "NO_CIPHERS_AVAILABLE": TLSReason(_CANNOT_OFFER, True),
    "NO_PROTOCOLS_AVAILABLE": TLSReason(_CANNOT_OFFER, True),
    "NO_SUITABLE_SIGNATURE_ALGORITHM": TLSReason(_CANNOT_OFFER, True),
    # This client refused what the server chose.
    "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED": TLSReason(
        "this client refused the server's legacy signature (MD5/SHA-1), which its OpenSSL "
        "does not allow", True),
    "UNSAFE_LEGACY_RENEGOTIATION_DISABLED": TLSReason(
        "this client refused a server without secure renegotiation (RFC 5746)", True),
    "WRONG_SIGNATURE_TYPE": TLSReason(
        "the server signed with an algorithm this client did not offer", True),
    "NO_SHARED_SIGNATURE_ALGORITHMS": TLSReason(
        "no shared signature algorithm with the server", True),
    "DH_KEY_TOO_SMALL": TLSReason(
        "the server's Diffie-Hellman key is too small for this client", True),
    "EE_KEY_TOO_SMALL": TLSReason("the server's certificate key is too small for this client",
                                  True),
    "CA_KEY_TOO_SMALL": TLSReason("a CA key in the server's chain is too small for this client",
                                  True),
    "CA_MD_TOO_WEAK": TLSReason("a certificate in the server's chain uses a hash too weak for "
                                "this client", True),
    "WRONG_CURVE": TLSReason("the server chose a group this client did not offer", True),
    "WRONG_CIPHER_RETURNED": TLSReason(
        "the server chose a cipher suite this client did not offer", True),
    "UNSUPPORTED_PROTOCOL": TLSReason(_NO_SHARED_VERSION, True),
    "VERSION_TOO_LOW": TLSReason(_NO_SHARED_VERSION, True),
    "VERSION_TOO_HIGH": TLSReason(_NO_SHARED_VERSION, True),
    # The server refused (alerts, by the part after ``_ALERT_``) or spoke something else.
    "HANDSHAKE_FAILURE": TLSReason(_NO_SHARED_CIPHER, False),
    "INSUFFICIENT_SECURITY": TLSReason(_NO_SHARED_CIPHER, False),
    "NO_SHARED_CIPHER": TLSReason(_NO_SHARED_CIPHER, False),
    "PROTOCOL_VERSION": TLSReason(_NO_SHARED_VERSION, False),
    "INAPPROPRIATE_FALLBACK": TLSReason(_NO_SHARED_VERSION, False),
    "WRONG_SSL_VERSION": TLSReason(_NO_SHARED_VERSION, False),
    "WRONG_VERSION_NUMBER": TLSReason(_NOT_TLS, False),
    "HTTP_REQUEST": TLSReason(_NOT_TLS, False),
    "HTTPS_PROXY_REQUEST": TLSReason(_NOT_TLS, False),
    "PACKET_LENGTH_TOO_LONG": TLSReason(_NOT_TLS, False),
    "RECORD_LAYER_FAILURE": TLSReason(_NOT_TLS, False),
    "UNKNOWN_PROTOCOL": TLSReason(_NOT_TLS, False),
}


# "[LIB: CODE] text (_ssl.c:992)", "[LIB] text (_ssl.c:992)" or "text (_ssl.c:992)".
_OPENSSL_TEXT = re.compile(
    r"^(?:\[[^\]:]*(?::\s*(?P<code>[^\]]*))?\]\s*)?(?P<text>.*?)\s*(?:\([\w.]+:\d+\))?$")


def openssl_reason(exc: BaseException) -> str:
    """OpenSSL's reason code name (``NO_SHARED_CIPHER``...), or "" when there is none.

    Python names reasons from a table made when it was built; a code missing from it
    (``LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED`` on Debian 12's python3 3.11.2) comes
    with ``reason`` None and only OpenSSL's text, ``[SSL] legacy sigalg disallowed or
    unsupported (_ssl.c:992)``. That text, upper-cased with underscores, is the code
    name (or starts with it), and is what is returned then.
    """
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).upper()
    if not isinstance(exc, ssl.SSLError) or isinstance(exc, ssl.SSLCertVerificationError):
        return ""
    text = str(exc.args[1] if len(exc.args) > 1 else exc)
    match = _OPENSSL_TEXT.match(text.strip())
    words = (match.group("code") or match.group("text")) if match else text
    return re.sub(r"[^A-Z0-9]+", "_", words.upper()).strip("_")


def classify_tls_failure(exc: BaseException) -> TLSReason | None:
    """The :data:`TLS_REASONS` entry for ``exc``, or None when it has none."""
    reason = openssl_reason(exc)
    if not reason:
        return None
    _, alert, name = reason.partition("_ALERT_")
    key = name if alert else reason
    for code, meaning in TLS_REASONS.items():  # "..._OR_UNSUPPORTED": OpenSSL's longer text
        if key == code or key.startswith(code + "_"):
            return meaning
    return None


def explain_tls_failure(exc: BaseException) -> str:
    """What a failed handshake means, in the words an operator searches for.

    OpenSSL's reason codes (``SSLV3_ALERT_HANDSHAKE_FAILURE``...) stay in the text, in
    parentheses, so nothing is lost; the words in front name the fault.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc}"
    reason = openssl_reason(exc)
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                        BrokenPipeError)) or "UNEXPECTED_EOF" in reason:
        detail = f" ({reason})" if reason else ""
        return f"the server closed the connection during the TLS handshake{detail}"
    known = classify_tls_failure(exc)
    if known is not None:
        return f"{known.words} ({reason})"
    if "_ALERT_" in reason:
        return f"the server ended the TLS handshake with an alert ({reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, TimeoutError):
        return "the TLS handshake timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

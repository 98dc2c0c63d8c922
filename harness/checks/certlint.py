"""Certificate lint on DER bytes: the faults that break FTPS/SMTPS clients in practice.

Pure (no sockets): a check fetches the leaf, this module judges it. Findings carry a
severity: ``error`` fails the lint check, ``warning`` and ``info`` are reported as
evidence only (a self-signed IIS certificate is a fact, not a fault: it can be pinned).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.checks import identify
from harness.protocols.tls import sha256_fingerprint

EXPIRY_WARNING_DAYS = 30
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
MAX_PUBLIC_LEAF_DAYS = 398
WEAK_HASHES = ("md5", "sha1", "md2", "md4")

ERROR = "error"
WARNING = "warning"
INFO = "info"

_RENEW = identify.generic("cert-install")


@dataclass(frozen=True)
class Finding:
    """One lint result: a stable ``code``, a ``severity``, what is wrong and how to fix it."""

    code: str
    severity: str
    message: str
    advice: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]] | None:
    """(DNS names, IP addresses) of the SAN extension, or None without one."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    dns = [str(name) for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _common_names(cert: x509.Certificate) -> list[str]:
    return [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def dns_name_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 matching: case-insensitive, a wildcard only as the whole left-most label
    and matching exactly one label (``*.example.com`` matches ``a.example.com`` only)."""
    pattern = pattern.rstrip(".").lower()
    hostname = hostname.rstrip(".").lower()
    if not pattern or not hostname:
        return False
    if "*" not in pattern:
        return pattern == hostname
    head, _, rest = pattern.partition(".")
    if head != "*" or "*" in rest or rest.count(".") < 1:
        return False
    label, _, host_rest = hostname.partition(".")
    return bool(label) and host_rest == rest


def name_matches(cert: x509.Certificate, hostname: str) -> bool:
    """Whether ``hostname`` (a DNS name or IP literal) is covered by the SAN."""
    names = _names(cert)
    if names is None:
        return False
    dns, ips = names
    try:
        wanted = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return any(dns_name_matches(name, hostname) for name in dns)
    return any(ipaddress.ip_address(ip) == wanted for ip in ips)


def key_description(cert: x509.Certificate) -> tuple[str, int | None]:
    """("RSA", 2048), ("EC secp256r1", 256), ("Ed25519", 256)..."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, None


def signature_hash(cert: x509.Certificate) -> str | None:
    """The signature's hash name (``sha256``), or None for Ed25519/Ed448 or unknown."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return cert.signature_algorithm_oid.dotted_string
    return algorithm.name if algorithm is not None else None


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    return str(getattr(oid, "_name", "") or oid.dotted_string)


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # wrong signature, unsupported key: not provably self-signed
        return False
    return True


def certificate_facts(der: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """Subject, issuer, names, validity, key and signature of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    moment = now or _now()
    names = _names(cert)
    key_type, key_bits = key_description(cert)
    left = cert.not_valid_after_utc - moment
    facts: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "common_names": _common_names(cert),
        "dns_names": names[0] if names else [],
        "ip_addresses": names[1] if names else [],
        "has_san": names is not None,
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": left.days,
        "key_type": key_type,
        "key_bits": key_bits,
        "signature_hash": signature_hash(cert),
        "self_signed": is_self_signed(cert),
        "sha256": sha256_fingerprint(der),
    }
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        facts["extended_key_usage"] = [_oid_name(oid) for oid in eku]
    except x509.ExtensionNotFound:
        facts["extended_key_usage"] = None
    return facts


def _validity(cert: x509.Certificate, now: dt.datetime) -> list[Finding]:
    out: list[Finding] = []
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= end:
        days = (now - end).days
        out.append(Finding("expired", ERROR,
                           f"certificate expired on {end:%Y-%m-%d} ({days} days ago)", _RENEW))
    elif now < start:
        out.append(Finding("not-yet-valid", ERROR,
                           f"certificate is not valid before {start:%Y-%m-%d %H:%M} UTC",
                           "Check the server's clock and the certificate's start date; "
                           + _RENEW))
    else:
        left = (end - now).days
        if left < EXPIRY_WARNING_DAYS:
            out.append(Finding("expires-soon", WARNING,
                               f"certificate expires in {left} days ({end:%Y-%m-%d})", _RENEW))
    if (end - start).days > MAX_PUBLIC_LEAF_DAYS and not is_self_signed(cert):
        out.append(Finding("long-validity", INFO,
                           f"validity of {(end - start).days} days exceeds the "
                           f"{MAX_PUBLIC_LEAF_DAYS} days public CAs and Apple clients accept"))
    return out


def _hostname(cert: x509.Certificate, hostname: str) -> list[Finding]:
    names = _names(cert)
    advice = ("Issue the certificate with the host name clients use in its Subject "
              "Alternative Name (IIS: New-SelfSignedCertificate -DnsName <host>), or set the "
              "target's server_name to a name the certificate carries.")
    if names is None or not (names[0] or names[1]):
        cns = _common_names(cert)
        return [Finding("cn-only", ERROR,
                        f"no Subject Alternative Name (only CN={', '.join(cns) or '-'}); "
                        "clients ignore the CN since RFC 6125", advice)]
    if not name_matches(cert, hostname):
        listed = ", ".join(names[0] + names[1])
        return [Finding("hostname-mismatch", ERROR,
                        f"host name {hostname!r} is not in the SAN ({listed})", advice)]
    return []


def _key(cert: x509.Certificate) -> list[Finding]:
    key_type, bits = key_description(cert)
    advice = "Re-issue with an RSA key of at least 2048 bits or an ECDSA P-256/P-384 key."
    if key_type == "RSA" and bits is not None and bits < MIN_RSA_BITS:
        return [Finding("weak-key", ERROR, f"RSA key of {bits} bits (< {MIN_RSA_BITS})", advice)]
    if key_type.startswith("EC ") and bits is not None and bits < MIN_EC_BITS:
        return [Finding("weak-key", ERROR,
                        f"{key_type} key of {bits} bits (< {MIN_EC_BITS})", advice)]
    if key_type == "DSA":
        return [Finding("weak-key", ERROR, "DSA key: no TLS 1.2+ client accepts it", advice)]
    return []


def _signature(cert: x509.Certificate) -> list[Finding]:
    name = signature_hash(cert)
    if name is not None and name.lower() in WEAK_HASHES:
        return [Finding("weak-signature", ERROR,
                        f"signed with {name.upper()}; clients reject SHA-1/MD5 signatures",
                        "Re-issue the certificate signed with SHA-256 or better.")]
    return []


def _usage(cert: x509.Certificate) -> list[Finding]:
    out: list[Finding] = []
    advice = "Re-issue the certificate for TLS server use (template 'Web Server' in AD CS)."
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and not (
        ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        usages = ", ".join(_oid_name(oid) for oid in eku)
        out.append(Finding("no-server-auth", ERROR,
                           f"extended key usage lacks serverAuth ({usages})", advice))
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None:
        is_rsa = isinstance(cert.public_key(), rsa.RSAPublicKey)
        if not ku.digital_signature and not (is_rsa and ku.key_encipherment):
            out.append(Finding("key-usage", ERROR,
                               "key usage allows neither digitalSignature nor (RSA) "
                               "keyEncipherment: no TLS handshake can use this key", advice))
        elif not ku.digital_signature:
            out.append(Finding("key-usage", WARNING,
                               "key usage lacks digitalSignature: only RSA key exchange "
                               "works (no ECDHE, no TLS 1.3)", advice))
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca and not is_self_signed(cert):
            out.append(Finding("leaf-is-ca", WARNING,
                               "the server certificate is a CA certificate (cA=TRUE)", advice))
    except x509.ExtensionNotFound:
        pass
    return out


def lint_certificate(
    der: bytes, hostname: str | None = None, *, now: dt.datetime | None = None
) -> list[Finding]:
    """Every finding for the leaf ``der``, errors first; ``hostname`` None skips the name."""
    cert = x509.load_der_x509_certificate(der)
    moment = now or _now()
    findings = _validity(cert, moment)
    if hostname:
        findings += _hostname(cert, hostname)
    findings += _key(cert) + _signature(cert) + _usage(cert)
    if is_self_signed(cert):
        findings.append(Finding("self-signed", INFO,
                                "self-signed: trust it by pinning its SHA-256 fingerprint "
                                "or by importing it as a CA"))
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    return sorted(findings, key=lambda finding: order.get(finding.severity, 3))


def errors(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.severity == ERROR]

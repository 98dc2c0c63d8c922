"""Certificate lint on DER bytes built here with ``cryptography``, one fault per certificate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.checks.certlint import (
    ERROR,
    INFO,
    WARNING,
    certificate_facts,
    dns_name_matches,
    errors,
    lint_certificate,
    name_matches,
)

NOW = dt.datetime.now(dt.timezone.utc)
_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# DER of the signature algorithm OIDs: same length, so one can replace the other in place.
_SHA256_WITH_RSA = bytes.fromhex("2a864886f70d01010b")
_SHA1_WITH_RSA = bytes.fromhex("2a864886f70d010105")
_MD5_WITH_RSA = bytes.fromhex("2a864886f70d010104")


def make_cert(
    *,
    dns: Sequence[str] | None = ("ftp.example.test",),
    ips: Sequence[str] = (),
    cn: str = "ftp.example.test",
    key: object = _EC_KEY,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    key_usage: dict[str, bool] | None = None,
    ca: bool = False,
    self_signed: bool = False,
) -> bytes:
    """A leaf signed by a throwaway issuer (or itself), as DER."""
    import ipaddress

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_key = key if self_signed else _RSA_KEY
    issuer = subject if self_signed else x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "lint test CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns is not None:
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if key_usage is not None:
        flags = dict.fromkeys(
            ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
            False,
        )
        flags.update(key_usage)
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    cert = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(Encoding.DER)


def weak_signed(oid: bytes, digest: hashes.HashAlgorithm) -> bytes:
    """An RSA-signed certificate re-signed with SHA-1/MD5, which cryptography will not do.

    The algorithm OID is swapped in place (same length) in the TBS and the outer
    AlgorithmIdentifier, then the TBS is signed again; the RSA-2048 signature keeps its
    length, so no DER length changes.
    """
    der = make_cert()
    patched = der.replace(_SHA256_WITH_RSA, oid)
    assert patched.count(oid) == 2
    tbs = x509.load_der_x509_certificate(patched).tbs_certificate_bytes
    signature = _RSA_KEY.sign(tbs, padding.PKCS1v15(), digest)
    return patched[: -len(signature)] + signature


def codes(der: bytes, host: str | None = "ftp.example.test") -> dict[str, str]:
    return {finding.code: finding.severity for finding in lint_certificate(der, host, now=NOW)}


def test_a_good_certificate_has_no_findings() -> None:
    assert codes(make_cert()) == {}
    assert codes(make_cert(key=_RSA_KEY)) == {}


def test_validity() -> None:
    expired = make_cert(not_before=NOW - dt.timedelta(days=90), not_after=NOW - dt.timedelta(1))
    assert codes(expired) == {"expired": ERROR}
    future = make_cert(not_before=NOW + dt.timedelta(days=3), not_after=NOW + dt.timedelta(90))
    assert codes(future) == {"not-yet-valid": ERROR}
    soon = make_cert(not_after=NOW + dt.timedelta(days=10))
    assert codes(soon) == {"expires-soon": WARNING}
    message = lint_certificate(soon, None, now=NOW)[0].message
    assert "expires in 9 days" in message or "expires in 10 days" in message
    long = make_cert(not_after=NOW + dt.timedelta(days=800))
    assert codes(long) == {"long-validity": INFO}


def test_host_name_against_the_san() -> None:
    assert codes(make_cert(), "other.example.test") == {"hostname-mismatch": ERROR}
    cn_only = make_cert(dns=None)
    assert codes(cn_only) == {"cn-only": ERROR}
    assert "CN=ftp.example.test" in lint_certificate(cn_only, "ftp.example.test")[0].message
    wildcard = make_cert(dns=["*.example.test"])
    assert codes(wildcard, "ftp.example.test") == {}
    assert codes(wildcard, "a.b.example.test") == {"hostname-mismatch": ERROR}
    with_ip = make_cert(dns=["localhost"], ips=["127.0.0.1", "::1"])
    assert codes(with_ip, "127.0.0.1") == {} and codes(with_ip, "::1") == {}
    assert codes(with_ip, "127.0.0.2") == {"hostname-mismatch": ERROR}
    assert codes(make_cert(), None) == {}  # no host name given: not judged


@pytest.mark.parametrize(
    ("pattern", "host", "match"),
    [
        ("ftp.example.test", "FTP.Example.Test", True),
        ("ftp.example.test.", "ftp.example.test", True),
        ("*.example.test", "ftp.example.test", True),
        ("*.example.test", "example.test", False),
        ("*.example.test", "a.ftp.example.test", False),
        ("f*.example.test", "ftp.example.test", False),
        ("*.test", "example.test", False),  # no wildcard right below a TLD
        ("ftp.*.test", "ftp.example.test", False),
        ("", "ftp.example.test", False),
    ],
)
def test_dns_name_matching(pattern: str, host: str, match: bool) -> None:
    assert dns_name_matches(pattern, host) is match


def test_ip_literal_never_matches_a_dns_name() -> None:
    cert = x509.load_der_x509_certificate(make_cert(dns=["127.0.0.1"]))
    assert not name_matches(cert, "127.0.0.1")


def test_key_sizes() -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert codes(make_cert(key=small_rsa)) == {"weak-key": ERROR}
    small_ec = ec.generate_private_key(ec.SECP224R1())
    assert codes(make_cert(key=small_ec)) == {"weak-key": ERROR}
    big_ec = ec.generate_private_key(ec.SECP384R1())
    assert codes(make_cert(key=big_ec)) == {}


@pytest.mark.parametrize(
    ("oid", "digest", "name"),
    [(_SHA1_WITH_RSA, hashes.SHA1(), "SHA1"), (_MD5_WITH_RSA, hashes.MD5(), "MD5")],
)
def test_weak_signature_hashes(oid: bytes, digest: hashes.HashAlgorithm, name: str) -> None:
    der = weak_signed(oid, digest)
    assert certificate_facts(der)["signature_hash"] == name.lower()
    findings = lint_certificate(der, "ftp.example.test", now=NOW)
    assert [(f.code, f.severity) for f in findings] == [("weak-signature", ERROR)]
    assert name in findings[0].message


def test_key_usage_and_extended_key_usage() -> None:
    client_only = make_cert(eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    assert codes(client_only) == {"no-server-auth": ERROR}
    assert codes(make_cert(eku=None)) == {}  # no EKU at all: any use is allowed
    assert codes(make_cert(eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])) == {}
    signing = make_cert(key_usage={"key_cert_sign": True})
    assert codes(signing) == {"key-usage": ERROR}
    rsa_kex_only = make_cert(key=_RSA_KEY, key_usage={"key_encipherment": True})
    assert codes(rsa_kex_only) == {"key-usage": WARNING}
    assert codes(make_cert(key_usage={"digital_signature": True})) == {}


def test_self_signed_is_a_fact_not_an_error() -> None:
    der = make_cert(key=_RSA_KEY, self_signed=True)
    findings = lint_certificate(der, "ftp.example.test", now=NOW)
    assert [(f.code, f.severity) for f in findings] == [("self-signed", INFO)]
    assert errors(findings) == []
    assert certificate_facts(der)["self_signed"] is True
    assert codes(make_cert(ca=True)) == {"leaf-is-ca": WARNING}


def test_findings_are_sorted_errors_first_and_serialise() -> None:
    der = make_cert(dns=None, not_after=NOW + dt.timedelta(days=5), self_signed=True)
    findings = lint_certificate(der, "ftp.example.test", now=NOW)
    severities = [finding.severity for finding in findings]
    assert severities == sorted(severities, key=[ERROR, WARNING, INFO].index)
    assert findings[0].to_dict()["code"] == "cn-only"
    assert set(findings[0].to_dict()) == {"code", "severity", "message", "advice"}


def test_facts() -> None:
    der = make_cert(dns=["localhost"], ips=["127.0.0.1"], key=_RSA_KEY)
    facts = certificate_facts(der, now=NOW)
    assert facts["subject"] == "CN=ftp.example.test"
    assert facts["issuer"] == "CN=lint test CA"
    assert facts["dns_names"] == ["localhost"] and facts["ip_addresses"] == ["127.0.0.1"]
    assert (facts["key_type"], facts["key_bits"]) == ("RSA", 2048)
    assert facts["signature_hash"] == "sha256"
    assert facts["extended_key_usage"] == ["serverAuth"]
    assert 88 <= facts["days_left"] <= 90
    assert len(facts["sha256"].split(":")) == 32


def test_the_lab_fault_certificates(tmp_path: Path) -> None:
    """The lab's own broken certificates each show exactly their one fault."""
    from harness.certs import lab_pki

    pki = lab_pki(tmp_path)
    expected = {
        "server": {},
        "iis": {"self-signed": INFO},
        "expired": {"expired": ERROR},
        "not-yet-valid": {"not-yet-valid": ERROR},
        "wrong-host": {"hostname-mismatch": ERROR},
        "unknown-ca": {},  # trust is not the linter's business
    }
    for name, wanted in expected.items():
        leaf = x509.load_pem_x509_certificates(pki.files(name).cert.read_bytes())[0]
        assert codes(leaf.public_bytes(Encoding.DER), "localhost") == wanted, name

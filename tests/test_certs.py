"""Certificates parsed back field by field, PFX profiles, the cached lab set, real handshakes."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import certs
from harness.certs import (
    CertFiles,
    CertificateAuthority,
    KeyType,
    LabPKI,
    PfxProfile,
    ServerCertificate,
    lab_pki,
    parse_key_type,
    self_signed_iis,
)
from harness.protocols.tls import Trust, client_context, facts_of, sha256_fingerprint

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(
    OPENSSL is None, reason="openssl is not installed (Debian package openssl)"
)
NOW_SLACK = dt.timedelta(minutes=2)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="module")
def leaf(ca: CertificateAuthority) -> ServerCertificate:
    return ca.issue_server(["ftp.example.test", "ftp"], ["192.0.2.10", "2001:db8::10"])


@pytest.fixture(scope="module")
def iis() -> ServerCertificate:
    return self_signed_iis("win-build42.example.test")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- CA


def test_ca_is_a_constrained_self_signed_signer(ca: CertificateAuthority) -> None:
    cert = ca.cert
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is True
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature and not usage.value.key_encipherment
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert abs(cert.not_valid_before_utc - (now() - certs.BACKDATE)) < NOW_SLACK
    assert cert.not_valid_after_utc > now() + dt.timedelta(days=3000)


def test_two_cas_never_share_a_subject() -> None:
    assert CertificateAuthority.create().cert.subject != CertificateAuthority.create().cert.subject


# --------------------------------------------------------------------------- server leaf


def test_leaf_profile(ca: CertificateAuthority, leaf: ServerCertificate) -> None:
    cert = leaf.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ftp.example.test"
    assert leaf.common_name == "ftp.example.test"
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["ftp.example.test", "ftp"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("2001:db8::10"),
    ]
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_encipherment  # ECDSA keys do not encipher
    assert not usage.value.key_cert_sign
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.key.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(leaf.key, ec.EllipticCurvePrivateKey)
    assert isinstance(leaf.key.curve, ec.SECP256R1)


def test_leaf_validity_starts_ten_minutes_back_and_stays_under_398_days(
    ca: CertificateAuthority, leaf: ServerCertificate
) -> None:
    start, end = leaf.cert.not_valid_before_utc, leaf.cert.not_valid_after_utc
    assert abs(start - (now() - dt.timedelta(minutes=10))) < NOW_SLACK
    assert end - start <= dt.timedelta(days=398)
    assert end - start == dt.timedelta(days=certs.DEFAULT_LEAF_DAYS)
    longest = ca.issue_server("a.test", days=398).cert
    assert longest.not_valid_after_utc - longest.not_valid_before_utc == dt.timedelta(days=398)
    with pytest.raises(ValueError, match="398"):
        ca.issue_server("a.test", days=399)
    with pytest.raises(ValueError, match="later"):
        ca.issue_server("a.test", not_before=now(), not_after=now() - dt.timedelta(days=1))
    with pytest.raises(ValueError, match="at least one"):
        ca.issue_server([], [])


def test_ip_only_leaf_takes_its_common_name_from_the_ip(ca: CertificateAuthority) -> None:
    cert = ca.issue_server([], ["127.0.0.1"]).cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "127.0.0.1"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == []


@pytest.mark.parametrize("key_type", list(KeyType))
def test_key_types(ca: CertificateAuthority, key_type: KeyType) -> None:
    leaf = ca.issue_server("k.test", key_type=key_type)
    key = leaf.key
    usage = ext(leaf.cert, x509.KeyUsage).value
    if key_type.is_rsa:
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == int(key_type.value[3:])
        assert key.public_key().public_numbers().e == 65537
        assert usage.key_encipherment and usage.digital_signature
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        curve = {KeyType.ECDSA_P256: ec.SECP256R1, KeyType.ECDSA_P384: ec.SECP384R1}[key_type]
        assert isinstance(key.curve, curve)
        assert usage.digital_signature and not usage.key_encipherment
    assert spki(leaf.cert.public_key()) == spki(key.public_key())
    assert isinstance(leaf.cert.signature_hash_algorithm, hashes.SHA256)


def test_rsa_ca_signs_with_sha256() -> None:
    rsa_ca = CertificateAuthority.create(KeyType.RSA2048)
    cert = rsa_ca.issue_server("r.test").cert
    assert isinstance(rsa_ca.key, rsa.RSAPrivateKey)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    cert.verify_directly_issued_by(rsa_ca.cert)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rsa2048", KeyType.RSA2048),
        ("RSA-3072", KeyType.RSA3072),
        ("rsa_4096", KeyType.RSA4096),
        ("ecdsa-p256", KeyType.ECDSA_P256),
        ("p256", KeyType.ECDSA_P256),
        ("prime256v1", KeyType.ECDSA_P256),
        ("ECDSA-P384", KeyType.ECDSA_P384),
        ("secp384r1", KeyType.ECDSA_P384),
        (KeyType.RSA2048, KeyType.RSA2048),
    ],
)
def test_parse_key_type(text: str, expected: KeyType) -> None:
    assert parse_key_type(text) is expected
    assert KeyType.parse(text) is expected


@pytest.mark.parametrize("text", ["rsa1024", "dsa", "ed25519", "", "ecdsa-p521"])
def test_parse_key_type_rejects_unknown_values_clearly(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_key_type(text)
    message = str(info.value)
    assert repr(text) in message
    assert all(kind.value in message for kind in KeyType)


def test_key_type_is_a_string_enum() -> None:
    assert KeyType.ECDSA_P256 == "ecdsa-p256"
    assert [k.value for k in KeyType] == [
        "rsa2048",
        "rsa3072",
        "rsa4096",
        "ecdsa-p256",
        "ecdsa-p384",
    ]


# --------------------------------------------------------------------------- IIS style


def test_iis_style_certificate_is_a_single_self_signed_rsa2048(iis: ServerCertificate) -> None:
    cert = iis.cert
    assert isinstance(iis.key, rsa.RSAPrivateKey) and iis.key.key_size == 2048
    name = "win-build42.example.test"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert iis.self_signed
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [name]
    assert ExtendedKeyUsageOID.SERVER_AUTH in ext(cert, x509.ExtendedKeyUsage).value
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)
    # one certificate, its own anchor
    assert iis.chain_pem == iis.cert_pem
    assert iis.ca_pem == iis.cert_pem
    assert len(x509.load_pem_x509_certificates(iis.chain_pem)) == 1


def test_iis_style_for_an_ip_literal_uses_an_ip_san() -> None:
    cert = self_signed_iis("127.0.0.1").cert
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == []


# --------------------------------------------------------------------------- encodings


def test_pem_der_chain_and_fingerprint(ca: CertificateAuthority, leaf: ServerCertificate) -> None:
    assert x509.load_der_x509_certificate(leaf.der) == leaf.cert
    assert x509.load_pem_x509_certificate(leaf.cert_pem) == leaf.cert
    chain = x509.load_pem_x509_certificates(leaf.chain_pem)
    assert chain == [leaf.cert, ca.cert]
    assert leaf.ca_pem == ca.cert_pem
    key = serialization.load_pem_private_key(leaf.key_pem, password=None)
    assert spki(key.public_key()) == spki(leaf.cert.public_key())
    assert leaf.fingerprint == sha256_fingerprint(leaf.der)
    assert len(leaf.fingerprint) == 32 * 3 - 1


@needs_openssl
def test_fingerprint_agrees_with_openssl(leaf: ServerCertificate) -> None:
    out = subprocess.run(
        [OPENSSL, "x509", "-noout", "-fingerprint", "-sha256"],
        input=leaf.cert_pem,
        capture_output=True,
        timeout=10,
        check=True,
    ).stdout.decode()
    assert out.strip().split("=", 1)[1] == leaf.fingerprint


# --------------------------------------------------------------------------- PKCS#12

PFX_PASSWORD = "pfx-test-password"


@pytest.mark.parametrize("profile", list(PfxProfile))
def test_pfx_loads_back(
    ca: CertificateAuthority, leaf: ServerCertificate, profile: PfxProfile
) -> None:
    blob = leaf.to_pfx(PFX_PASSWORD, profile.value)
    loaded = pkcs12.load_pkcs12(blob, PFX_PASSWORD.encode())
    assert loaded.cert is not None and loaded.cert.certificate == leaf.cert
    assert loaded.cert.friendly_name == b"ftp.example.test"
    assert loaded.key is not None and spki(loaded.key.public_key()) == spki(leaf.key.public_key())
    assert [c.certificate for c in loaded.additional_certs] == [ca.cert]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(blob, b"wrong password")


def test_self_signed_pfx_carries_no_extra_ca(iis: ServerCertificate) -> None:
    loaded = pkcs12.load_pkcs12(iis.to_pfx(PFX_PASSWORD, "legacy"), PFX_PASSWORD.encode())
    assert loaded.additional_certs == []


def test_pfx_needs_a_password_and_a_known_profile(leaf: ServerCertificate) -> None:
    with pytest.raises(ValueError, match="password"):
        leaf.to_pfx("")
    with pytest.raises(ValueError, match="modern, legacy"):
        leaf.to_pfx(PFX_PASSWORD, "strong")


def _openssl_pkcs12_info(blob: bytes, tmp_path: Path) -> str:
    path = tmp_path / "probe.pfx"
    path.write_bytes(blob)
    result = subprocess.run(
        [OPENSSL, "pkcs12", "-info", "-nokeys", "-noout", "-in", str(path), "-passin", "env:PFXPW"],
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "PFXPW": PFX_PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@needs_openssl
def test_legacy_pfx_really_is_3des_and_sha1(leaf: ServerCertificate, tmp_path: Path) -> None:
    info = _openssl_pkcs12_info(leaf.to_pfx(PFX_PASSWORD, PfxProfile.LEGACY), tmp_path)
    assert "MAC: sha1," in info
    assert "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC" in info
    assert "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC" in info
    assert "AES" not in info and "PBES2" not in info


@needs_openssl
def test_modern_pfx_is_aes256_pbkdf2_sha256(leaf: ServerCertificate, tmp_path: Path) -> None:
    info = _openssl_pkcs12_info(leaf.to_pfx(PFX_PASSWORD, PfxProfile.MODERN), tmp_path)
    assert "MAC: sha256," in info
    assert "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC" in info
    assert "PRF hmacWithSHA256" in info
    assert "TripleDES" not in info and "sha1" not in info.lower()


# --------------------------------------------------------------------------- files


def test_write_creates_private_keys_0600_at_creation(
    ca: CertificateAuthority,
    leaf: ServerCertificate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[tuple[str, int]] = []
    real_open = os.open

    def spy_open(path: object, flags: int, mode: int = 0o777, *args: object) -> int:
        opened.append((os.fspath(path), mode))  # type: ignore[arg-type]
        return real_open(path, flags, mode, *args)  # type: ignore[arg-type]

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("modes must be set when the file is created")

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    files = leaf.write(tmp_path, "ftp")
    pfx = leaf.write_pfx(tmp_path / "ftp.pfx", PFX_PASSWORD, "legacy")
    monkeypatch.undo()

    assert files == CertFiles(tmp_path / "ftp.pem", tmp_path / "ftp.key", tmp_path / "ftp-ca.pem")
    for private in (files.key, pfx):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert any(Path(p).name.startswith(f".{private.name}.") and m == 0o600 for p, m in opened)
    assert stat.S_IMODE(files.cert.stat().st_mode) & 0o077 != 0o077
    assert files.cert.read_bytes() == leaf.chain_pem
    assert files.key.read_bytes() == leaf.key_pem
    assert files.ca is not None and files.ca.read_bytes() == ca.cert_pem
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ftp-ca.pem",
        "ftp.key",
        "ftp.pem",
        "ftp.pfx",
    ], "no temp files may be left behind"

    again = ServerCertificate.load(files.cert, files.key, files.ca)
    assert again.cert == leaf.cert and again.ca == ca.cert
    assert spki(again.key.public_key()) == spki(leaf.key.public_key())


def test_write_points_at_a_given_ca_file_or_at_itself(
    leaf: ServerCertificate, iis: ServerCertificate, tmp_path: Path
) -> None:
    shared = tmp_path / "ca.pem"
    assert leaf.write(tmp_path, "a", ca_file=shared).ca == shared
    assert not (tmp_path / "a-ca.pem").exists()
    files = iis.write(tmp_path, "iis")
    assert files.ca == files.cert


def test_load_rejects_a_key_that_does_not_match(
    leaf: ServerCertificate, iis: ServerCertificate, tmp_path: Path
) -> None:
    a = leaf.write(tmp_path, "a")
    b = iis.write(tmp_path, "b")
    with pytest.raises(ValueError, match="does not belong"):
        ServerCertificate.load(a.cert, b.key)


def test_ca_write_and_load(ca: CertificateAuthority, tmp_path: Path) -> None:
    files = ca.write(tmp_path)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    again = CertificateAuthority.load(files.cert, files.key)
    assert again.cert == ca.cert
    assert again.fingerprint == ca.fingerprint == certs.fingerprint_of(files.cert)


# --------------------------------------------------------------------------- lab PKI


def test_lab_set_on_disk(pki: LabPKI) -> None:
    for files in (pki.server, pki.iis, pki.expired, pki.not_yet_valid, pki.wrong_host):
        assert files.cert.is_file() and files.key.is_file()
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.ca_key_file.stat().st_mode) == 0o600
    assert pki.server.ca == pki.ca_file
    assert pki.iis.ca == pki.iis.cert
    assert pki.unknown_ca.ca == pki.other_ca_file != pki.ca_file
    server = ServerCertificate.load(pki.server.cert, pki.server.key, pki.ca_file)
    assert pki.server_fingerprint == server.fingerprint == certs.fingerprint_of(pki.server.cert)
    assert pki.iis_fingerprint == certs.fingerprint_of(pki.iis.cert)
    san = ext(server.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert pki.ca.cert == x509.load_pem_x509_certificate(pki.ca_file.read_bytes())


def test_lab_files_by_scenario_name(pki: LabPKI) -> None:
    assert pki.files("lab") == pki.server
    assert pki.files("iis") == pki.iis
    assert pki.files("not-yet-valid") == pki.not_yet_valid
    assert pki.files("wrong_host") == pki.wrong_host
    assert pki.files("unknown-ca") == pki.unknown_ca
    assert pki.fingerprint("lab") == pki.server_fingerprint
    with pytest.raises(KeyError, match="no lab certificate"):
        pki.files("revoked")


def test_negative_certificates_each_carry_exactly_their_fault(pki: LabPKI) -> None:
    lab_ca = pki.ca.cert
    moment = now()

    def load(files: CertFiles) -> x509.Certificate:
        return x509.load_pem_x509_certificates(files.cert.read_bytes())[0]

    def sans(cert: x509.Certificate) -> list[str]:
        value = ext(cert, x509.SubjectAlternativeName).value
        return value.get_values_for_type(x509.DNSName) + [
            str(ip) for ip in value.get_values_for_type(x509.IPAddress)
        ]

    expired = load(pki.expired)
    assert expired.not_valid_after_utc < moment
    expired.verify_directly_issued_by(lab_ca)
    assert sans(expired) == ["localhost", "127.0.0.1", "::1"]

    future = load(pki.not_yet_valid)
    assert future.not_valid_before_utc > moment + dt.timedelta(days=1)
    future.verify_directly_issued_by(lab_ca)

    wrong = load(pki.wrong_host)
    assert sans(wrong) == ["wrong.example.invalid"]
    assert wrong.not_valid_before_utc < moment < wrong.not_valid_after_utc
    wrong.verify_directly_issued_by(lab_ca)

    stranger = load(pki.unknown_ca)
    other = x509.load_pem_x509_certificate(pki.other_ca_file.read_bytes())
    assert stranger.issuer != lab_ca.subject
    with pytest.raises(ValueError):
        stranger.verify_directly_issued_by(lab_ca)
    stranger.verify_directly_issued_by(other)
    assert stranger.not_valid_before_utc < moment < stranger.not_valid_after_utc
    assert sans(stranger) == ["localhost", "127.0.0.1", "::1"]


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if p.name != ".lock"
    }


def test_lab_set_is_generated_once_and_reused_across_runs(tmp_path: Path) -> None:
    first = lab_pki(tmp_path)
    assert first.generated
    assert lab_pki(tmp_path) is first, "same process: served from memory"
    before = _snapshot(tmp_path)

    certs.clear_lab_pki_cache()  # as if a new test run started
    second = lab_pki(tmp_path)
    assert second is not first and not second.generated
    assert _snapshot(tmp_path) == before, "valid files must be reused untouched"
    assert second.server_fingerprint == first.server_fingerprint


def test_lab_set_regenerates_leaves_that_would_expire_within_a_day(tmp_path: Path) -> None:
    first = lab_pki(tmp_path)
    ca_before = first.ca_file.read_bytes()
    short = first.ca.issue_server(
        ["localhost"], ["127.0.0.1", "::1"], not_after=now() + dt.timedelta(hours=12)
    )
    short.write(tmp_path, "server", ca_file=first.ca_file)

    certs.clear_lab_pki_cache()
    second = lab_pki(tmp_path)
    assert second.generated
    assert second.server_fingerprint not in (short.fingerprint, first.server_fingerprint)
    assert first.ca_file.read_bytes() == ca_before, "a CA good for years is kept"
    server = x509.load_pem_x509_certificates(second.server.cert.read_bytes())[0]
    assert server.not_valid_after_utc > now() + dt.timedelta(days=300)


def test_lab_set_regenerates_when_a_key_is_missing(tmp_path: Path) -> None:
    first = lab_pki(tmp_path)
    first.iis.key.unlink()
    certs.clear_lab_pki_cache()
    second = lab_pki(tmp_path)
    assert second.generated and second.iis.key.is_file()
    assert second.iis_fingerprint != first.iis_fingerprint


def test_parallel_processes_agree_on_one_lab_set(tmp_path: Path) -> None:
    """Two workers racing on an empty directory end up with the same, coherent set."""
    code = (
        "import sys; from harness.certs import lab_pki; "
        "p = lab_pki(sys.argv[1]); print(p.ca.fingerprint, p.server_fingerprint)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    assert len(set(outputs)) == 1, outputs
    certs.clear_lab_pki_cache()
    pki = lab_pki(tmp_path)
    assert not pki.generated
    assert outputs[0] == f"{pki.ca.fingerprint} {pki.server_fingerprint}"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_default_directory_is_the_checkout_certs_dir(tmp_path: Path) -> None:
    root = certs.project_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert certs.default_pki_directory() == root / "certs"
    assert certs.default_pki_directory(tmp_path) == tmp_path / "certs"
    assert (tmp_path / "certs").is_dir()


def test_default_directory_falls_back_to_a_private_temp_dir(tmp_path: Path) -> None:
    (tmp_path / "certs").write_text("a file where the directory should be")
    fallback = certs.default_pki_directory(tmp_path)
    assert fallback != tmp_path / "certs"
    info = fallback.stat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0
    if hasattr(os, "getuid"):
        assert info.st_uid == os.getuid()


# --------------------------------------------------------------------------- real TLS


@contextlib.contextmanager
def tls_server(files: CertFiles) -> Iterator[int]:
    """A one-connection TLS server on loopback presenting ``files``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn, contextlib.suppress(ssl.SSLError, OSError):
            conn.settimeout(5)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(6)


def handshake(port: int, trust: Trust, server_hostname: str = "localhost") -> bytes | None:
    ctx = client_context(trust)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        facts = facts_of(tls)
        trust.verify_pin(facts.peer_der)
        assert tls.recv(2) == b"ok"
        return facts.peer_der


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_lab_leaf_verifies_against_the_lab_ca(pki: LabPKI, server_hostname: str) -> None:
    with tls_server(pki.server) as port:
        der = handshake(port, Trust(ca_file=pki.ca_file), server_hostname)
    assert der is not None and sha256_fingerprint(der) == pki.server_fingerprint


@pytest.mark.parametrize(
    ("name", "verify_code"),
    [
        ("expired", 10),  # X509_V_ERR_CERT_HAS_EXPIRED
        ("not-yet-valid", 9),  # X509_V_ERR_CERT_NOT_YET_VALID
        # the server sends its whole chain, so the client meets the stranger's root:
        ("unknown-ca", 19),  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        ("wrong-host", 62),  # X509_V_ERR_HOSTNAME_MISMATCH
    ],
)
def test_lab_client_rejects_each_negative_certificate(
    pki: LabPKI, name: str, verify_code: int
) -> None:
    with tls_server(pki.files(name)) as port, pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(port, Trust(ca_file=pki.ca_file))
    assert info.value.verify_code == verify_code, info.value.verify_message


def test_unknown_ca_leaf_is_fine_for_whoever_trusts_its_issuer(pki: LabPKI) -> None:
    """Guards the test above: the only fault of unknown-ca is who signed it."""
    with tls_server(pki.unknown_ca) as port:
        assert handshake(port, Trust(ca_file=pki.other_ca_file)) is not None


def test_iis_certificate_works_as_pin_and_as_trust_anchor(pki: LabPKI) -> None:
    with tls_server(pki.iis) as port:
        der = handshake(port, Trust(pin_sha256=pki.iis_fingerprint))
    assert der is not None and sha256_fingerprint(der) == pki.iis_fingerprint
    assert pki.iis.ca is not None
    with tls_server(pki.iis) as port:
        handshake(port, Trust(ca_file=pki.iis.ca))
    with tls_server(pki.iis) as port, pytest.raises(ssl.SSLCertVerificationError):
        handshake(port, Trust(ca_file=pki.ca_file))

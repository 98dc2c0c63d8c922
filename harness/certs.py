"""Certificates for the lab: a CA, server leaves, IIS-style self-signed, PFX, and faults.

Value types in the style of ``trustme``: a :class:`CertificateAuthority` issues
:class:`ServerCertificate` objects, which know how to render themselves as PEM, DER or
PKCS#12 and how to write themselves to disk. :func:`lab_pki` builds (once per process,
and once per validity period on disk) the fixed set the embedded lab and tests use,
including deliberately broken certificates so the harness can prove it tells them apart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.protocols.tls import sha256_fingerprint

try:  # POSIX: serialise lab generation between processes (pytest-xdist workers)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # pragma: no cover - Windows only
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

BACKDATE = dt.timedelta(minutes=10)
"""Leaves start this far in the past so a peer whose clock lags a little accepts them."""
MAX_LEAF_DAYS = 398
"""CA/Browser Forum and Apple limit for TLS server certificates."""
DEFAULT_LEAF_DAYS = 397
DEFAULT_CA_DAYS = 3650
IIS_DAYS = 365
"""IIS Manager's "Create Self-Signed Certificate" makes one-year certificates."""

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


class KeyType(str, Enum):
    """Key algorithms the lab can issue; the value is what CLIs and files spell."""

    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"

    @classmethod
    def parse(cls, value: str | KeyType) -> KeyType:
        """Accept ``rsa2048``, ``RSA-2048``, ``p256``, ``secp384r1``...; reject the rest clearly."""
        if isinstance(value, KeyType):
            return value
        exact = cls._value2member_map_.get(value) if isinstance(value, str) else None
        if exact is not None:  # the canonical spelling: no regex on every certificate
            return exact  # type: ignore[return-value]
        text = re.sub(r"[\s_-]", "", str(value).lower())
        for member in cls:
            if text == member.value.replace("-", ""):
                return member
        if text in _KEY_ALIASES:
            return _KEY_ALIASES[text]
        choices = ", ".join(member.value for member in cls)
        raise ValueError(f"unknown key type {value!r}; choose one of: {choices}")

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")


_KEY_ALIASES = {
    "rsa": KeyType.RSA2048,
    "p256": KeyType.ECDSA_P256,
    "secp256r1": KeyType.ECDSA_P256,
    "prime256v1": KeyType.ECDSA_P256,
    "ecdsa": KeyType.ECDSA_P256,
    "p384": KeyType.ECDSA_P384,
    "secp384r1": KeyType.ECDSA_P384,
}


def parse_key_type(value: str | KeyType) -> KeyType:
    """Module-level spelling of :meth:`KeyType.parse`."""
    return KeyType.parse(value)


class PfxProfile(str, Enum):
    """How a PKCS#12 file is protected.

    ``modern`` (AES-256-CBC, PBKDF2/SHA-256, SHA-256 MAC) is what current OpenSSL and
    Windows Server 2019+ expect; ``legacy`` (3DES, SHA-1 MAC) is the only form older
    Windows Server releases import.
    """

    MODERN = "modern"
    LEGACY = "legacy"

    @classmethod
    def parse(cls, value: str | PfxProfile) -> PfxProfile:
        if isinstance(value, PfxProfile):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if text == member.value:
                return member
        choices = ", ".join(member.value for member in cls)
        raise ValueError(f"unknown PFX profile {value!r}; choose one of: {choices}")

    @property
    def description(self) -> str:
        if self is PfxProfile.LEGACY:
            return "3DES + SHA-1 MAC, for older Windows Server"
        return "AES-256-CBC + PBKDF2/SHA-256"


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_key(key_type: KeyType | str) -> PrivateKey:
    kind = KeyType.parse(key_type)
    if kind.is_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.value[3:]))
    curve = ec.SECP256R1() if kind is KeyType.ECDSA_P256 else ec.SECP384R1()
    return ec.generate_private_key(curve)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError("only RSA and ECDSA keys are supported")
    return key


def _general_names(dns_names: Iterable[str], ips: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in dns_names:
        ascii_name = name if name.isascii() else name.encode("idna").decode("ascii")
        names.append(x509.DNSName(ascii_name.lower()))
    names.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)
    return names


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, days: int
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or (_now() - BACKDATE)
    end = not_after or (start + dt.timedelta(days=days))
    if end <= start:
        raise ValueError("not_after must be later than not_before")
    if end - start > dt.timedelta(days=MAX_LEAF_DAYS):
        raise ValueError(f"a server certificate may be valid for at most {MAX_LEAF_DAYS} days")
    return start, end


def _leaf_extensions(
    builder: x509.CertificateBuilder, key: PrivateKey, names: list[x509.GeneralName]
) -> x509.CertificateBuilder:
    """Extensions every server leaf carries, whoever signs it."""
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


@dataclass(frozen=True)
class CertFiles:
    """Where one certificate landed: ``cert`` is the chain PEM (leaf first)."""

    cert: Path
    key: Path
    ca: Path | None = None
    pfx: Path | None = None


@dataclass(frozen=True)
class ServerCertificate:
    """A server certificate with its key and, when known, the CA that signed it.

    ``ca`` is the trust anchor: the issuing CA, or the certificate itself when it is
    self-signed (pin it, or trust it directly).
    """

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    ca: x509.Certificate | None = None

    @property
    def self_signed(self) -> bool:
        return self.cert.issuer == self.cert.subject and _is_signed_by(self.cert, self.cert)

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    @property
    def ca_pem(self) -> bytes | None:
        if self.self_signed:
            return self.cert_pem
        return _cert_pem(self.ca) if self.ca is not None else None

    @property
    def chain_pem(self) -> bytes:
        """Leaf then issuer: what a server sends. A self-signed leaf is its own chain."""
        if self.ca is None or self.self_signed:
            return self.cert_pem
        return self.cert_pem + _cert_pem(self.ca)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return sha256_fingerprint(self.der)

    @property
    def common_name(self) -> str:
        attrs = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    def to_pfx(
        self,
        password: str | bytes,
        profile: PfxProfile | str = PfxProfile.MODERN,
        *,
        friendly_name: str | None = None,
    ) -> bytes:
        """PKCS#12 with key, leaf and (for CA-issued leaves) the CA certificate."""
        secret = password.encode() if isinstance(password, str) else password
        if not secret:
            raise ValueError("a PFX needs a non-empty password")
        kind = PfxProfile.parse(profile)
        builder = serialization.PrivateFormat.PKCS12.encryption_builder()
        if kind is PfxProfile.LEGACY:
            builder = (
                builder.kdf_rounds(2048)
                .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                .hmac_hash(hashes.SHA1())
            )
        else:
            builder = (
                builder.kdf_rounds(100_000)
                .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                .hmac_hash(hashes.SHA256())
            )
        cas = [self.ca] if self.ca is not None and not self.self_signed else None
        name = (friendly_name or self.common_name or "ftps-lab").encode()
        return pkcs12.serialize_key_and_certificates(
            name, self.key, self.cert, cas, builder.build(secret)
        )

    def write(self, directory: Path | str, stem: str, *, ca_file: Path | None = None) -> CertFiles:
        """Write ``<stem>.pem`` (chain), ``<stem>.key`` (0600) and the trust anchor.

        The anchor is ``ca_file`` when given (already on disk), the certificate itself when
        self-signed, else ``<stem>-ca.pem``.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        files = CertFiles(cert=folder / f"{stem}.pem", key=folder / f"{stem}.key")
        atomic_write(files.key, self.key_pem, mode=PRIVATE_MODE)
        atomic_write(files.cert, self.chain_pem, mode=PUBLIC_MODE)
        anchor = ca_file
        if anchor is None and self.self_signed:
            anchor = files.cert
        elif anchor is None and self.ca is not None:
            anchor = folder / f"{stem}-ca.pem"
            atomic_write(anchor, _cert_pem(self.ca), mode=PUBLIC_MODE)
        return CertFiles(cert=files.cert, key=files.key, ca=anchor)

    def write_pfx(
        self,
        path: Path | str,
        password: str | bytes,
        profile: PfxProfile | str = PfxProfile.MODERN,
    ) -> Path:
        target = Path(path)
        atomic_write(target, self.to_pfx(password, profile), mode=PRIVATE_MODE)
        return target

    @classmethod
    def load(
        cls, cert_file: Path | str, key_file: Path | str, ca_file: Path | str | None = None
    ) -> ServerCertificate:
        """Read back what :meth:`write` wrote; the key must belong to the leaf."""
        chain = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
        key = _load_key(Path(key_file).read_bytes())
        if _spki(chain[0].public_key()) != _spki(key.public_key()):
            raise ValueError(f"{key_file} does not belong to {cert_file}")
        ca = None
        if ca_file is not None:
            ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
        elif len(chain) > 1:
            ca = chain[-1]
        return cls(cert=chain[0], key=key, ca=ca)


def _is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class CertificateAuthority:
    """A lab CA: self-signed, and the only thing the lab clients trust."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @classmethod
    def create(
        cls,
        key_type: KeyType | str = KeyType.ECDSA_P256,
        *,
        common_name: str | None = None,
        days: int = DEFAULT_CA_DAYS,
    ) -> CertificateAuthority:
        """A fresh CA; the random suffix keeps two lab CAs from sharing a subject name."""
        key = generate_key(key_type)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ftps-lab"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, common_name or f"ftps-lab CA {secrets.token_hex(4)}"
                ),
            ]
        )
        start = _now() - BACKDATE
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    @classmethod
    def load(cls, cert_file: Path | str, key_file: Path | str) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        key = _load_key(Path(key_file).read_bytes())
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise ValueError(f"{key_file} does not belong to {cert_file}")
        return cls(cert=cert, key=key)

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return sha256_fingerprint(self.der)

    def issue_server(
        self,
        dns_names: Sequence[str] | str,
        ips: Sequence[str] = (),
        *,
        key_type: KeyType | str = KeyType.ECDSA_P256,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        days: int = DEFAULT_LEAF_DAYS,
    ) -> ServerCertificate:
        """A TLS server leaf; CN is the first DNS name (or IP), SAN lists them all."""
        dns = [dns_names] if isinstance(dns_names, str) else list(dns_names)
        addresses = [str(ip) for ip in ips]
        if not dns and not addresses:
            raise ValueError("a server certificate needs at least one DNS name or IP")
        start, end = _validity(not_before, not_after, days)
        key = generate_key(key_type)
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or addresses)[0])])
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )
        builder = _leaf_extensions(builder, key, _general_names(dns, addresses)).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        return ServerCertificate(
            cert=builder.sign(self.key, hashes.SHA256()), key=key, ca=self.cert
        )

    def write(self, directory: Path | str, stem: str = "ca") -> CertFiles:
        """``<stem>.pem`` and ``<stem>.key`` (0600); the CA is its own anchor."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{stem}.pem", folder / f"{stem}.key"
        atomic_write(key, self.key_pem, mode=PRIVATE_MODE)
        atomic_write(cert, self.cert_pem, mode=PUBLIC_MODE)
        return CertFiles(cert=cert, key=key, ca=cert)


def self_signed_iis(
    host: str, *, days: int = IIS_DAYS, not_before: dt.datetime | None = None
) -> ServerCertificate:
    """One self-signed RSA-2048 certificate, as IIS Manager's "Create Self-Signed
    Certificate" makes: CN = host name, no CA behind it, trusted by pinning it."""
    start, end = _validity(not_before, None, days)
    key = generate_key(KeyType.RSA2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        names = _general_names([], [str(ipaddress.ip_address(host))])
    except ValueError:
        names = _general_names([host], [])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    builder = _leaf_extensions(builder, key, names).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
    )
    cert = builder.sign(key, hashes.SHA256())
    return ServerCertificate(cert=cert, key=key, ca=cert)


def load_certificates(path: Path | str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the single one in a DER file."""
    data = Path(path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def fingerprint_of(path: Path | str) -> str:
    """SHA-256 fingerprint of the first (leaf) certificate in ``path``."""
    cert = load_certificates(path)[0]
    return sha256_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def atomic_write(path: Path | str, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Write via a same-directory temp file created with ``mode``, then rename.

    Readers (other pytest-xdist workers, a server starting up) see the old file or the
    new one, never half of one; a private key is never readable by others, not even
    for an instant, because the mode is set at creation.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- lab PKI

LAB_HOST = "localhost"
LAB_IPS = ("127.0.0.1", "::1")
WRONG_HOST = "wrong.example.invalid"
_LEAVES = ("server", "iis", "expired", "not-yet-valid", "wrong-host", "unknown-ca")
_SCENARIO_NAMES = {"lab": "server"}
"""Scenario files call the good CA-issued leaf ``lab``; on disk it is ``server``."""


@dataclass(frozen=True)
class LabPKI:
    """The lab's certificates on disk: one trusted CA, the good leaves, and the faults.

    ``unknown_ca`` is signed by ``other_ca_file``, a CA the lab never trusts, and its chain
    file carries that CA too (a client reports "self-signed certificate in certificate
    chain"). The negative leaves otherwise look like the good one (localhost, 127.0.0.1,
    ::1), so each carries exactly one fault.
    """

    directory: Path
    ca: CertificateAuthority = field(repr=False)
    ca_file: Path
    ca_key_file: Path
    other_ca_file: Path
    server: CertFiles
    iis: CertFiles
    expired: CertFiles
    not_yet_valid: CertFiles
    wrong_host: CertFiles
    unknown_ca: CertFiles
    certificates: dict[str, ServerCertificate] = field(repr=False, compare=False)
    generated: bool = False

    def files(self, name: str) -> CertFiles:
        """Files for a scenario's ``certificate:`` value (``lab``, ``iis``, ``wrong-host``...)."""
        key = _SCENARIO_NAMES.get(name, name).replace("_", "-")
        if key not in _LEAVES:
            raise KeyError(f"no lab certificate {name!r}; known: lab, {', '.join(_LEAVES[1:])}")
        return getattr(self, key.replace("-", "_"))

    def fingerprint(self, name: str) -> str:
        key = _SCENARIO_NAMES.get(name, name).replace("_", "-")
        self.files(key)
        return self.certificates[key].fingerprint

    @property
    def server_fingerprint(self) -> str:
        return self.fingerprint("server")

    @property
    def iis_fingerprint(self) -> str:
        return self.fingerprint("iis")


_cache: dict[Path, LabPKI] = {}
_cache_lock = threading.Lock()


def clear_lab_pki_cache() -> None:
    """Forget what this process generated (the files stay); a new run, as far as reuse goes."""
    with _cache_lock:
        _cache.clear()


def project_root() -> Path | None:
    """The ftps-lab checkout in use: the one this package runs from, else the nearest one
    above the working directory (tox installs the package into a virtualenv, but the
    certificates still belong in the checkout's ``certs/``). None outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    for root in (here, *[Path.cwd(), *Path.cwd().parents]):
        if _is_checkout(root):
            return root
    return None


def _is_checkout(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and (root / "harness").is_dir()):
        return False
    try:
        return 'name = "ftps-lab"' in pyproject.read_text(encoding="utf-8")
    except OSError:
        return False


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def _user_temp_dir() -> Path:
    """A per-user directory under the temp dir that no one else can have planted files in."""
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    path = Path(tempfile.gettempdir()) / f"ftps-lab-certs-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.stat()
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
            raise PermissionError(f"{path} is not private to this user")
    except OSError:
        return Path(tempfile.mkdtemp(prefix="ftps-lab-certs-"))
    return path


def default_pki_directory(root: Path | None = None) -> Path:
    """``certs/`` in the checkout when writable, else a private per-user temp dir."""
    base = root if root is not None else project_root()
    if base is not None and _writable_dir(base / "certs"):
        return base / "certs"
    return _user_temp_dir()


@contextlib.contextmanager
def _directory_lock(directory: Path, timeout: float = 120.0) -> Iterator[None]:
    """Exclusive lock between processes, so no worker reads a half-replaced set."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                elif msvcrt is not None:  # pragma: no cover - Windows
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{directory}/.lock held for over {timeout:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _paths(directory: Path) -> dict[str, CertFiles]:
    ca = directory / "ca.pem"
    other = directory / "other-ca.pem"
    out = {"ca": CertFiles(cert=ca, key=directory / "ca.key", ca=ca)}
    for name in _LEAVES:
        anchor = {"iis": directory / "iis.pem", "unknown-ca": other}.get(name, ca)
        out[name] = CertFiles(directory / f"{name}.pem", directory / f"{name}.key", anchor)
    return out


CA_KEEP_MARGIN = dt.timedelta(days=30)


def _usable_ca(directory: Path, now: dt.datetime) -> CertificateAuthority | None:
    """The CA already in ``directory`` when it can keep signing for a while.

    Keeping it means a CA someone imported into a trust store (or made with
    ``lab certs ca``) survives a regeneration of the leaves.
    """
    try:
        ca = CertificateAuthority.load(directory / "ca.pem", directory / "ca.key")
        constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    fresh = ca.cert.not_valid_before_utc <= now < ca.cert.not_valid_after_utc - CA_KEEP_MARGIN
    return ca if constraints.ca and fresh else None


def _generate(directory: Path) -> None:
    now = _now()
    ca = _usable_ca(directory, now)
    if ca is None:
        ca = CertificateAuthority.create()
        ca.write(directory, "ca")
    other = CertificateAuthority.create(common_name=f"ftps-lab untrusted CA {secrets.token_hex(4)}")
    leaves = {
        "server": ca.issue_server([LAB_HOST], LAB_IPS),
        "iis": self_signed_iis(LAB_HOST),
        "expired": ca.issue_server(
            [LAB_HOST],
            LAB_IPS,
            not_before=now - dt.timedelta(days=60),
            not_after=now - dt.timedelta(days=30),
        ),
        "not-yet-valid": ca.issue_server(
            [LAB_HOST],
            LAB_IPS,
            not_before=now + dt.timedelta(days=180),
            not_after=now + dt.timedelta(days=270),
        ),
        "wrong-host": ca.issue_server([WRONG_HOST]),
        "unknown-ca": other.issue_server([LAB_HOST], LAB_IPS),
    }
    paths = _paths(directory)
    atomic_write(directory / "other-ca.pem", other.cert_pem)
    for name, leaf in leaves.items():
        leaf.write(directory, name, ca_file=paths[name].ca)


def _san(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*ext.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def _load_valid(directory: Path) -> tuple[CertificateAuthority, dict[str, ServerCertificate]]:
    """Load the set and check it is still what its names promise for at least a day.

    Any problem raises; the caller then regenerates everything, so the set stays coherent.
    """
    paths = _paths(directory)
    now = _now()
    soon = now + dt.timedelta(days=1)
    ca = CertificateAuthority.load(paths["ca"].cert, paths["ca"].key)
    other = x509.load_pem_x509_certificate((directory / "other-ca.pem").read_bytes())
    leaves = {
        name: ServerCertificate.load(paths[name].cert, paths[name].key, paths[name].ca)
        for name in _LEAVES
    }

    def good(cert: x509.Certificate) -> bool:
        return cert.not_valid_before_utc <= now and cert.not_valid_after_utc > soon

    checks = {
        "ca": good(ca.cert) and good(other),
        "server": good(leaves["server"].cert)
        and _is_signed_by(leaves["server"].cert, ca.cert)
        and _san(leaves["server"].cert) >= {LAB_HOST, *LAB_IPS},
        "iis": good(leaves["iis"].cert) and leaves["iis"].self_signed,
        "expired": leaves["expired"].cert.not_valid_after_utc < now
        and _is_signed_by(leaves["expired"].cert, ca.cert),
        "not-yet-valid": leaves["not-yet-valid"].cert.not_valid_before_utc > soon
        and _is_signed_by(leaves["not-yet-valid"].cert, ca.cert),
        "wrong-host": good(leaves["wrong-host"].cert)
        and _is_signed_by(leaves["wrong-host"].cert, ca.cert)
        and LAB_HOST not in _san(leaves["wrong-host"].cert),
        "unknown-ca": good(leaves["unknown-ca"].cert)
        and _is_signed_by(leaves["unknown-ca"].cert, other)
        and not _is_signed_by(leaves["unknown-ca"].cert, ca.cert),
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValueError(f"stale lab certificates: {', '.join(failed)}")
    return ca, leaves


def lab_pki(directory: Path | str | None = None, *, regenerate: bool = False) -> LabPKI:
    """The lab certificate set, generated once per process and reused across runs.

    Files already in ``directory`` are reused while they stay valid for another day;
    otherwise (or with ``regenerate``) the leaves are made again under an inter-process
    lock, keeping a CA that is still good for a month.
    """
    folder = Path(directory) if directory is not None else default_pki_directory()
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    with _cache_lock:
        if not regenerate and folder in _cache:
            return _cache[folder]
        with _directory_lock(folder):
            generated = False
            try:
                if regenerate:
                    raise ValueError("regeneration requested")
                ca, leaves = _load_valid(folder)
            except (OSError, ValueError):
                _generate(folder)
                generated = True
                ca, leaves = _load_valid(folder)
        paths = _paths(folder)
        pki = LabPKI(
            directory=folder,
            ca=ca,
            ca_file=paths["ca"].cert,
            ca_key_file=paths["ca"].key,
            other_ca_file=folder / "other-ca.pem",
            server=paths["server"],
            iis=paths["iis"],
            expired=paths["expired"],
            not_yet_valid=paths["not-yet-valid"],
            wrong_host=paths["wrong-host"],
            unknown_ca=paths["unknown-ca"],
            certificates=leaves,
            generated=generated,
        )
        _cache[folder] = pki
        return pki

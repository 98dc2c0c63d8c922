"""The harness's TLS policy: what its clients offer and what its lab servers accept.

Why this module exists: a verdict must not depend on how the local Python was built.
Debian's ``/usr/bin/python3`` starts every ``SSLContext`` with OpenSSL's default cipher
list (SHA-1 CBC and RSA key exchange included, TLS 1.0 allowed), python.org and pyenv
builds with Python's own secure list. A client that inherits either would call the
same server "fine" on one machine and "no shared cipher" on another. So every context
the harness builds starts from the interpreter (:func:`new_context`, the one place the
interpreter gets a say) and then has *every* knob that changes what a handshake
accepts set from one of the policies below:

``CLIENT_POLICY`` (every check that judges a server)
    TLS 1.2 and 1.3. TLS 1.2 suites: CPython's own secure default string, spelled out
    (``@SECLEVEL=2``, ECDHE/DHE key exchange only, AES-GCM, ChaCha20 and AES-CBC with
    SHA-256/384, no SHA-1, no RSA key exchange, no CCM). It is what the harness was
    validated with on python.org/pyenv builds, so pinning it changes no verdict there;
    it keeps the CBC-SHA256/384 and DHE-GCM suites a judge needs to reach Windows
    Server 2012 R2 (IIS 8.5) with an RSA certificate, and it reaches stock vsftpd,
    ProFTPD, pure-ftpd, Postfix and IIS 10 with ECDHE-GCM or TLS 1.3.
    TLS 1.3 suites: the three AES-GCM/ChaCha20 suites (OpenSSL's default, without CCM).
    Signature algorithms: ECDSA, EdDSA, RSA-PSS and RSA PKCS#1 with SHA-256/384/512
    (OpenSSL's list without SHA-224 and DSA). Groups: OpenSSL 3.0's list (X25519,
    P-256, X448, P-521, P-384, ffdhe2048-8192), pinned so an ``openssl.cnf`` ``Groups``
    line cannot change what is offered.

``SERVER_POLICY`` (every lab server that is not a fault on purpose)
    TLS 1.2 and 1.3; TLS 1.2 suites with ECDHE key exchange and AEAD only (AES-GCM,
    ChaCha20), so no CBC suite and no static RSA; TLS 1.3 suites as for the client.
    Lab servers are what scenarios hold up as "correct", so they follow the stricter
    Mozilla-intermediate rule; the client policy is a superset of it.

``legacy_probe_policy(version)`` (only ``legacy-tls-refused``)
    Exactly TLS 1.0 or 1.1 with ``ALL:@SECLEVEL=0``: the client must be *able* to speak
    the old protocol, or a refusal would be its own, not the server's. This is the one
    place the harness lowers its policy.

TLS 1.2 suites and versions are set through the ``ssl`` module. TLS 1.3 suites,
signature algorithms and groups have no ``ssl`` API before Python 3.15; they are set by
:mod:`harness.protocols.sslnative` (a checked ctypes call on the same libssl). Where that
is impossible they stay at OpenSSL's defaults and :func:`native_unavailable_reason`
says why: OpenSSL's TLS 1.3 suites are all AEAD with forward secrecy and its
signature/group lists are the ones above plus SHA-224/DSA, so no shipped check changes
its verdict; set ``FTPS_LAB_TLS_NATIVE=0`` to force that fallback.
"""

from __future__ import annotations

import os
import ssl
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from harness.protocols import sslnative

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = [
    "CLIENT_POLICY",
    "CLIENT_TLS12_CIPHERS",
    "LEGACY_CIPHERS",
    "SERVER_POLICY",
    "SERVER_TLS12_CIPHERS",
    "TLS13_CIPHERSUITES",
    "TLS_VERSIONS",
    "TLSPolicy",
    "apply_policy",
    "configure_pyopenssl",
    "lab_readiness_context",
    "lab_server_policy",
    "legacy_probe_policy",
    "native_unavailable_reason",
    "new_context",
    "policy_context",
]

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
LEGACY_VERSIONS = ("1.0", "1.1")

# CPython's secure default (Modules/_ssl.c, PY_SSL_DEFAULT_CIPHER_STRING), spelled out.
CLIENT_TLS12_CIPHERS = ("@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES"
                        ":!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM")
# Forward secrecy and AEAD only: what a correctly configured lab server accepts.
SERVER_TLS12_CIPHERS = "@SECLEVEL=2:ECDHE+AESGCM:ECDHE+CHACHA20"
TLS13_CIPHERSUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
SIGALGS = ":".join((
    "ecdsa_secp256r1_sha256", "ecdsa_secp384r1_sha384", "ecdsa_secp521r1_sha512",
    "ed25519", "ed448",
    "rsa_pss_pss_sha256", "rsa_pss_pss_sha384", "rsa_pss_pss_sha512",
    "rsa_pss_rsae_sha256", "rsa_pss_rsae_sha384", "rsa_pss_rsae_sha512",
    "rsa_pkcs1_sha256", "rsa_pkcs1_sha384", "rsa_pkcs1_sha512",
))
GROUPS = "X25519:P-256:X448:P-521:P-384:ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192"
# The legacy probe and deliberately legacy lab servers: anything OpenSSL can still do.
LEGACY_CIPHERS = "ALL:@SECLEVEL=0"
_NATIVE_SWITCH = "FTPS_LAB_TLS_NATIVE"


@dataclass(frozen=True)
class TLSPolicy:
    """Every setting that decides whether a handshake succeeds, for one side.

    ``None`` for ``sigalgs`` or ``groups`` means "not part of this policy" (the
    legacy probe, where TLS 1.0/1.1 send no signature_algorithms).
    """

    name: str
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    tls12_ciphers: str
    tls13_ciphersuites: str
    sigalgs: str | None
    groups: str | None

    def bounded(self, min_version: str | None = None,
                max_version: str | None = None) -> TLSPolicy:
        """The same policy narrowed to ``min_version``-``max_version`` (never widened)."""
        for version in (min_version, max_version):
            if version and version not in TLS_VERSIONS:
                raise ValueError(f"unknown TLS version {version!r}; use one of "
                                 + ", ".join(TLS_VERSIONS))
        low = TLS_VERSIONS[min_version] if min_version else self.min_version
        high = TLS_VERSIONS[max_version] if max_version else self.max_version
        if low < self.min_version or high > self.max_version or low > high:
            raise ValueError(
                f"{_label(low)} to {_label(high)} is outside the {self.name} policy "
                f"({_label(self.min_version)} to {_label(self.max_version)}); legacy "
                "versions are only offered by the legacy-tls-refused probe")
        return replace(self, min_version=low, max_version=high)


CLIENT_POLICY = TLSPolicy(
    name="judging client",
    min_version=ssl.TLSVersion.TLSv1_2,
    max_version=ssl.TLSVersion.TLSv1_3,
    tls12_ciphers=CLIENT_TLS12_CIPHERS,
    tls13_ciphersuites=TLS13_CIPHERSUITES,
    sigalgs=SIGALGS,
    groups=GROUPS,
)
# The lab servers differ from the judging client only in their TLS 1.2 suites.
SERVER_POLICY = replace(CLIENT_POLICY, name="lab server", tls12_ciphers=SERVER_TLS12_CIPHERS)


def legacy_probe_policy(version: str) -> TLSPolicy:
    """Exactly TLS ``version`` (1.0 or 1.1), every suite OpenSSL has, security level 0."""
    if version not in LEGACY_VERSIONS:
        raise ValueError(f"{version!r} is not a legacy TLS version (use 1.0 or 1.1)")
    return TLSPolicy(
        name=f"TLS {version} legacy probe",
        min_version=TLS_VERSIONS[version],
        max_version=TLS_VERSIONS[version],
        tls12_ciphers=LEGACY_CIPHERS,
        tls13_ciphersuites=TLS13_CIPHERSUITES,
        sigalgs=None,
        groups=GROUPS,
    )


def lab_server_policy(min_version: str = "1.2", max_version: str | None = None) -> TLSPolicy:
    """``SERVER_POLICY`` narrowed to these bounds, or a deliberately legacy lab server.

    A minimum of 1.0 or 1.1 is a lab server built to *accept* old TLS (the negative
    case of ``legacy-tls-refused``): every suite OpenSSL has, security level 0, so it
    really speaks the old protocol on every OpenSSL build.
    """
    if min_version in LEGACY_VERSIONS:
        return TLSPolicy(
            name=f"legacy lab server (TLS {min_version}+)",
            min_version=TLS_VERSIONS[min_version],
            max_version=TLS_VERSIONS[max_version] if max_version else ssl.TLSVersion.TLSv1_3,
            tls12_ciphers=LEGACY_CIPHERS,
            tls13_ciphersuites=TLS13_CIPHERSUITES,
            sigalgs=None,
            groups=GROUPS,
        )
    return SERVER_POLICY.bounded(min_version, max_version)


# Not a judge: proves a lab server (a deliberately legacy or broken one included) greets.
READINESS_POLICY = TLSPolicy(
    name="lab readiness probe",
    min_version=ssl.TLSVersion.MINIMUM_SUPPORTED,
    max_version=ssl.TLSVersion.MAXIMUM_SUPPORTED,
    tls12_ciphers=LEGACY_CIPHERS,
    tls13_ciphersuites=TLS13_CIPHERSUITES,
    sigalgs=None,
    groups=GROUPS,
)


def _label(version: ssl.TLSVersion) -> str:
    return {value: f"TLS {key}" for key, value in TLS_VERSIONS.items()}.get(version, version.name)


def new_context(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    """The interpreter's own starting point, before any policy is applied.

    Nothing it chooses about ciphers, versions, signatures or groups survives
    :func:`apply_policy`; tests replace this function with one that starts from
    Debian's ``DEFAULT`` list to prove it.
    """
    return ssl.SSLContext(protocol)


def native_unavailable_reason() -> str | None:
    """None when TLS 1.3 suites, signature algorithms and groups are pinned here too."""
    if os.environ.get(_NATIVE_SWITCH, "1").strip().lower() in ("0", "no", "off", "false"):
        return f"{_NATIVE_SWITCH} turns the native settings off"
    return sslnative.unavailable_reason()


def apply_policy(context: ssl.SSLContext, policy: TLSPolicy) -> ssl.SSLContext:
    """Overwrite everything in ``context`` that decides a handshake with ``policy``.

    Returns ``context``. A name OpenSSL does not know raises ``ssl.SSLError`` or
    ``ValueError``, never a silent fallback; only the *absence* of the native settings
    (see :func:`native_unavailable_reason`) leaves TLS 1.3 suites, signature algorithms
    and groups at OpenSSL's defaults.
    """
    context.set_ciphers(policy.tls12_ciphers)
    with warnings.catch_warnings():  # ssl deprecates the versions the legacy probe needs
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = policy.min_version
        context.maximum_version = policy.max_version
    if native_unavailable_reason() is not None:
        return context
    sslnative.set_tls13_ciphersuites(context, policy.tls13_ciphersuites)
    if policy.sigalgs is not None:
        sslnative.set_sigalgs(context, policy.sigalgs)
    if policy.groups is not None:
        sslnative.set_groups(context, policy.groups)
    return context


def policy_context(protocol: ssl._SSLMethod, policy: TLSPolicy) -> ssl.SSLContext:
    """A fresh ``SSLContext`` for ``protocol`` (client or server) under ``policy``."""
    return apply_policy(new_context(protocol), policy)


def lab_readiness_context() -> ssl.SSLContext:
    """A client that reaches any lab server, so a lab start never depends on the interpreter.

    Used only to read a lab server's greeting before the server is handed out; it judges
    nothing, so it offers every version and suite and verifies no certificate.
    """
    context = policy_context(ssl.PROTOCOL_TLS_CLIENT, READINESS_POLICY)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_PYOPENSSL_VERSIONS = {
    ssl.TLSVersion.TLSv1: "TLS1_VERSION",
    ssl.TLSVersion.TLSv1_1: "TLS1_1_VERSION",
    ssl.TLSVersion.TLSv1_2: "TLS1_2_VERSION",
    ssl.TLSVersion.TLSv1_3: "TLS1_3_VERSION",
}


def configure_pyopenssl(context: SSL.Context, policy: TLSPolicy) -> SSL.Context:
    """Apply ``policy``'s versions and suites to a pyOpenSSL context (the FTPS lab).

    pyOpenSSL runs on cryptography's own OpenSSL, not the one ``ssl`` uses, so the
    ctypes settings do not apply: TLS 1.3 suites are set where pyOpenSSL can (25.2+),
    signature algorithms and groups stay at that OpenSSL's defaults. Neither admits a
    weak handshake: those defaults have no SHA-1 signature at security level 2 and only
    curves and finite-field groups of 2048 bits and more, and the server only chooses
    among what the client offers.
    """
    from OpenSSL import SSL

    context.set_cipher_list(policy.tls12_ciphers.encode("ascii"))
    context.set_min_proto_version(getattr(SSL, _PYOPENSSL_VERSIONS[policy.min_version]))
    context.set_max_proto_version(getattr(SSL, _PYOPENSSL_VERSIONS[policy.max_version]))
    set_tls13 = getattr(context, "set_tls13_ciphersuites", None)
    if set_tls13 is not None:
        set_tls13(policy.tls13_ciphersuites.encode("ascii"))
    return context

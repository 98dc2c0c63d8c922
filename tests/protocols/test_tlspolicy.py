"""The TLS policy as the server sees it: the ClientHello each harness context writes.

Every assertion reads the bytes OpenSSL produced (in memory, nothing is sent), so the
policy is proven on the interpreter running the tests, whatever its build defaults.
"""

from __future__ import annotations

import ssl
import sys

import pytest

from harness.protocols import sslnative, tlspolicy
from harness.protocols.clienthello import ClientHelloError, offered_by, parse_client_hello
from harness.protocols.tls import (
    TLS_REASONS,
    Trust,
    classify_tls_failure,
    client_context,
    explain_tls_failure,
    legacy_client_context,
    openssl_reason,
)
from harness.protocols.tlspolicy import (
    CLIENT_POLICY,
    GROUPS,
    SIGALGS,
    TLS13_CIPHERSUITES,
    lab_readiness_context,
)

SCSV = "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
NATIVE_EXPECTED = sys.platform == "linux" and sys.implementation.name == "cpython"


def _tls12_suites(cipher_string: str) -> list[str]:
    """What OpenSSL makes of a TLS 1.2 cipher string, in its order."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers(cipher_string)
    return [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]


def _debian_default(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    """What Debian 12's python3 starts from: OpenSSL's DEFAULT list and TLS 1.0 allowed."""
    context = ssl.SSLContext(protocol)
    context.set_ciphers("DEFAULT")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    if tlspolicy.native_unavailable_reason() is None:  # and odd native settings on top
        sslnative.set_sigalgs(context, "rsa_pkcs1_sha1:ECDSA+SHA1:rsa_pkcs1_sha256")
        sslnative.set_groups(context, "P-521")
        sslnative.set_tls13_ciphersuites(context, "TLS_AES_128_CCM_SHA256")
    return context


@pytest.fixture
def debian_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tlspolicy, "new_context", _debian_default)


# -- the native settings -------------------------------------------------------------


def test_native_settings_work_on_this_interpreter() -> None:
    if not NATIVE_EXPECTED:
        pytest.skip("the ctypes settings are only required on CPython for Linux")
    assert sslnative.unavailable_reason() is None
    assert tlspolicy.native_unavailable_reason() is None


def test_native_setters_refuse_unknown_names_and_leave_no_openssl_error() -> None:
    if sslnative.unavailable_reason() is not None:
        pytest.skip(sslnative.unavailable_reason() or "")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for setter in (sslnative.set_groups, sslnative.set_sigalgs,
                   sslnative.set_tls13_ciphersuites):
        with pytest.raises(ValueError, match="OpenSSL refused"):
            setter(context, "no-such-name")
    with pytest.raises(ssl.SSLError) as later:  # the next error is its own, not a leftover
        context.set_ciphers("no-such-cipher")
    assert "no cipher" in str(later.value).lower()
    with pytest.raises(TypeError):
        sslnative.set_groups(object(), GROUPS)  # type: ignore[arg-type]


# -- the judging client ----------------------------------------------------------------


def test_client_offers_exactly_the_client_policy() -> None:
    hello = offered_by(client_context(Trust(insecure=True)))
    suites = [name for name in hello.cipher_suites if name != SCSV]
    tls13 = TLS13_CIPHERSUITES.split(":")
    assert hello.versions == ("TLSv1.3", "TLSv1.2")
    assert suites == [*tls13, *_tls12_suites(CLIENT_POLICY.tls12_ciphers)]
    for name in suites[len(tls13):]:  # forward secret, no SHA-1 MAC, no CCM
        assert name.startswith(("ECDHE-", "DHE-")), name
        assert name.endswith(("GCM-SHA256", "GCM-SHA384", "POLY1305", "SHA256", "SHA384")), name
    if tlspolicy.native_unavailable_reason() is None:
        assert hello.signature_algorithms == tuple(SIGALGS.split(":"))
        assert hello.groups == tuple(GROUPS.split(":"))


def test_interpreter_defaults_never_reach_the_wire(debian_default: None) -> None:
    """Debian's DEFAULT list and TLS 1.0 as starting point: the same ClientHello."""
    starting_point = offered_by(tlspolicy.new_context(ssl.PROTOCOL_TLS_CLIENT))
    assert "TLSv1" in starting_point.versions and "ECDHE-RSA-AES256-SHA" in (
        starting_point.cipher_suites)  # the patch really is Debian-like
    patched = offered_by(client_context(Trust(insecure=True)))
    normal = offered_by(tlspolicy.apply_policy(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
                                               CLIENT_POLICY))
    assert patched.cipher_suites == normal.cipher_suites
    assert patched.versions == normal.versions == ("TLSv1.3", "TLSv1.2")
    if tlspolicy.native_unavailable_reason() is None:
        assert patched.signature_algorithms == normal.signature_algorithms
        assert patched.groups == normal.groups


def test_forced_versions_narrow_the_policy_and_never_widen_it() -> None:
    only13 = offered_by(client_context(Trust(insecure=True), min_version="1.3"))
    assert only13.versions == ("TLSv1.3",)
    only12 = offered_by(client_context(Trust(insecure=True), max_version="1.2"))
    assert only12.versions == ("TLSv1.2",) and not any(
        name.startswith("TLS_AES") for name in only12.cipher_suites)
    for low in ("1.0", "1.1"):
        with pytest.raises(ValueError, match="legacy-tls-refused"):
            client_context(Trust(insecure=True), min_version=low)


def test_fallback_without_native_settings_still_pins_suites_and_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FTPS_LAB_TLS_NATIVE", "0")
    monkeypatch.setattr(tlspolicy, "new_context", _debian_default)
    assert "FTPS_LAB_TLS_NATIVE" in (tlspolicy.native_unavailable_reason() or "")
    hello = offered_by(client_context(Trust(insecure=True)))
    tls12 = [n for n in hello.cipher_suites if n != SCSV and not n.startswith("TLS_")]
    assert tls12 == _tls12_suites(CLIENT_POLICY.tls12_ciphers)
    assert hello.versions == ("TLSv1.3", "TLSv1.2")


# -- the one lowered policy, and the readiness probe -------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_legacy_probe_offers_only_its_version_with_every_suite(
    version: str, debian_default: None
) -> None:
    hello = offered_by(legacy_client_context(version))
    assert hello.versions == ({"1.0": "TLSv1", "1.1": "TLSv1.1"}[version],)
    assert "ECDHE-RSA-AES128-SHA" in hello.cipher_suites  # SHA-1 suites: what old servers have
    with pytest.raises(ValueError, match="not a legacy"):
        tlspolicy.legacy_probe_policy("1.2")


def test_readiness_probe_reaches_every_version() -> None:
    hello = offered_by(lab_readiness_context())
    assert hello.versions[0] == "TLSv1.3" and hello.versions[-1] in ("TLSv1", "SSLv3")


# -- failure reasons: one table ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason", "this_client"),
    [
        # Python without a name for the code (Debian 12's 3.11.2): only OpenSSL's text.
        ((1, "[SSL] legacy sigalg disallowed or unsupported (_ssl.c:992)"),
         "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED", True),
        ((1, "[SSL: LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED] legacy sigalg disallowed or "
             "unsupported (_ssl.c:1006)"), "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED", True),
        ((1, "[SSL: NO_CIPHERS_AVAILABLE] no ciphers available (_ssl.c:1006)"),
         "NO_CIPHERS_AVAILABLE", True),
        ((1, "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure (_ssl.c:1006)"),
         "SSLV3_ALERT_HANDSHAKE_FAILURE", False),
        ((1, "[SSL] tlsv1 alert protocol version (_ssl.c:992)"),
         "TLSV1_ALERT_PROTOCOL_VERSION", False),
        ((1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"),
         "WRONG_VERSION_NUMBER", False),
    ],
)
def test_reasons_are_classified_with_or_without_python_knowing_their_name(
    args: tuple[int, str], reason: str, this_client: bool
) -> None:
    exc = ssl.SSLError(*args)
    assert openssl_reason(exc) == reason
    known = classify_tls_failure(exc)
    assert known is not None and known.this_client is this_client
    assert explain_tls_failure(exc).endswith(f"({reason})")


def test_every_table_entry_is_reachable_by_its_own_name() -> None:
    for code, meaning in TLS_REASONS.items():
        exc = ssl.SSLError(1, f"[SSL: {code}] {code.lower().replace('_', ' ')} (_ssl.c:1)")
        assert classify_tls_failure(exc) == meaning


def test_parser_refuses_what_is_not_a_client_hello() -> None:
    with pytest.raises(ClientHelloError):
        parse_client_hello(b"\x17\x03\x03\x00\x01\x00")
    with pytest.raises(ClientHelloError):
        parse_client_hello(b"\x16\x03\x01\x00\x10\x01\x00\x01\x00")

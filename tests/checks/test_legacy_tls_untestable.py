"""legacy-tls-refused never blames the server for this client's own refusal.

Debian 12's python3 could build a TLS 1.0 ClientHello from its default context, but its
OpenSSL then refused the legacy server's MD5/SHA-1 signature
(``LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED``, reported *without* a reason name by that
Python). The check used to end ``error``; it must end ``skip`` with the reason. The same
client is built here on every interpreter, against a lab server that really speaks
TLS 1.0, so the outcome is proven everywhere.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from harness.certs import LabPKI, lab_pki
from harness.checks import ftps as ftps_checks
from harness.checks import run_check
from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.protocols.tls import Trust
from harness.results import Status
from harness.targets import Target

USER = "legacy"
PASSWORD = "Legacy-pw-5561"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["lab", "iis"])  # ECDSA and RSA: both sign with a legacy hash
def legacy_server(request: pytest.FixtureRequest, pki: LabPKI) -> Iterator[Target]:
    files = pki.files(request.param)
    config = FTPSServerConfig(certfile=files.cert, keyfile=files.key, legacy_tls_version="1.0",
                              users=[(USER, PASSWORD)])
    with FTPSLabServer(config) as server:
        yield Target(name="legacy", protocol="ftps", host=server.host, port=server.port,
                     trust=Trust(insecure=True), user=USER, password=PASSWORD, timeout=3.0)


def _debian_default_legacy_client(version: str) -> ssl.SSLContext:
    """What the probe was on Debian's python3 when built from the interpreter default."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("DEFAULT")  # security level 1 or 2: no MD5/SHA-1 signatures
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.warns(DeprecationWarning):
        context.minimum_version = context.maximum_version = {
            "1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1}[version]
    return context


def test_a_client_that_refuses_the_legacy_signature_skips_with_the_reason(
    legacy_server: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ftps_checks, "legacy_client_context", _debian_default_legacy_client)
    result = run_check("legacy-tls-refused", legacy_server, {})
    assert result.status is Status.SKIP, result.describe()
    assert "legacy signature" in result.summary, result.summary
    outcomes = {key: value["outcome"] for key, value in result.evidence.items()
                if key.startswith("TLS ")}
    assert outcomes == {"TLS 1.0": "untestable", "TLS 1.1": "untestable"}


def test_the_real_probe_reaches_a_verdict_on_the_same_server(legacy_server: Target) -> None:
    result = run_check("legacy-tls-refused", legacy_server, {"versions": ["1.0"]})
    assert result.status is Status.FAIL, result.describe()
    assert result.evidence["TLS 1.0"]["negotiated"] == "TLSv1"

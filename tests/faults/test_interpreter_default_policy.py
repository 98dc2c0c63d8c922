"""Verdicts do not depend on the interpreter's default TLS settings (issue 9, point 1).

Debian 12's python3 starts every ``SSLContext`` with OpenSSL's ``DEFAULT`` suites and
TLS 1.0 allowed; python.org and pyenv builds with Python's secure list. These tests
make the harness start from the Debian-like context on *every* interpreter
(``tlspolicy.new_context`` is the one place the interpreter has a say) and show the
fault scenarios still end the same way, for the same stated reason. A second set gives
the no-shared-cipher fault server every suite Debian's default allows beyond the
client policy: the harness still refuses it, while a stock Debian-default client would
have connected.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.certs import LabPKI, lab_pki
from harness.checks import load_all, run_check
from harness.lab import ftps as ftps_lab
from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.lab.pool import LabPool
from harness.protocols import tlspolicy
from harness.protocols.tls import Trust
from harness.protocols.tlspolicy import CLIENT_POLICY
from harness.results import CheckResult, Status
from harness.scenario import LabServer, Scenario, load_scenario
from harness.targets import Target

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

pytestmark = pytest.mark.timeout(60)


def _debian_default(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.set_ciphers("DEFAULT")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


@pytest.fixture
def debian_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tlspolicy, "new_context", _debian_default)


@pytest.fixture(scope="module")
def pool() -> Iterator[LabPool]:
    lab = LabPool()
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def faults() -> Scenario:
    return load_scenario(SCENARIOS / "faults-ftps.yaml", load_all())


def _run_entry(pool: LabPool, scenario: Scenario, check_id: str) -> CheckResult:
    (entry,) = [entry for entry in scenario.checks if entry.id == check_id]
    (name,) = entry.targets
    (server,) = [server for server in scenario.lab if server.name == name]
    target = pool.target_for(server)
    return pool.verify(server, run_check(entry.check, target,
                                         pool.params_for(server, entry.check, entry.params)))


@pytest.mark.parametrize(
    ("check_id", "status", "words"),
    [
        ("no-shared-cipher", Status.FAIL, "no shared cipher suite"),
        ("no-shared-tls-version", Status.FAIL, "no shared tls version"),
        ("tls10-only-accepts-legacy", Status.FAIL, "accepts legacy tls 1.0"),
    ],
)
def test_fault_verdicts_hold_from_a_debian_default_start(
    debian_default: None, pool: LabPool, faults: Scenario, check_id: str, status: Status,
    words: str,
) -> None:
    result = _run_entry(pool, faults, check_id)
    assert result.status is status, result.describe()
    assert words in result.summary.lower(), result.describe()


def test_good_server_verdicts_hold_from_a_debian_default_start(
    debian_default: None, pool: LabPool
) -> None:
    target = pool.target_for(LabServer("policy-good", "ftps", {}))
    auth = run_check("auth-tls", target, {})
    legacy = run_check("legacy-tls-refused", target, {})
    assert auth.status is Status.PASS and "TLSv1.3" in auth.summary, auth.describe()
    assert legacy.status is Status.PASS, legacy.describe()
    assert legacy.summary == "server refuses TLS 1.0, TLS 1.1"
    for role, check in (("submission", "starttls"), ("submissions", "smtp-banner")):
        mail = pool.target_for(LabServer(f"policy-{role}", "smtp", {"role": role}))
        result = run_check(check, mail, {})
        assert result.status is Status.PASS, result.describe()
        assert result.evidence["tls"]["tls_version"] == "TLSv1.3", result.evidence


# -- the fault server given everything Debian's default allows beyond the policy --------


def _suites(cipher_string: str) -> set[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers(cipher_string)
    return {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}


DEBIAN_ONLY_SUITES = sorted(_suites("DEFAULT") - _suites(CLIENT_POLICY.tls12_ciphers))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


def test_the_fault_suites_are_outside_the_client_policy() -> None:
    mismatched = set(ftps_lab.MISMATCHED_CIPHERS.split(":"))
    assert mismatched <= set(DEBIAN_ONLY_SUITES)  # Debian's default would take them
    assert not mismatched & _suites(CLIENT_POLICY.tls12_ciphers)


@pytest.mark.parametrize("certificate", ["lab", "iis"])  # ECDSA, RSA
def test_fault_server_with_every_debian_only_suite_is_still_no_shared_cipher(
    monkeypatch: pytest.MonkeyPatch, pki: LabPKI, certificate: str
) -> None:
    monkeypatch.setattr(ftps_lab, "MISMATCHED_CIPHERS", ":".join(DEBIAN_ONLY_SUITES))
    files = pki.files(certificate)
    config = FTPSServerConfig(certfile=files.cert, keyfile=files.key, cipher_mismatch=True,
                              users=[("policy", "Policy-pw-2231")])
    with FTPSLabServer(config) as server:
        target = Target(name="debian-only", protocol="ftps", host=server.host,
                        port=server.port, trust=Trust(insecure=True), timeout=3.0)
        stock = _debian_default(ssl.PROTOCOL_TLS_CLIENT)
        stock.check_hostname, stock.verify_mode = False, ssl.CERT_NONE
        reached = _auth_tls_then(server.address, stock)
        assert reached in DEBIAN_ONLY_SUITES  # a Debian-default client would connect
        result = run_check("auth-tls", target, {})
    assert result.status is Status.FAIL, result.describe()
    assert "no shared cipher suite" in result.summary, result.describe()


def _auth_tls_then(address: tuple[str, int], context: ssl.SSLContext) -> str:
    """The suite a stock client negotiates after AUTH TLS."""
    with socket.create_connection(address, timeout=3) as raw:
        with raw.makefile("rb") as reader:
            assert reader.readline().startswith(b"220")
            raw.sendall(b"AUTH TLS\r\n")
            assert reader.readline().startswith(b"234")
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return str(tls.cipher()[0])

"""Every deliberate lab fault is diagnosed by name, within its configured timeout.

The fault scenarios (``scenarios/faults-*.yaml`` and the certificate faults) only say
*that* a check ends ``fail`` or ``error``; a harness that answered every fault with
"connection closed" would pass them. These tests run the same scenario entries against
the same lab servers and assert what an engineer reads: the summary or observed text
names the fault in specific words, and the check gave up no later than its configured
timeout plus a small margin (and, where the fault is silence, not before the timeout:
the client's own timeout is what fired).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.checks import load_all, run_check
from harness.lab.ftps import FTPSServerConfig
from harness.lab.pool import LabPool
from harness.protocols.ftps_client import FTPSClient
from harness.protocols.tls import Trust, client_context, explain_tls_failure
from harness.results import CheckResult
from harness.scenario import CheckEntry, LabServer, Scenario, load_scenario
from harness.targets import Target

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
FAULT_FILES = ("faults-ftps.yaml", "faults-smtp.yaml", "ftps-certificate-faults.yaml")
# Scheduling noise on a loaded CI machine; the timeouts themselves are 0.5 s.
MARGIN = 0.75

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Fault:
    """One fault, the scenario entry that demonstrates it, and what must be said."""

    fault: str
    file: str
    check_id: str
    target: str
    words: tuple[str, ...]  # all of them, case-insensitive, in summary + observed
    waits: bool = False  # the fault is silence: the check must use up its timeout


FAULTS = [
    Fault("server never sends a banner", "faults-ftps.yaml", "no-banner", "no-banner",
          ("no banner within 0.5 s",), waits=True),
    Fault("server never sends a banner (login stops)", "faults-ftps.yaml",
          "no-banner-stops-login", "no-banner", ("banner", "no banner within 0.5 s"), waits=True),
    Fault("421 too many connections", "faults-ftps.yaml", "too-many-connections", "too-many",
          ("421", "too many connections", "refuses service")),
    Fault("AUTH TLS refused with 502", "faults-ftps.yaml", "auth-tls-refused", "auth-tls-502",
          ("auth tls refused", "502", "does not offer explicit ftps")),
    Fault("AUTH TLS refused with 500", "faults-ftps.yaml", "auth-tls-refused", "auth-tls-500",
          ("auth tls refused", "500", "does not offer explicit ftps")),
    Fault("TLS handshake fails: no shared cipher", "faults-ftps.yaml", "no-shared-cipher",
          "cipher-mismatch", ("tls handshake failed", "no shared cipher suite")),
    Fault("TLS handshake fails: TLS 1.0-only server", "faults-ftps.yaml",
          "no-shared-tls-version", "tls10-only", ("tls handshake failed", "no shared tls version")),
    Fault("TLS 1.0-only server accepts legacy TLS", "faults-ftps.yaml",
          "tls10-only-accepts-legacy", "tls10-only", ("accepts legacy tls 1.0", "tlsv1")),
    Fault("control connection dropped mid-transfer", "faults-ftps.yaml",
          "control-dropped-mid-transfer", "drop-control",
          ("control connection dropped", "mid-transfer", "no final reply")),
    Fault("data channel stalls", "faults-ftps.yaml", "data-channel-stalls", "stall-data",
          ("data channel stalled", "sent nothing for 0.5 s"), waits=True),
    Fault("PASV announces an unreachable private address", "faults-ftps.yaml",
          "pasv-private-address", "private-pasv", ("behind nat", "private address", "10.0.0.21")),
    Fault("expired certificate", "ftps-certificate-faults.yaml", "certificate-trust", "expired",
          ("certificate not trusted", "certificate expired")),
    Fault("not-yet-valid certificate", "ftps-certificate-faults.yaml", "certificate-trust",
          "not-yet-valid", ("certificate not trusted", "not yet valid")),
    Fault("wrong-host-name certificate", "ftps-certificate-faults.yaml", "certificate-trust",
          "wrong-host", ("certificate not trusted", "wrong host name")),
    Fault("unknown-CA certificate", "ftps-certificate-faults.yaml", "certificate-trust",
          "unknown-ca", ("certificate not trusted", "unknown ca")),
    Fault("expired certificate (lint)", "ftps-certificate-faults.yaml", "certificate-lint",
          "expired", ("expired",)),
    Fault("not-yet-valid certificate (lint)", "ftps-certificate-faults.yaml", "certificate-lint",
          "not-yet-valid", ("not valid before",)),
    Fault("wrong-host-name certificate (lint)", "ftps-certificate-faults.yaml",
          "certificate-lint", "wrong-host", ("localhost",)),
    Fault("SMTP offers AUTH before STARTTLS", "faults-smtp.yaml", "auth-before-starttls",
          "auth-before-tls", ("offers auth", "before starttls")),
    Fault("SMTP open relay", "faults-smtp.yaml", "open-relay", "open-relay",
          ("open relay", "recipient accepted")),
    Fault("STARTTLS answered, then the connection closed", "faults-smtp.yaml",
          "starttls-then-close", "starttls-hangup",
          ("closed the connection right after 220 to starttls", "handshake")),
    Fault("STARTTLS hang-up stops AUTH", "faults-smtp.yaml", "starttls-hangup-stops-auth",
          "starttls-hangup", ("starttls", "closed the connection", "tls handshake")),
]


@pytest.fixture(scope="module")
def pool() -> Iterator[LabPool]:
    lab = LabPool()
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def scenarios() -> dict[str, Scenario]:
    checks = load_all()
    return {name: load_scenario(SCENARIOS / name, checks) for name in FAULT_FILES}


def _entry(scenario: Scenario, check_id: str) -> CheckEntry:
    matches = [entry for entry in scenario.checks if entry.id == check_id]
    assert len(matches) == 1, f"no check id {check_id!r} in {scenario.file.name}"
    return matches[0]


def _server(scenario: Scenario, name: str) -> LabServer:
    matches = [server for server in scenario.lab if server.name == name]
    assert len(matches) == 1, f"no lab server {name!r} in {scenario.file.name}"
    return matches[0]


def _run(pool: LabPool, server: LabServer, entry: CheckEntry) -> tuple[CheckResult, float, Target]:
    target = pool.target_for(server)  # started (and proven to serve) before the clock runs
    params = pool.params_for(server, entry.check, dict(entry.params))
    start = time.monotonic()
    result = run_check(entry.check, target, params)
    elapsed = time.monotonic() - start
    return pool.verify(server, result), elapsed, target


@pytest.mark.parametrize("fault", FAULTS, ids=[f.fault for f in FAULTS])
def test_the_diagnosis_names_the_fault_in_time(
    fault: Fault, pool: LabPool, scenarios: dict[str, Scenario]
) -> None:
    scenario = scenarios[fault.file]
    entry = _entry(scenario, fault.check_id)
    server = _server(scenario, fault.target)
    assert not entry.targets or fault.target in entry.targets
    result, elapsed, target = _run(pool, server, entry)
    shown = result.describe()

    assert result.status.value == entry.expect, shown
    text = f"{result.summary}\n{result.observed}".lower()
    for word in fault.words:
        assert word in text, f"{word!r} missing from the diagnosis:\n{shown}"
    assert "internal error" not in text and "traceback" not in result.evidence, shown
    assert not result.evidence.get("lab_server_errors"), result.evidence["lab_server_errors"]

    timeout = float(entry.params.get("timeout", target.timeout))
    assert elapsed <= timeout + MARGIN, f"took {elapsed:.2f} s, timeout {timeout:g} s\n{shown}"
    assert result.duration <= elapsed + 0.01
    if fault.waits:  # silence is only diagnosed once the client's own timeout has fired
        assert elapsed >= timeout * 0.9, f"gave up after {elapsed:.2f} s, before the timeout"


def test_every_fault_scenario_entry_has_a_diagnosis_test(scenarios: dict[str, Scenario]) -> None:
    """A new fault in a scenario needs a row above, or nobody checks what it says."""
    covered = {(f.file, f.check_id, f.target) for f in FAULTS}
    for name, scenario in scenarios.items():
        names = [server.name for server in scenario.lab]
        for entry in scenario.checks:
            if entry.expect not in ("fail", "error"):
                continue
            for target in entry.targets or names:
                assert (name, entry.id, target) in covered, f"{name}: {entry.id}[{target}]"


def test_a_port_that_does_not_speak_tls_is_named(pool: LabPool) -> None:
    """An implicit-FTPS client at an explicit server gets a plaintext 220, not TLS."""
    target = pool.target_for(LabServer("plain-port", "ftps", {}))
    implicit = Target(name="plain-port", protocol="ftps-implicit", host=target.host,
                      port=target.port, trust=Trust(insecure=True), timeout=1.0)
    start = time.monotonic()
    result = run_check("auth-tls", implicit, {})
    assert time.monotonic() - start <= 1.0 + MARGIN
    assert result.status.value == "fail", result.describe()
    assert "did not answer with tls" in result.summary.lower(), result.describe()
    assert "wrong protocol" in result.summary.lower()


def test_explain_tls_failure_names_client_side_and_eof_cases() -> None:
    """What the lab cannot easily provoke: our own client unable to offer, and EOF."""
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert "closed the connection during the tls handshake" in explain_tls_failure(eof).lower()
    assert "timed out" in explain_tls_failure(TimeoutError())
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert "closed the connection" in explain_tls_failure(reset)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"refuse_auth_tls": 230}, "refuse_auth_tls"),
        ({"max_cons": 0}, "max_cons"),
        ({"max_tls": "1.0"}, "legacy_tls_version"),
        ({"legacy_tls_version": "1.1", "max_tls": "1.0"}, "below"),
        ({"cipher_mismatch": True, "legacy_tls_version": "1.0"}, "exclude"),
    ],
)
def test_fault_switches_that_cannot_work_are_refused(
    fields: dict[str, object], message: str, tls_files: dict[str, Path]
) -> None:
    config = FTPSServerConfig(certfile=tls_files["cert"], keyfile=tls_files["key"],
                              users=[("u", "pw-Fault-1")], **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_stalled_server_answers_426_once_the_client_gives_up(pool: LabPool) -> None:
    """The stall is the server's: it holds the data connection open and only reports the
    aborted transfer after the client closes it, like a real server with a hung disk."""
    target = pool.target_for(LabServer("stall-probe", "ftps", {"faults": {"stall_data": True}}))
    context = client_context(Trust(insecure=True))
    with FTPSClient(target.host, target.port, context=context, timeout=0.5) as client:
        assert client.connect().code == 220
        assert client.auth_tls().code == 234
        assert target.user and target.password
        assert client.login(target.user, target.password)[1].code == 230  # type: ignore[union-attr]
        assert client.pbsz(0).code == 200 and client.prot("P").code == 200
        listing = client.list()
        assert listing.stalled and listing.size == 0
        assert listing.final is not None and listing.final.code == 426
        assert listing.duration < 0.5 + MARGIN
        assert client.command("NOOP").code == 200  # the control connection survives


def test_no_banner_server_holds_the_connection_silently(pool: LabPool) -> None:
    target = pool.target_for(LabServer("silent-probe", "ftps", {"faults": {"no_banner": True}}))
    with socket.create_connection((target.host, target.port), timeout=2) as sock:
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)

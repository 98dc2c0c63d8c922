"""OP25B diagnosis: the decision table as data, then the registered check on real servers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from harness.checks import REGISTRY
from harness.checks import op25b as op
from harness.lab.portblock import Greeter, PortBlock
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.probe import PortResult, PortState
from harness.protocols.tls import Trust
from harness.results import CheckResult, Status
from harness.targets import Target

S = PortState
OK_FACTS = {"starttls": True, "auth_after_tls": True, "implicit_tls": True, "auth_implicit": True}


def results(**states: PortState) -> list[PortResult]:
    """``p25=S.FILTERED, p587=S.OPEN`` -> probe results with plausible banners."""
    out = []
    for key, state in states.items():
        port = int(key[1:])
        banner = f"220 mail.example.net ESMTP ({port})" if state is S.OPEN else None
        if state is S.INTERCEPTED:
            banner = "220 scanner.antivirus.local ESMTP"
        out.append(PortResult("mail.example.net", port, state, banner, f"{state.value} here",
                              0.01, {25: "smtp", 587: "submission", 465: "submissions"}[port]))
    return out


# (probe states, submission facts, verdict code, ok)
TABLE: list[tuple[dict[str, PortState], dict[str, Any] | None, str, bool]] = [
    # port 25 blocked in each way, 587 proven
    ({"p25": S.FILTERED, "p587": S.OPEN, "p465": S.OPEN}, OK_FACTS, op.PORT25_FILTERED, True),
    ({"p25": S.CLOSED, "p587": S.OPEN, "p465": S.CLOSED}, OK_FACTS, op.PORT25_REFUSED, True),
    ({"p25": S.UNREACHABLE, "p587": S.OPEN}, OK_FACTS, op.PORT25_UNREACHABLE, True),
    ({"p25": S.OPEN_SILENT, "p587": S.OPEN}, OK_FACTS, op.PORT25_SILENT, True),
    # port 25 open: no block here
    ({"p25": S.OPEN, "p587": S.OPEN, "p465": S.OPEN}, OK_FACTS, op.PORT25_OPEN, True),
    # facts unknown: the probe alone still answers
    ({"p25": S.FILTERED, "p587": S.OPEN}, None, op.PORT25_FILTERED, True),
    # 25 not probed at all
    ({"p587": S.OPEN}, OK_FACTS, op.SUBMISSION_OK, True),
    # 587 missing, 465 only
    ({"p25": S.FILTERED, "p587": S.CLOSED, "p465": S.OPEN}, OK_FACTS, op.USE_465, True),
    ({"p25": S.FILTERED, "p587": S.FILTERED, "p465": S.OPEN}, None, op.USE_465, True),
    # 587 without STARTTLS or without AUTH, and 465 cannot stand in
    ({"p25": S.FILTERED, "p587": S.OPEN, "p465": S.CLOSED},
     {"starttls": False}, op.TLS_MISSING, False),
    ({"p25": S.FILTERED, "p587": S.OPEN}, {"starttls": True, "auth_after_tls": False},
     op.AUTH_MISSING, False),
    ({"p587": S.CLOSED, "p465": S.OPEN}, {"implicit_tls": True, "auth_implicit": False},
     op.AUTH_MISSING, False),
    ({"p25": S.FILTERED, "p587": S.CLOSED, "p465": S.TLS_ERROR}, None, op.TLS_MISSING, False),
    ({"p587": S.CLOSED, "p465": S.OPEN}, {"implicit_tls": False}, op.TLS_MISSING, False),
    # ...but a working 465 rescues a broken 587
    ({"p25": S.FILTERED, "p587": S.OPEN, "p465": S.OPEN},
     {"starttls": False, "implicit_tls": True, "auth_implicit": True}, op.USE_465, True),
    # silent submission
    ({"p25": S.FILTERED, "p587": S.OPEN_SILENT, "p465": S.CLOSED}, None,
     op.SUBMISSION_SILENT, False),
    # no submission port, 25 reachable
    ({"p25": S.OPEN, "p587": S.CLOSED, "p465": S.CLOSED}, None, op.SUBMISSION_MISSING, False),
    ({"p25": S.OPEN}, None, op.SUBMISSION_MISSING, False),
    # everything blocked
    ({"p25": S.FILTERED, "p587": S.FILTERED, "p465": S.FILTERED}, None, op.ALL_BLOCKED, False),
    ({"p25": S.FILTERED, "p587": S.CLOSED, "p465": S.UNREACHABLE}, None, op.ALL_BLOCKED, False),
    ({"p25": S.CLOSED, "p587": S.CLOSED, "p465": S.CLOSED}, None, op.ALL_BLOCKED, False),
    # interception wins over everything else; ok only if a clean path remains
    ({"p25": S.INTERCEPTED, "p587": S.OPEN}, OK_FACTS, op.INTERCEPTED, True),
    ({"p25": S.FILTERED, "p587": S.INTERCEPTED, "p465": S.CLOSED}, None, op.INTERCEPTED, False),
    # nothing could be probed
    ({"p25": S.ERROR, "p587": S.ERROR}, None, op.PROBE_ERROR, False),
]


@pytest.mark.parametrize(("states", "facts", "code", "ok"), TABLE)
def test_verdict_table(
    states: dict[str, PortState], facts: dict[str, Any] | None, code: str, ok: bool
) -> None:
    verdict = op.diagnose(results(**states), facts)
    assert (verdict.code, verdict.ok) == (code, ok)
    assert verdict.code in op.VERDICT_CODES
    assert verdict.title and verdict.explanation and verdict.fix


def test_every_verdict_code_is_reachable() -> None:
    assert {row[2] for row in TABLE} == set(op.VERDICT_CODES)


def test_filtered_fix_says_what_to_do_in_plain_words() -> None:
    verdict = op.diagnose(results(p25=S.FILTERED, p587=S.OPEN, p465=S.CLOSED), OK_FACTS)
    assert verdict.fix == (
        "Port 25 filtered from this network, 587 open with STARTTLS and AUTH: set the "
        "client's outgoing server to port 587 with STARTTLS and SMTP authentication."
    )
    assert "port 25 filtered (no answer)" in verdict.explanation
    assert "OP25B" in verdict.explanation


def test_unchecked_facts_are_said_to_be_unchecked() -> None:
    verdict = op.diagnose(results(p25=S.FILTERED, p587=S.OPEN))
    assert "STARTTLS and AUTH not checked" in verdict.fix


def test_refused_explains_the_ambiguity() -> None:
    verdict = op.diagnose(results(p25=S.CLOSED, p587=S.OPEN), OK_FACTS)
    assert "tcp-reset" in verdict.explanation and "look the same" in verdict.explanation


def test_interception_names_the_port_and_the_clean_alternative() -> None:
    verdict = op.diagnose(results(p25=S.FILTERED, p587=S.INTERCEPTED, p465=S.OPEN), OK_FACTS)
    assert verdict.code == op.INTERCEPTED and verdict.ok
    assert "port 587" in verdict.title
    assert "scanner.antivirus.local" in verdict.explanation
    assert "465" in verdict.fix and "antivirus" in verdict.fix


def test_roles_come_from_results_not_only_port_numbers() -> None:
    probes = [
        PortResult("h", 40025, S.FILTERED, role="smtp"),
        PortResult("h", 40587, S.OPEN, "220 h", role="submission"),
    ]
    assert op.diagnose(probes, OK_FACTS).code == op.PORT25_FILTERED


def test_facts_accept_mappings_and_refuse_unknown_names() -> None:
    assert op.SubmissionFacts.of({"starttls": 1}) == op.SubmissionFacts(starttls=True)
    assert op.SubmissionFacts.of(None) == op.SubmissionFacts()
    with pytest.raises(ValueError, match="starttls_ok"):
        op.SubmissionFacts.of({"starttls_ok": True})


def _result(status: Status) -> CheckResult:
    return CheckResult(check="x", status=status, summary="")


def test_facts_from_check_results() -> None:
    facts = op.facts_from_checks(_result(Status.PASS), _result(Status.FAIL),
                                 _result(Status.ERROR), None)
    assert facts == op.SubmissionFacts(True, False, None, None)


def _target(**fields: Any) -> Target:
    fields.setdefault("protocol", "submission")
    fields.setdefault("port", 587)
    return Target(name="t", host="127.0.0.1", trust=Trust(insecure=True), **fields)


def test_ports_default_then_target_then_params() -> None:
    assert op.diagnosis_ports(_target(), {}) == {"smtp": 25, "submission": 587,
                                                 "submissions": 465}
    assert op.diagnosis_ports(_target(port=40000), {})["submission"] == 40000
    assert op.diagnosis_ports(_target(), {"ports": {"smtp": 2525, "submissions": 0}}) == {
        "smtp": 2525, "submission": 587}
    with pytest.raises(ValueError):
        op.diagnosis_ports(_target(), {"ports": {"imap": 143}})
    with pytest.raises(ValueError):
        op.diagnosis_ports(_target(), {"ports": [25]})


def test_judging_with_and_without_an_expected_verdict() -> None:
    probes = results(p25=S.FILTERED, p587=S.OPEN)
    verdict = op.diagnose(probes, OK_FACTS)
    facts = op.SubmissionFacts.of(OK_FACTS)
    assert op.judge_diagnosis(verdict, probes, facts).status is Status.PASS
    assert op.judge_diagnosis(verdict, probes, facts, op.PORT25_FILTERED).status is Status.PASS
    failed = op.judge_diagnosis(verdict, probes, facts, op.PORT25_OPEN)
    assert failed.status is Status.FAIL
    assert failed.expected == "verdict port25-open"
    assert failed.observed.startswith("verdict port25-filtered; 25 filtered; 587 open")
    assert failed.advice == verdict.fix
    assert failed.evidence["verdict"]["code"] == op.PORT25_FILTERED
    with pytest.raises(ValueError):
        op.judge_diagnosis(verdict, probes, facts, "port25-blocked")
    broken = results(p25=S.FILTERED, p587=S.FILTERED)
    assert op.judge_diagnosis(op.diagnose(broken), broken, facts).status is Status.FAIL
    errors = results(p25=S.ERROR)
    assert op.judge_diagnosis(op.diagnose(errors), errors, facts).status is Status.ERROR


def test_check_is_registered_for_smtp_targets() -> None:
    spec = REGISTRY[op.CHECK]
    assert spec.protocols == ("smtp", "submission", "submissions")
    assert spec.function is op.op25b_diagnose


# -- the check against real servers and real blocked ports ------------------------------

PASSWORD = "op25b-Pass-7788"
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="userspace 'filtered' needs Linux")


@pytest.fixture
def network(tls_files: dict[str, Path]) -> Iterator[Any]:
    """Factory: ``network(port25, submission=..., submissions=...)`` -> (target, ports)."""
    with ExitStack() as stack:

        def make(port25: str, *, submission: dict[str, Any] | None = None,
                 submissions: bool = False) -> tuple[Target, dict[str, int]]:
            if port25 == "open":
                mta = stack.enter_context(SMTPLabServer(SMTPServerConfig(
                    role="mta", cert_file=tls_files["cert"], key_file=tls_files["key"])))
                ports = {"smtp": mta.port}
            else:
                ports = {"smtp": stack.enter_context(PortBlock(port25)).port}
            if submission is not None:
                config = SMTPServerConfig(role="submission", users={"alice": PASSWORD},
                                          cert_file=tls_files["cert"],
                                          key_file=tls_files["key"], **submission)
                ports["submission"] = stack.enter_context(SMTPLabServer(config)).port
            else:
                ports["submission"] = stack.enter_context(PortBlock("refused")).port
            if submissions:
                config = SMTPServerConfig(role="submissions", users={"alice": PASSWORD},
                                          cert_file=tls_files["cert"],
                                          key_file=tls_files["key"])
                ports["submissions"] = stack.enter_context(SMTPLabServer(config)).port
            else:
                ports["submissions"] = stack.enter_context(PortBlock("refused")).port
            target = Target(name="lab", protocol="submission", host="127.0.0.1",
                            port=ports["submission"], trust=Trust(ca_file=tls_files["ca"]),
                            server_name="localhost", user="alice", password=PASSWORD)
            return target, ports

        yield make


@linux_only
def test_check_on_a_filtered_network_with_587(network: Any) -> None:
    target, ports = network("filtered", submission={})
    params = {"ports": ports, "timeout": 0.5, "expect_verdict": op.PORT25_FILTERED}
    result = op.op25b_diagnose(target, params)
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["submission"] == {"starttls": True, "auth_after_tls": True,
                                             "implicit_tls": None, "auth_implicit": None}
    assert "587 open with STARTTLS and AUTH" in result.advice
    assert PASSWORD not in repr(result.to_dict())
    wrong = op.op25b_diagnose(target, {**params, "expect_verdict": op.PORT25_OPEN})
    assert wrong.status is Status.FAIL
    assert "port25-filtered" in wrong.summary


def test_check_on_a_refusing_network_with_465_only(network: Any) -> None:
    target, ports = network("refused", submissions=True)
    result = op.op25b_diagnose(target, {"ports": ports, "timeout": 1.0})
    assert result.status is Status.PASS, result.describe()
    assert result.summary.startswith(op.USE_465)
    assert result.evidence["submission"]["implicit_tls"] is True
    assert result.evidence["submission"]["auth_implicit"] is True


def test_check_without_tls_on_587(network: Any) -> None:
    target, ports = network("refused", submission={"starttls": False})
    result = op.op25b_diagnose(target, {"ports": ports, "timeout": 1.0})
    assert result.status is Status.FAIL
    assert result.summary.startswith(op.TLS_MISSING)
    assert result.evidence["submission"]["starttls"] is False


def test_check_without_auth_on_587(network: Any, tls_files: dict[str, Path]) -> None:
    target, ports = network("open")
    mta_as_587 = SMTPLabServer(SMTPServerConfig(role="mta", cert_file=tls_files["cert"],
                                                key_file=tls_files["key"]))
    with mta_as_587:  # STARTTLS, but no AUTH
        ports["submission"] = mta_as_587.port
        result = op.op25b_diagnose(target, {"ports": ports, "timeout": 1.0,
                                            "expect_verdict": op.AUTH_MISSING})
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["submission"]["auth_after_tls"] is False


def test_check_sees_interception(network: Any) -> None:
    target, ports = network("open", submission={})
    with Greeter(banner="220 mailshield.antivirus.local ESMTP") as impostor:
        ports["submission"] = impostor.port
        result = op.op25b_diagnose(target, {"ports": ports, "timeout": 1.0,
                                            "expect_host": "mail.ftps-lab.test"})
    assert result.summary.startswith(op.INTERCEPTED)
    assert result.status is Status.FAIL
    assert any("mailshield" in line for line in result.replies)


def test_unknown_expected_verdict_fails_before_probing() -> None:
    with pytest.raises(ValueError, match="unknown verdict"):
        op.op25b_diagnose(_target(), {"expect_verdict": "blocked"})


# -- the shipped scenario's step for remote targets --------------------------------------


def test_a_list_of_expected_verdicts() -> None:
    """expect_verdict takes one code or a list: an office that must block 25 while 587
    works names every blocked form."""
    probes = results(p25=S.CLOSED, p587=S.OPEN)
    verdict = op.diagnose(probes, OK_FACTS)
    facts = op.SubmissionFacts.of(OK_FACTS)
    blocked = [op.PORT25_FILTERED, op.PORT25_REFUSED]
    passed = op.judge_diagnosis(verdict, probes, facts, blocked)
    assert passed.status is Status.PASS
    assert passed.evidence["expected_verdicts"] == blocked
    open_25 = results(p25=S.OPEN, p587=S.OPEN)
    failed = op.judge_diagnosis(op.diagnose(open_25, OK_FACTS), open_25, facts, blocked)
    assert failed.status is Status.FAIL
    assert failed.expected == "verdict port25-filtered or port25-refused"
    with pytest.raises(ValueError, match="unknown verdict"):
        op.judge_diagnosis(verdict, probes, facts, [op.PORT25_OPEN, "port25-blocked"])


def test_target_ports_and_expectations_come_from_the_inventory() -> None:
    target = _target(op25b_ports={"smtp": 2525, "submissions": 0})
    assert op.diagnosis_ports(target, {}) == {"smtp": 2525, "submission": 587}
    assert op.diagnosis_ports(target, {"ports": {"smtp": 26}})["smtp"] == 26
    with pytest.raises(ValueError, match="op25b_ports"):
        op.diagnosis_ports(_target(op25b_ports={"pop3": 110}), {})


def test_the_fix_speaks_the_greeting_servers_language(network: Any) -> None:
    """587 without STARTTLS behind an Exim greeting: Exim's TLS settings, not Postfix's."""
    target, ports = network("refused", submission={"starttls": False})
    with Greeter(banner="220 mail.example.net ESMTP Exim 4.96 Thu, 30 Nov 2023") as exim:
        ports["submission"] = exim.port
        result = op.op25b_diagnose(target, {"ports": ports, "timeout": 1.0})
    assert result.evidence["server_software"]["name"] == "Exim"
    assert "tls_advertise_hosts" in result.advice and "smtpd_tls" not in result.advice


def _scenario_run(tmp_path: Path, inventory: str) -> tuple[Any, dict[str, Any]]:
    """scenarios/op25b-diagnose.yaml against an inventory, as an office CI job runs it."""
    import json
    import subprocess

    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "office.yaml"
    path.write_text(inventory)
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
         "scenarios/op25b-diagnose.yaml", "--lab-inventory", str(path),
         "--lab-json", str(report)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    document = json.loads(report.read_text()) if report.exists() else {"results": []}
    return run, {r["check_id"]: r for r in document["results"]}


def _inventory(target: Target, ports: dict[str, int], tls_files: dict[str, Path],
               expect: str = "[port25-filtered, port25-refused, port25-unreachable]") -> str:
    return (
        "version: 1\n"
        "targets:\n"
        "  office-mail:\n"
        "    protocol: submission\n"
        "    host: 127.0.0.1\n"
        f"    port: {target.port}\n"
        f"    trust: {{ca_file: {tls_files['ca']}}}\n"
        "    server_name: localhost\n"
        "    timeout: 1\n"
        f"    op25b_expect: {expect}\n"
        f"    op25b_ports: {{smtp: {ports['smtp']}, submissions: {ports['submissions']}}}\n"
    )


@linux_only
def test_office_ci_asserts_port_25_blocked_and_587_working(
    network: Any, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    """The docs/mail.md recipe on loopback: 25 filtered (a full accept queue drops the
    SYNs), 587 a real submission server, 465 refused. The shipped scenario's remote step
    passes on port25-filtered; the steps about the lab's simulated networks skip."""
    target, ports = network("filtered", submission={})
    run, results = _scenario_run(tmp_path, _inventory(target, ports, tls_files))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    step = results["diagnose-this-network"]
    assert step["status"] == "pass", step
    assert step["summary"].startswith(op.PORT25_FILTERED)
    assert step["evidence"]["submission"]["starttls"] is True
    pinned = {check_id: r for check_id, r in results.items() if check_id != step["check_id"]}
    assert len(pinned) == 6
    assert {r["skip_kind"] for r in pinned.values()} == {"not-applicable"}


def test_office_ci_fails_when_port_25_is_open(
    network: Any, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    """The same job on a network where 25 reaches the MTA: 587 works, but the office
    asserted a block, so the step fails naming both."""
    target, ports = network("open", submission={})
    run, results = _scenario_run(tmp_path, _inventory(target, ports, tls_files))
    assert run.returncode == 1, run.stdout[-3000:]
    step = results["diagnose-this-network"]
    assert step["status"] == "fail" and step["summary"].startswith(op.PORT25_OPEN)
    assert "verdict port25-filtered or port25-refused or port25-unreachable" in run.stdout


def test_without_expectations_a_working_path_passes(
    network: Any, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    """No op25b_expect: any working submission path passes (465 only here), none fails."""
    target, ports = network("refused", submissions=True)
    inventory = _inventory(target, ports, tls_files).replace(
        "    op25b_expect: [port25-filtered, port25-refused, port25-unreachable]\n", "")
    # The target is the 587 port, which refuses; 465 is the working path.
    run, results = _scenario_run(tmp_path, inventory)
    assert run.returncode == 0, run.stdout[-3000:]
    assert results["diagnose-this-network"]["summary"].startswith(op.USE_465)

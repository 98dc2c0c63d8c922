"""Every SMTP check both ways: a lab server configured to pass it, one configured to fail it."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

import harness.checks.smtp as smtp_checks
from harness.checks import REGISTRY
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.protocols.tls import Trust
from harness.results import CheckResult, Status
from harness.targets import Target

PASSWORD = "chk-Secret-5150"
USERS = {"alice": PASSWORD}
SECRET_FORMS = (
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\x00alice\x00{PASSWORD}".encode()).decode(),
)
PROTOCOL_OF_ROLE = {"submission": "submission", "submissions": "submissions", "mta": "smtp"}
FAST = {"wait": 0.3}


def run(name: str, target: Target, params: dict[str, Any] | None = None) -> CheckResult:
    """Run a registered check and prove it leaked no credential in any form."""
    result = REGISTRY[name].function(target, dict(params or {}))
    assert isinstance(result, CheckResult)
    assert result.check == name
    text = repr(result.to_dict()) + result.describe()
    for form in SECRET_FORMS:
        assert form not in text, f"{name} leaked a credential"
    return result


@pytest.fixture
def lab(tls_files: dict[str, Path]) -> Any:
    """Factory: ``with lab(role, target_fields=..., **faults) as (server, target)``."""

    @contextmanager
    def make(
        role: str = "submission",
        protocol: str | None = None,
        target_fields: dict[str, Any] | None = None,
        **options: Any,
    ) -> Iterator[tuple[SMTPLabServer, Target]]:
        options.setdefault("users", USERS)
        options.setdefault("cert_file", tls_files["cert"])
        options.setdefault("key_file", tls_files["key"])
        with SMTPLabServer(SMTPServerConfig(role=role, **options)) as server:
            target = Target(
                name=f"lab-{role}",
                protocol=protocol or PROTOCOL_OF_ROLE[role],
                host="127.0.0.1",
                port=server.port,
                trust=Trust(ca_file=tls_files["ca"]),
                server_name="localhost",
                user="alice",
                password=PASSWORD,
                timeout=3.0,
            )
            if target_fields:
                target = dataclasses.replace(target, **target_fields)
            yield server, target

    return make


# (check, role, faults, target fields, params, expected status, summary fragment)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], Status, str]] = [
    ("smtp-banner", "submission", {}, {}, {}, Status.PASS, "220"),
    ("smtp-banner", "mta", {"refuse_service": True}, {}, {}, Status.FAIL, "554"),
    ("ehlo", "submissions", {}, {}, {}, Status.PASS, "AUTH"),
    ("ehlo", "submission", {"ehlo_enabled": False}, {}, {}, Status.FAIL, "502"),
    ("starttls", "submission", {}, {}, {}, Status.PASS, "STARTTLS works"),
    ("starttls", "submissions", {}, {}, {}, Status.PASS, "implicit TLS works"),
    ("starttls", "mta", {}, {}, {}, Status.PASS, "STARTTLS works"),
    ("starttls", "submission", {"starttls": False}, {}, {}, Status.FAIL, "not advertised"),
    ("starttls", "submission", {"close_after_starttls": True}, {}, {}, Status.FAIL, "handshake"),
    ("starttls", "submission", {}, {"protocol": "submissions"}, {}, Status.FAIL, "implicit"),
    ("smtp-certificate-trust", "submission", {}, {}, {}, Status.PASS, "trusted"),
    ("smtp-certificate-trust", "submissions", {}, {}, {}, Status.PASS, "trusted"),
    ("smtp-certificate-trust", "submission", {}, {"server_name": "mail.example.org"}, {},
     Status.FAIL, "verification failed"),
    ("smtp-certificate-trust", "submissions", {}, {"trust": Trust(pin_sha256="ab" * 32)}, {},
     Status.FAIL, "pin mismatch"),
    ("smtp-certificate-trust", "mta", {}, {"trust": Trust(insecure=True)}, {}, Status.SKIP, ""),
    ("auth-not-before-tls", "submission", {}, {}, {}, Status.PASS, "not available"),
    ("auth-not-before-tls", "mta", {}, {}, {}, Status.PASS, "refused: AUTH PLAIN 503"),
    ("auth-not-before-tls", "submission", {"offer_auth_before_tls": True}, {}, {},
     Status.FAIL, "offers AUTH"),
    ("auth-not-before-tls", "submissions", {}, {}, {}, Status.SKIP, "implicit"),
    ("mail-before-auth-refused", "submission", {}, {}, {}, Status.PASS, "530"),
    ("mail-before-auth-refused", "submissions", {}, {}, {}, Status.PASS, "530"),
    ("mail-before-auth-refused", "submission", {"auth_required": False}, {}, {},
     Status.FAIL, "accepted"),
    ("mail-before-auth-refused", "mta", {}, {}, {}, Status.SKIP, "MTA"),
    ("starttls-state-reset", "submission", {}, {}, {}, Status.PASS, "new EHLO"),
    ("starttls-state-reset", "mta", {}, {}, {}, Status.PASS, "new EHLO"),
    ("starttls-state-reset", "submission", {"no_state_reset": True}, {}, {},
     Status.FAIL, "AUTH after STARTTLS without a new EHLO accepted (334"),
    ("starttls-state-reset", "mta", {"no_state_reset": True}, {}, {}, Status.FAIL,
     "MAIL after STARTTLS without a new EHLO accepted (250"),
    ("starttls-state-reset", "submissions", {}, {}, {}, Status.SKIP, ""),
    ("ehlo-after-tls-lists-auth", "submission", {}, {}, {}, Status.PASS, "PLAIN"),
    ("ehlo-after-tls-lists-auth", "submissions", {}, {}, {}, Status.PASS, "PLAIN"),
    ("ehlo-after-tls-lists-auth", "mta", {}, {"protocol": "submission"}, {},
     Status.FAIL, "no AUTH"),
    ("starttls-injection", "submission", {}, {}, FAST, Status.PASS, "discarded"),
    ("starttls-injection", "mta", {}, {}, FAST, Status.PASS, "discarded"),
    ("starttls-injection", "submission", {"vulnerable_starttls_injection": True}, {}, FAST,
     Status.FAIL, "injected"),
    ("starttls-injection", "submission", {"starttls": False}, {}, FAST, Status.SKIP, ""),
    ("auth-plain", "submission", {}, {}, {}, Status.PASS, "accepted"),
    ("auth-plain", "submissions", {}, {}, {}, Status.PASS, "accepted"),
    ("auth-plain", "submission", {"users": {"alice": "other-password"}}, {}, {},
     Status.FAIL, "535"),
    ("auth-plain", "submission", {}, {"password": None}, {}, Status.SKIP, "no user"),
    # LOGIN only, as Exchange and Office 365 offer it: clients log in, PLAIN is missing.
    ("auth-plain", "submission", {"auth_exclude": ("PLAIN",)}, {}, {}, Status.WARN,
     "AUTH PLAIN not offered (AUTH LOGIN); AUTH LOGIN with the same credentials accepted"),
    ("auth-plain", "submission", {"auth_exclude": ("PLAIN",), "users": {"alice": "other"}},
     {}, {}, Status.FAIL, "AUTH LOGIN answered 535"),
    ("auth-bad-password", "submission", {}, {}, {}, Status.PASS, "refused"),
    ("auth-bad-password", "submissions", {}, {}, {}, Status.PASS, "refused"),
    ("auth-bad-password", "submission", {"accept_any_password": True}, {}, {},
     Status.FAIL, "235"),
    ("auth-bad-password", "submission", {"auth_exclude": ("PLAIN",)}, {}, {}, Status.PASS,
     "wrong password refused"),
    ("relay-refused", "mta", {}, {}, {}, Status.PASS, "all 5"),
    ("relay-refused", "submission", {}, {}, {}, Status.PASS, "all 5"),
    ("relay-refused", "submission", {"auth_required": False}, {}, {}, Status.PASS, "all 5"),
    ("relay-refused", "mta", {"open_relay": True}, {}, {}, Status.FAIL, "OPEN RELAY"),
    ("relay-refused", "mta", {"relay_routing_loophole": True}, {}, {},
     Status.FAIL, "percent-hack"),
    # aiosmtpd offers no PIPELINING, ENHANCEDSTATUSCODES or DSN: the lab warns (secure,
    # clients work); Postfix passes (tests/interop, tests/checks/test_smtp_verdicts.py).
    ("extensions", "submission", {}, {}, {}, Status.WARN,
     "not offered after TLS: PIPELINING, ENHANCEDSTATUSCODES, DSN"),
    ("extensions", "submissions", {}, {}, {}, Status.WARN, "PIPELINING"),
    ("extensions", "mta", {"smtputf8": False}, {}, {}, Status.WARN,
     "not offered after TLS: PIPELINING, ENHANCEDSTATUSCODES"),
    # No AUTH after TLS on a submission port: clients cannot submit.
    ("extensions", "mta", {}, {"protocol": "submission"}, {}, Status.FAIL, "no AUTH"),
    ("submit-message", "mta", {"drop_messages": True}, {}, {}, Status.PASS, "accepted"),
    ("submit-message", "submission", {"auth_exclude": ("PLAIN",)}, {}, {}, Status.PASS,
     "accepted"),
]


@pytest.mark.parametrize(
    ("name", "role", "faults", "fields", "params", "status", "fragment"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[5].value}-{i}" for i, c in enumerate(CASES)],
)
def test_check_against_lab(
    lab: Any,
    name: str,
    role: str,
    faults: dict[str, Any],
    fields: dict[str, Any],
    params: dict[str, Any],
    status: Status,
    fragment: str,
) -> None:
    with lab(role, target_fields=fields, **faults) as (server, target):
        result = run(name, target, params)
        assert result.status is status, result.describe()
        assert fragment in result.summary, result.describe()
        if status is not Status.SKIP:
            assert result.transcript, "every session is recorded"
        assert server.errors == []


def test_every_registered_smtp_check_is_covered_both_ways() -> None:
    names = {name for name, spec in REGISTRY.items() if "submission" in spec.protocols}
    names.discard("op25b-diagnose")  # a network diagnosis, covered in tests/checks/test_op25b.py
    names.discard("wait-listening")  # protocol-neutral, covered in tests/checks/test_wait.py
    passing = {c[0] for c in CASES if c[5] is Status.PASS}
    failing = {c[0] for c in CASES if c[5] is Status.FAIL}
    # extensions cannot pass against aiosmtpd (see its cases; it passes against Postfix);
    # lint is tested separately
    assert names - {"extensions", "smtp-certificate-lint"} <= passing
    assert names - {"smtp-certificate-lint", "submit-message"} <= failing


def _leaf(directory: Path, **validity: datetime.datetime) -> tuple[Path, Path, Path]:
    """A ``localhost`` certificate from a fresh CA: (cert chain, key, CA) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", **validity)
    cert, key, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert, key, ca_file


def test_certificate_trust_fails_for_a_foreign_ca(
    lab: Any, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    cert, key, _ = _leaf(tmp_path)
    with lab("submission", cert_file=cert, key_file=key) as (_, target):
        result = run("smtp-certificate-trust", target)
    assert result.status is Status.FAIL
    assert "unable to get local issuer certificate" in result.summary
    assert result.evidence["certificate"]["dns_names"] == ["localhost"]
    assert result.advice


def test_submit_message_is_delivered_byte_for_byte(lab: Any) -> None:
    for role in ("submission", "submissions", "mta"):
        with lab(role) as (server, target):
            result = run("submit-message", target, {"mailbox": server.mailbox})
            assert result.status is Status.PASS, result.describe()
            message_id = result.evidence["message_id"]
            data = smtp_checks.find_in_mailbox(server.mailbox, message_id)
            assert data is not None
            assert hashlib.sha256(data).hexdigest() == result.evidence["sha256"]
            assert b"\r\n.A line starting with a dot" in data
            stored = server.mailbox.find(message_id)
            assert stored is not None and stored.rcpt_tos == (target.rcpt_to,)
            assert stored.user == (None if role == "mta" else "alice")


def test_submit_message_fails_when_mail_is_dropped(lab: Any, tmp_path: Path) -> None:
    with lab("submission", drop_messages=True) as (server, target):
        result = run("submit-message", target, {"mailbox": server.mailbox, "delivery_wait": 0.2})
    assert result.status is Status.FAIL and "not found in the mailbox" in result.summary
    with lab("mta", mailbox_dir=tmp_path / "box") as (_, target):
        result = run("submit-message", target, {"mailbox": str(tmp_path / "box")})
    assert result.status is Status.PASS and "byte for byte" in result.summary


def test_relay_attempts_are_all_recorded(lab: Any) -> None:
    with lab("mta", relay_routing_loophole=True) as (_, target):
        result = run("relay-refused", target)
    outcomes = {a["form"]: a["outcome"] for a in result.evidence["relay_attempts"]}
    assert outcomes == {
        "plain": "refused",
        "percent-hack": "accepted",
        "quoted-local-part": "accepted",
        "source-route": "refused",
        "bang-path": "accepted",
    }


def test_evidence_of_tls_and_extensions(lab: Any) -> None:
    with lab("submission") as (_, target):
        starttls = run("starttls", target)
        extensions = run("extensions", target)
    assert starttls.evidence["tls"]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert starttls.evidence["tls"]["certificate_sha256"]
    assert extensions.evidence["before_tls"]["starttls"] is True
    assert extensions.evidence["before_tls"]["auth_mechanisms"] == []
    assert extensions.evidence["after_tls"]["auth_mechanisms"] == ["LOGIN", "PLAIN"]
    assert extensions.evidence["after_tls"]["size_limit"] == 10 * 1024 * 1024


def test_unreachable_server_is_an_error_not_an_exception() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    target = Target(name="nowhere", protocol="submission", host="127.0.0.1", port=port,
                    user="alice", password=PASSWORD, timeout=1.0)
    for name in ("smtp-banner", "starttls", "submit-message", "relay-refused"):
        result = run(name, target)
        assert result.status is Status.ERROR
        assert "connection refused" in result.summary


def test_credentials_never_sent_to_an_unverified_server(lab: Any) -> None:
    """With system trust the lab certificate does not verify: AUTH must not happen."""
    with lab("submission", target_fields={"trust": Trust()}) as (_, target):
        result = run("auth-plain", target)
    assert result.status is Status.ERROR
    assert "certificate verification failed" in result.summary
    assert not any("AUTH" in line for line in result.transcript)


def test_expired_certificate_is_a_trust_failure(lab: Any, tmp_path: Path) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    cert, key, ca_file = _leaf(tmp_path, not_before=past, not_after=past + datetime.timedelta(1))
    with lab("submissions", cert_file=cert, key_file=key,
             target_fields={"trust": Trust(ca_file=ca_file)}) as (_, target):
        result = run("smtp-certificate-trust", target)
    assert result.status is Status.FAIL and "expired" in result.summary
    assert result.evidence["certificate"]["not_after"].startswith("2020-01-02")



def test_certificate_lint_both_ways(lab: Any, tmp_path: Path) -> None:
    pytest.importorskip("harness.checks.certlint", reason="the certificate linter is not here")
    now = datetime.datetime.now(datetime.timezone.utc)
    good = _leaf(tmp_path / "good", not_before=now - datetime.timedelta(days=1),
                 not_after=now + datetime.timedelta(days=90))
    with lab("submission", cert_file=good[0], key_file=good[1]) as (_, target):
        result = run("smtp-certificate-lint", target)
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["certificate"]["dns_names"] == ["localhost"]
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    expired = _leaf(tmp_path / "old", not_before=past, not_after=past + datetime.timedelta(1))
    with lab("submissions", cert_file=expired[0], key_file=expired[1]) as (_, target):
        result = run("smtp-certificate-lint", target)
    assert result.status is Status.FAIL, result.describe()
    assert result.evidence["findings"]

"""The harness's SMTP checks against a real Postfix with Dovecot SASL, on loopback.

The embedded lab and the checks were written together; this module runs the same
checks against the MTA most OP25B setups use, so a misread RFC on either side shows
up. :mod:`postfix_lab` starts one private Postfix (four smtpd services: a hardened
587-style submission, Debian's stock submission template, a port-25 MTA and the same
MTA misconfigured as an open relay) and a Dovecot that only answers SASL requests.
Every expectation below is what Postfix really does; where a check does not pass, a
comment says why that is the right result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from postfix_lab import (
    LAB_DOMAIN,
    RECIPIENT,
    PostfixLab,
    free_ports,
    missing_prerequisites,
    postfix_lab,
)

from harness.certs import lab_pki
from harness.checks import run_check
from harness.protocols.tls import Trust
from harness.results import CheckResult, Status

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

PASS, WARN, FAIL, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.SKIP

# Checks whose outcome is a plain status. relay-refused, submit-message and (on the
# submission services) auth-bad-password have their own tests below, which look
# closer at the evidence.
EXPECTED: dict[str, dict[str, Status]] = {
    "submission": {
        "smtp-banner": PASS,
        "ehlo": PASS,
        "starttls": PASS,
        "smtp-certificate-trust": PASS,
        "smtp-certificate-lint": PASS,
        "auth-not-before-tls": PASS,  # 530 Must issue a STARTTLS command first
        # 530 5.7.1 <probe@...>: Sender address rejected (reject_code=530; Postfix's own
        # 554 there is a warning: RFC 4954 sec. 6 asks for 530)
        "mail-before-auth-refused": PASS,
        "starttls-state-reset": PASS,  # 503 5.5.1 send HELO/EHLO first, as without EHLO
        "ehlo-after-tls-lists-auth": PASS,
        "starttls-injection": PASS,
        "auth-plain": PASS,
        "extensions": PASS,  # ETRN discarded (RFC 6409 sec. 7)
    },
    "submission-template": {
        "smtp-banner": PASS,
        "ehlo": PASS,
        "starttls": PASS,
        "smtp-certificate-trust": PASS,
        "smtp-certificate-lint": PASS,
        "auth-not-before-tls": PASS,
        # Postfix evaluates restrictions at RCPT by default (smtpd_delay_reject = yes):
        # MAIL before AUTH gets 250, the recipient 554: nothing enters, a warning (see
        # test_refusal_at_rcpt_is_a_warning).
        "mail-before-auth-refused": WARN,
        # Without smtpd_helo_required Postfix takes MAIL (250) and AUTH (334) with no
        # EHLO at all, and refuses MAIL before STARTTLS (encrypt): no probe can tell
        # whether the pre-TLS state was forgotten, so the check could not run (it
        # failed on the 250 before). See test_state_reset_evidence.
        "starttls-state-reset": SKIP,
        "ehlo-after-tls-lists-auth": PASS,
        "starttls-injection": PASS,
        "auth-plain": PASS,
        "extensions": WARN,  # 250-ETRN: MUST NOT on submission (RFC 6409 sec. 7)
    },
    "mta": {
        "smtp-banner": PASS,
        "ehlo": PASS,
        "starttls": PASS,
        "smtp-certificate-trust": PASS,
        "smtp-certificate-lint": PASS,
        "auth-not-before-tls": PASS,  # 503 authentication not enabled
        "mail-before-auth-refused": SKIP,  # not meaningful on port 25
        "starttls-state-reset": PASS,
        "ehlo-after-tls-lists-auth": SKIP,
        "starttls-injection": PASS,
        "auth-plain": SKIP,
        "auth-bad-password": SKIP,
        "extensions": PASS,  # ETRN is fine on 25
    },
    # As mta, without smtpd_helo_required: the state reset is shown by a MAIL sent before
    # STARTTLS and a RCPT after it (503 5.5.1 Error: need MAIL command).
    "mta-helo-optional": {
        "starttls-state-reset": PASS,
        "mail-before-auth-refused": SKIP,
        "extensions": PASS,
    },
}
CASES = [
    pytest.param(service, check, status, id=f"{service}-{check}")
    for service, checks in EXPECTED.items()
    for check, status in checks.items()
]


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixLab]:
    """One Postfix + Dovecot for the module; stopped, and checked for leftovers, after."""
    reason = missing_prerequisites()
    if reason is not None:
        pytest.skip(reason)
    pki = lab_pki()
    files = pki.files("lab")
    with postfix_lab(files.cert, files.key, pki.ca_file) as lab:
        yield lab
    assert lab.leftovers == [], f"processes outlived the teardown: {lab.leftovers}"


def _explain(result: CheckResult, lab: PostfixLab) -> str:
    transcript = "\n".join(result.transcript[-30:])
    return f"{result.describe()}\n{transcript}\n{lab.logs()}"


def _run(lab: PostfixLab, check: str, service: str, **params: object) -> CheckResult:
    return run_check(check, lab.target(service), dict(params))


@pytest.mark.parametrize(("service", "check", "expected"), CASES)
def test_check_against_postfix(
    postfix: PostfixLab, service: str, check: str, expected: Status
) -> None:
    result = _run(postfix, check, service)
    assert result.status is expected, _explain(result, postfix)


def test_listens_on_loopback_only(postfix: PostfixLab) -> None:
    """Every listener of the instance is bound to 127.0.0.1 (inet_interfaces)."""
    wanted = set(postfix.ports.values())
    bound: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in wanted:  # 0A: LISTEN
                bound.setdefault(int(port, 16), set()).add(address)
    assert bound == {port: {"0100007F"} for port in wanted}


def test_refusal_at_rcpt_is_a_warning(postfix: PostfixLab) -> None:
    """The stock template refuses the unauthenticated recipient, so nothing enters: a
    warning, with or without the old accept_refusal_at_rcpt (now accepted and ignored),
    and Postfix's own settings in the advice."""
    for params in ({}, {"accept_refusal_at_rcpt": True}):
        result = _run(postfix, "mail-before-auth-refused", "submission-template", **params)
        assert result.status is WARN, _explain(result, postfix)
        assert result.replies == [
            "250 2.1.0 Ok",
            "554 5.7.1 <postmaster@ftps-lab.test>: Recipient address rejected: Access denied",
            # postmaster is exempt by RFC 5321, so another local part decides
            "554 5.7.1 <ftps-lab-probe@ftps-lab.test>: Recipient address rejected: Access "
            "denied",
        ]
        assert "postmaster" in result.observed and "unknown" not in result.summary
        assert result.evidence["server_software"]["name"] == "Postfix"
        assert "Postfix: in the master.cf submission service" in result.advice
        assert "reject_code=530" in result.advice and "Exim" not in result.advice


def test_state_reset_evidence(postfix: PostfixLab) -> None:
    """What decides starttls-state-reset on each service, in Postfix's words."""
    strict = _run(postfix, "starttls-state-reset", "submission").evidence["state_reset"]
    assert strict["MAIL"]["after_pre_tls_ehlo"] == "503 5.5.1 Error: send HELO/EHLO first"
    assert strict["MAIL"]["without_ehlo"] == "503 5.5.1 Error: send HELO/EHLO first"
    assert strict["MAIL"]["outcome"] == "reset"
    template = _run(postfix, "starttls-state-reset", "submission-template")
    assert template.skip_kind is not None and template.skip_kind.value == "could-not-run"
    evidence = template.evidence["state_reset"]
    assert {evidence["MAIL"][k] for k in ("after_pre_tls_ehlo", "without_ehlo",
                                          "with_new_ehlo")} == {"250 2.1.0 Ok"}
    assert evidence["AUTH"]["without_ehlo"] == "334 "
    assert evidence["transaction"]["mail_before_tls"] == (
        "530 5.7.0 Must issue a STARTTLS command first")
    assert "smtpd_helo_required = yes" in template.advice
    optional = _run(postfix, "starttls-state-reset", "mta-helo-optional")
    transaction = optional.evidence["state_reset"]["transaction"]
    assert transaction["mail_before_tls"] == "250 2.1.0 Ok"
    assert transaction["rcpt_after_tls"] == "503 5.5.1 Error: need MAIL command"
    assert optional.summary.startswith("the pre-TLS MAIL transaction was discarded")


# Where each service refuses the relay probes, and with which words.
RELAY = {
    "submission": ("MAIL", "530 5.7.1 <probe@ftps-lab.test>: Sender address rejected"),
    "submission-template": ("RCPT", "554 5.7.1 Recipient address rejected: Access denied"),
    "mta": ("RCPT", "554 5.7.1 Relay access denied"),
}


@pytest.mark.parametrize("service", list(RELAY))
def test_relay_refused(postfix: PostfixLab, service: str) -> None:
    """Every relay spelling is refused, and the evidence carries Postfix's own replies."""
    result = _run(postfix, "relay-refused", service)
    assert result.status is PASS, _explain(result, postfix)
    attempts = result.evidence["relay_attempts"]
    assert [a["form"] for a in attempts] == [
        "plain", "percent-hack", "quoted-local-part", "source-route", "bang-path",
    ]
    stage, words = RELAY[service]
    code, words = words[:10], words[10:]
    for attempt in attempts:
        assert attempt["outcome"] == "refused", attempt
        assert attempt["stage"] == stage, attempt
        assert attempt["reply"].startswith(code) and words in attempt["reply"], attempt
    assert result.evidence["local_domain"] == LAB_DOMAIN
    assert len(result.replies) == len(attempts)


def test_open_relay_is_detected(postfix: PostfixLab) -> None:
    """The relay check fails a Postfix that trusts 127.0.0.0/8: the plain form gets 250."""
    result = _run(postfix, "relay-refused", "open-relay")
    assert result.status is FAIL, _explain(result, postfix)
    assert result.summary.startswith("OPEN RELAY: recipient accepted (plain")
    plain = result.evidence["relay_attempts"][0]
    assert plain["form"] == "plain" and plain["outcome"] == "accepted"
    assert plain["reply"].startswith("250 2.1.5 ")


@pytest.mark.parametrize("service", ["submission", "submission-template", "mta"])
def test_submitted_message_is_delivered(postfix: PostfixLab, service: str) -> None:
    """250 after DATA, and the very bytes sent end up in the lab's Maildir."""
    result = _run(postfix, "submit-message", service)
    assert result.status is PASS, _explain(result, postfix)
    assert result.evidence["queue_reply"].startswith("250 2.0.0 Ok: queued as ")
    stored = postfix.delivered(result.evidence["message_id"], timeout=10.0)
    assert stored is not None, f"250 but nothing delivered\n{postfix.logs()}"
    # Maildir keeps LF line ends and Postfix puts its trace headers on top; the rest
    # must be the sent message exactly (dot-stuffing undone, nothing rewritten).
    as_sent = stored.replace(b"\n", b"\r\n")[-result.evidence["size"]:]
    assert hashlib.sha256(as_sent).hexdigest() == result.evidence["sha256"]
    headers = stored.split(b"\n\n", 1)[0]
    assert f"Delivered-To: {RECIPIENT}".encode() in headers
    # ESMTPSA: TLS and AUTH; the MTA role takes it over TLS without AUTH (ESMTPS).
    protocol = b"ESMTPS" if service == "mta" else b"ESMTPSA"
    assert b"(Postfix) with " + protocol + b" id " in headers


def test_untrusted_certificate_is_reported(postfix: PostfixLab) -> None:
    """Trusting another CA: the trust check fails and no password is sent."""
    other = replace(postfix.target("submission"), trust=Trust(ca_file=lab_pki().other_ca_file))
    trust = run_check("smtp-certificate-trust", other, {})
    assert trust.status is FAIL, _explain(trust, postfix)
    login = run_check("auth-plain", other, {})
    assert login.status is Status.ERROR, _explain(login, postfix)
    assert "certificate verification failed" in login.summary
    assert login.transcript and not any("> AUTH" in line for line in login.transcript)


@pytest.mark.parametrize(
    ("port25", "verdict"), [("mta", "port25-open"), ("closed", "port25-refused")]
)
def test_op25b_diagnosis(postfix: PostfixLab, port25: str, verdict: str) -> None:
    """The diagnosis reads Postfix's ports right: 587 works, 25 open or refused."""
    smtp_port = postfix.ports["mta"] if port25 == "mta" else free_ports(1)[0]
    params = {
        "ports": {"smtp": smtp_port, "submission": postfix.ports["submission"],
                  "submissions": 0},
        "expect_verdict": verdict,
    }
    result = _run(postfix, "op25b-diagnose", "submission", **params)
    assert result.status is PASS, _explain(result, postfix)
    assert result.evidence["submission"]["starttls"] is True
    assert result.evidence["submission"]["auth_after_tls"] is True


# Last on purpose: after a failed login Dovecot delays further logins from the same
# address (auth penalty), which would slow every AUTH test that came after. Once is
# enough: both submission services ask the same Dovecot.
def test_bad_password_refused(postfix: PostfixLab) -> None:
    """Dovecot refuses a wrong password with 535 5.7.8; neither password is logged."""
    result = _run(postfix, "auth-bad-password", "submission")
    assert result.status is PASS, _explain(result, postfix)
    assert result.replies[-1].startswith("535 5.7.8 ")
    assert postfix.password not in "\n".join(result.transcript)
    assert "********" in "\n".join(result.transcript)

"""Judging rules of the SMTP checks, on reply fixtures (no sockets)."""

from __future__ import annotations

import pytest

from harness.checks import smtp_verdicts as v
from harness.protocols.smtp import Reply, parse_ehlo, parse_reply
from harness.results import SkipKind, Status


def r(text: str) -> Reply:
    """A reply fixture from its wire form; ``|`` separates lines."""
    return parse_reply("\r\n".join(text.split("|")).encode() + b"\r\n")


def test_banner() -> None:
    assert v.judge_banner(r("220 mx ESMTP")).status is Status.PASS
    refused = v.judge_banner(r("554 5.7.1 go away"))
    assert refused.status is Status.FAIL and "554" in refused.advice
    assert v.judge_banner(r("421 busy")).status is Status.FAIL


def test_ehlo() -> None:
    ok = v.judge_ehlo(r("250-mx|250-STARTTLS|250 SIZE 10"))
    assert ok.status is Status.PASS and "STARTTLS SIZE" in ok.summary
    assert v.judge_ehlo(r("502 5.5.1 no")).status is Status.FAIL


def test_starttls() -> None:
    ehlo = r("250-mx|250 AUTH PLAIN")
    assert v.judge_starttls(False, None, None, None).status is Status.FAIL
    assert v.judge_starttls(True, r("454 4.7.0 TLS not available"), None, None).status is (
        Status.FAIL
    )
    assert v.judge_starttls(True, r("220 go"), "TLS error: EOF", None).status is Status.FAIL
    assert v.judge_starttls(True, r("220 go"), None, None).status is Status.FAIL
    result = v.judge_starttls(True, r("220 go"), None, ehlo, {"tls_version": "TLSv1.3"})
    assert result.status is Status.PASS and "TLSv1.3" in result.summary
    assert result.replies == ["220 go", "250-mx", "250 AUTH PLAIN"]


def test_implicit_tls() -> None:
    assert v.judge_implicit_tls("TLS error: WRONG_VERSION_NUMBER", None).status is Status.FAIL
    assert v.judge_implicit_tls(None, r("554 no")).status is Status.FAIL
    assert v.judge_implicit_tls(None, r("220 mx")).status is Status.PASS


def test_certificate_trust() -> None:
    assert v.judge_certificate_trust(None, None, "ca").status is Status.PASS
    failed = v.judge_certificate_trust("unable to get local issuer", "verify", "ca")
    assert failed.status is Status.FAIL and "verification failed" in failed.summary
    assert "pin mismatch" in v.judge_certificate_trust("x", "pin", "pin").summary


def test_certificate_lint() -> None:
    class Finding:
        def __init__(self, severity: str, message: str) -> None:
            self.severity, self.message, self.code = severity, message, "X"

    assert v.judge_certificate_lint([]).status is Status.PASS
    noted = v.judge_certificate_lint([{"severity": "info", "message": "self-signed"}])
    assert noted.status is Status.PASS and "1 note" in noted.summary
    # Valid today, off best practice: a warning (it was a pass with a note).
    warned = v.judge_certificate_lint([{"severity": "warning", "code": "leaf-is-ca",
                                        "message": "the server certificate is a CA "
                                                   "certificate (cA=TRUE)",
                                        "advice": "Re-issue it."}])
    assert warned.status is Status.WARN and "cA=TRUE" in warned.summary
    assert warned.advice == "Re-issue it."
    # The days left are the expiry watch's to judge (the target's cert_expiry_warn_days).
    soon = v.judge_certificate_lint([{"severity": "warning", "code": "expires-soon",
                                      "message": "certificate expires in 12 days"}])
    assert soon.status is Status.PASS
    failed = v.judge_certificate_lint([Finding("warning", "w"), Finding("error", "expired")])
    assert failed.status is Status.FAIL and "1 certificate problem(s): expired" in failed.summary
    second = failed.evidence["findings"][1]
    assert second == {"code": "X", "severity": "error", "message": "expired"}


@pytest.mark.parametrize(
    ("offered", "replies", "status"),
    [
        ((), ["530 5.7.0 Must issue a STARTTLS command first"] * 2, Status.PASS),
        ((), ["538 5.7.11 Encryption required"] * 2, Status.PASS),
        (("CRAM-MD5",), ["503 5.5.1 not enabled", "504 5.5.4 no"], Status.PASS),
        (("PLAIN", "LOGIN"), ["530 5.7.0 x"] * 2, Status.FAIL),
        ((), ["334 ", "530 x"], Status.FAIL),
        ((), ["530 x", "235 2.7.0 ok"], Status.FAIL),
    ],
)
def test_auth_not_before_tls(offered: tuple[str, ...], replies: list[str], status: Status) -> None:
    attempts = list(zip(("PLAIN", "LOGIN"), (r(x) for x in replies), strict=True))
    result = v.judge_auth_not_before_tls(offered, attempts)
    assert result.status is status


def test_auth_not_before_tls_any_refusal_is_right() -> None:
    """538 is RFC 4954's code, 503 right for an AUTH not offered (Postfix on 25): no
    'rather than 530' note any more, only the codes in the summary."""
    postfix_25 = [("PLAIN", r("503 5.5.1 Error: authentication not enabled"))] * 2
    result = v.judge_auth_not_before_tls((), postfix_25)
    assert result.status is Status.PASS
    assert "rather than" not in result.summary
    assert result.summary == ("AUTH not available before TLS (refused: AUTH PLAIN 503, "
                              "AUTH PLAIN 503)")


# Real servers' replies to MAIL (and RCPT) before AUTH, after TLS.
POSTFIX_TEMPLATE_RCPT = ("554 5.7.1 <postmaster@ftps-lab.test>: Recipient address rejected: "
                         "Access denied")  # Debian's master.cf template, smtpd_delay_reject=yes


@pytest.mark.parametrize(
    ("mail", "rcpt", "status", "words"),
    [
        # sendmail's MSA (M=Ea) and the lab: the RFC 4954 sec. 6 code at MAIL.
        ("530 5.7.0 Authentication required", None, Status.PASS, "refused with 530"),
        # Postfix hardened (smtpd_delay_reject=no): secure, but 554, not 530: a warning.
        ("554 5.7.1 <probe@ftps-lab.test>: Sender address rejected: Access denied", None,
         Status.WARN, "not 530"),
        # Postfix as Debian ships the submission template: refused at RCPT: a warning.
        ("250 2.1.0 Ok", POSTFIX_TEMPLATE_RCPT, Status.WARN, "no mail enters without AUTH"),
        ("250 2.1.0 Ok", "554 5.7.1 <victim@relay-test.invalid>: Relay access denied",
         Status.WARN, "recipient refused"),
        # Exim with a submission ACL at RCPT.
        ("250 OK", "550 Authentication required", Status.WARN, "RFC 6409 sec. 4.3"),
        # Exim as Debian ships it (one ACL for every port): a local recipient is taken.
        ("250 OK", "250 Accepted", Status.FAIL, "takes mail without AUTH"),
        ("250 2.1.0 Ok", None, Status.ERROR, "no recipient was tried"),
    ],
)
def test_mail_before_auth(mail: str, rcpt: str | None, status: Status, words: str) -> None:
    result = v.judge_mail_before_auth(r(mail), r(rcpt) if rcpt else None)
    assert result.status is status, result.summary
    assert words in result.summary
    if status in (Status.WARN, Status.FAIL):
        assert "reject_code=530" in result.advice and "$received_port" in result.advice


def test_mail_before_auth_ignores_accept_refusal_at_rcpt() -> None:
    """The old parameter is accepted and changes nothing: a refusal at RCPT is a warning
    (it was a pass with the parameter, a fail without)."""
    for flag in (True, False):
        result = v.judge_mail_before_auth(r("250 2.1.0 Ok"), r(POSTFIX_TEMPLATE_RCPT), flag)
        assert result.status is Status.WARN
    assert v.judge_mail_before_auth(r("250 OK"), r("250 Accepted"), True).status is Status.FAIL


NO_EHLO = "503 5.5.1 Error: send HELO/EHLO first"  # Postfix, smtpd_helo_required=yes


def probe(command: str, tested: str, without: str | None, fresh: str | None) -> v.ResetProbe:
    return v.ResetProbe(command, r(tested), r(without) if without else None,
                        r(fresh) if fresh else None)


def test_state_reset_passes_when_the_command_is_answered_as_without_ehlo() -> None:
    """Postfix with smtpd_helo_required=yes: MAIL after STARTTLS gets what a session
    without any EHLO gets, and not what a new EHLO gets."""
    result = v.judge_state_reset([
        probe("MAIL", NO_EHLO, NO_EHLO, "250 2.1.0 Ok"),
        probe("AUTH", "334 ", "334 ", "334 "),
    ])
    assert result.status is Status.PASS, result.summary
    assert "new EHLO" in result.summary
    assert result.evidence["state_reset"]["MAIL"]["outcome"] == "reset"
    assert result.evidence["state_reset"]["AUTH"]["outcome"] == "undecided"


def test_state_reset_fails_only_with_proof() -> None:
    """The lab's no_state_reset fault: after STARTTLS MAIL gets 530 (auth), as after an
    EHLO, where a session without EHLO gets 503: the pre-TLS EHLO survived."""
    result = v.judge_state_reset([
        probe("MAIL", "530 5.7.0 Authentication required", "503 Error: send HELO first",
              "530 5.7.0 Authentication required"),
        probe("AUTH", "334 ", "503 Error: send EHLO first", "334 "),
    ])
    assert result.status is Status.FAIL
    assert result.summary.startswith("pre-TLS state survived STARTTLS: MAIL after STARTTLS "
                                     "without a new EHLO answered 530 5.7.0")
    assert "AUTH after STARTTLS without a new EHLO accepted (334" in result.summary


def test_state_reset_sendmail_keeps_the_pre_tls_helo() -> None:
    """sendmail 8.17.1.9 as Debian ships it (needmailhelo): with no EHLO at all MAIL gets
    '503 5.0.0 Polite people say HELO first'; with an EHLO before STARTTLS and none after,
    '530 5.7.0 Authentication required', as after a new EHLO. Its STARTTLS resets n_helo
    but not gothello (srvrsmtp.c): proof that pre-TLS state survived."""
    result = v.judge_state_reset([
        probe("MAIL", "530 5.7.0 Authentication required",
              "503 5.0.0 Polite people say HELO first", "530 5.7.0 Authentication required"),
        probe("AUTH", "334 ", "334 ", "334 "),
    ])
    assert result.status is Status.FAIL
    assert "a session without any EHLO gets 503" in result.summary
    assert result.evidence["state_reset"]["AUTH"]["outcome"] == "undecided"


def test_state_reset_mail_accepted_without_any_ehlo_is_no_proof() -> None:
    """Postfix as Debian ships it (smtpd_helo_required=no): MAIL gets 250 with or without
    EHLO and AUTH 334 either way, and MAIL before STARTTLS is refused (encrypt): no probe
    can tell, so the check could not run (it failed on '250 2.1.0 Ok' before)."""
    mail = probe("MAIL", "250 2.1.0 Ok", "250 2.1.0 Ok", "250 2.1.0 Ok")
    auth = probe("AUTH", "334 ", "334 ", "334 ")
    no_transaction = v.TransactionProbe(r("530 5.7.0 Must issue a STARTTLS command first"))
    result = v.judge_state_reset([mail, auth], no_transaction)
    assert result.status is Status.SKIP and result.skip_kind is SkipKind.COULD_NOT_RUN
    assert "answered 250 with or without EHLO" in result.summary
    assert "smtpd_helo_required = yes" in result.advice
    # A server that refuses MAIL for AUTH and takes AUTH, with or without EHLO.
    sendmail = v.judge_state_reset([
        probe("MAIL", "530 5.7.0 Authentication required",
              "530 5.7.0 Authentication required", "530 5.7.0 Authentication required"),
        probe("AUTH", "334 ", "334 ", "334 "),
    ], v.TransactionProbe(r("530 5.7.0 Authentication required")))
    assert sendmail.status is Status.SKIP


def test_state_reset_decided_by_a_transaction_across_the_handshake() -> None:
    """Postfix with STARTTLS optional and no EHLO required: MAIL before STARTTLS 250,
    then RCPT after the handshake: 503 need MAIL (discarded) or a 250 (kept)."""
    undecided = [probe("MAIL", "250 2.1.0 Ok", "250 2.1.0 Ok", "250 2.1.0 Ok")]
    discarded = v.TransactionProbe(r("250 2.1.0 Ok"), r("220 2.0.0 Ready to start TLS"),
                                   r("503 5.5.1 Error: need MAIL command"))
    result = v.judge_state_reset(undecided, discarded)
    assert result.status is Status.PASS
    assert result.summary.startswith("the pre-TLS MAIL transaction was discarded at STARTTLS")
    kept = v.TransactionProbe(r("250 2.1.0 Ok"), r("220 2.0.0 Ready to start TLS"),
                              r("250 2.1.5 Ok"))
    failed = v.judge_state_reset(undecided, kept)
    assert failed.status is Status.FAIL and "survived" in failed.summary


def test_state_reset_without_baselines_trusts_only_503() -> None:
    """Exim refuses STARTTLS before EHLO, so there is no no-EHLO session to compare:
    503 to MAIL after STARTTLS still shows the EHLO was forgotten; 250 shows nothing."""
    assert v.judge_state_reset([probe("MAIL", NO_EHLO, None, "250 OK")]).status is Status.PASS
    assert v.judge_state_reset([probe("MAIL", "250 OK", None, "250 OK")]).status is Status.SKIP


def test_ehlo_after_tls_lists_auth() -> None:
    good = parse_ehlo(r("250-mx|250-AUTH PLAIN LOGIN|250 SIZE 1"))
    assert v.judge_ehlo_after_tls_lists_auth(good).status is Status.PASS
    odd = parse_ehlo(r("250-mx|250 AUTH CRAM-MD5"))
    result = v.judge_ehlo_after_tls_lists_auth(odd)
    assert result.status is Status.FAIL and "CRAM-MD5" in result.observed
    assert v.judge_ehlo_after_tls_lists_auth(parse_ehlo(r("250 mx"))).status is Status.FAIL


def test_injection() -> None:
    go = r("220 2.0.0 Ready")
    assert v.judge_injection(go, None).status is Status.PASS
    assert "closed" in v.judge_injection(go, None, closed=True).summary
    hit = v.judge_injection(go, r("250 2.0.0 Ok"))
    assert hit.status is Status.FAIL and "CVE-2011-0411" in hit.advice
    assert v.judge_injection(go, None, r("250 OK")).status is Status.FAIL


def test_auth_plain() -> None:
    assert v.judge_auth_plain(r("235 2.7.0 Authentication successful")).status is Status.PASS
    bad = v.judge_auth_plain(r("535 5.7.8 invalid"))
    assert bad.status is Status.FAIL and "password" in bad.advice
    assert "PLAIN" in v.judge_auth_plain(r("504 5.5.4 unknown"), ("LOGIN",)).advice


def test_auth_login_only_server_is_a_warning() -> None:
    """Office 365 offers ``250-AUTH LOGIN XOAUTH2`` and answers AUTH PLAIN ``504 5.7.4
    Unrecognized authentication type``: clients log in with LOGIN, so a 235 to LOGIN
    is a warning (it was a fail on the 504)."""
    ok = v.judge_auth_plain(None, ("LOGIN", "XOAUTH2"),
                            r("235 2.7.0 Authentication successful"))
    assert ok.status is Status.WARN and "AUTH PLAIN not offered" in ok.summary
    assert "RFC 4616" in ok.advice
    wrong = v.judge_auth_plain(None, ("LOGIN",), r("535 5.7.3 Authentication unsuccessful"))
    assert wrong.status is Status.FAIL and "password" in wrong.advice


@pytest.mark.parametrize(
    ("reply", "status", "note"),
    [
        ("535 5.7.8 Authentication credentials invalid", Status.PASS, ""),
        ("535 5.7.0 nope", Status.PASS, "5.7.8 expected"),
        # Exchange: 535 with another enhanced code; clients act on 535.
        ("535 5.7.3 Authentication unsuccessful", Status.PASS, "5.7.8 expected"),
        # Refused (secure), but not 535: clients do not ask for new credentials.
        ("550 5.7.1 denied", Status.WARN, "not 535"),
        ("454 4.7.0 Temporary authentication failure", Status.ERROR, ""),
        ("235 2.7.0 Authentication successful", Status.FAIL, ""),
    ],
)
def test_auth_bad_password(reply: str, status: Status, note: str) -> None:
    result = v.judge_auth_bad_password(r(reply))
    assert result.status is status
    assert note in result.summary


def _attempt(form: str, reply: str | None, stage: str = "RCPT") -> v.RelayAttempt:
    return v.RelayAttempt(form, f"{form}@x", stage, r(reply) if reply else None)


def test_relay() -> None:
    refused = [
        _attempt("plain", "550 5.7.1 Relaying denied"),
        _attempt("percent-hack", "554 5.7.1 Relay access denied"),
        _attempt("source-route", "454 4.7.1 Relay access denied"),
    ]
    assert v.judge_relay(refused).status is Status.PASS
    unusual = v.judge_relay([*refused, _attempt("bang-path", "553 5.1.3 malformed")])
    assert unusual.status is Status.PASS and "bang-path 553" in unusual.summary
    at_mail = v.judge_relay([_attempt("plain", "530 5.7.0 Authentication required", "MAIL")])
    assert at_mail.status is Status.PASS
    open_relay = v.judge_relay([*refused, _attempt("quoted-local-part", "250 2.1.5 Ok")])
    assert open_relay.status is Status.FAIL and "quoted-local-part" in open_relay.summary
    assert v.judge_relay([*refused, _attempt("bang-path", "450 4.2.0 greylisted")]).status is (
        Status.ERROR
    )
    assert v.judge_relay([*refused, _attempt("bang-path", None)]).status is Status.ERROR
    assert _attempt("plain", "250 ok").to_dict()["outcome"] == "accepted"


# Postfix 3.7's EHLO after TLS on a submission service that discards ETRN
# (-o smtpd_discard_ehlo_keywords=etrn); by default Postfix lists 250-ETRN after SIZE.
POSTFIX_AFTER_TLS = ("250-mail.ftps-lab.test|250-PIPELINING|250-SIZE 10240000|"
                     "250-AUTH PLAIN LOGIN|250-ENHANCEDSTATUSCODES|250-8BITMIME|250-DSN|"
                     "250-SMTPUTF8|250 CHUNKING")
POSTFIX_DEFAULT_AFTER_TLS = POSTFIX_AFTER_TLS.replace("250-SIZE 10240000|",
                                                      "250-SIZE 10240000|250-ETRN|")


def test_extensions_pass_when_submission_offers_auth_and_every_should() -> None:
    before = parse_ehlo(r("250-mx|250-STARTTLS|250 PIPELINING"))
    after = parse_ehlo(r(POSTFIX_AFTER_TLS))
    result = v.judge_extensions(before, after, "submission")
    assert result.status is Status.PASS, result.summary
    assert "after TLS" in result.summary and "PIPELINING" in result.summary
    assert result.evidence["missing"] == {}
    facts = v.extension_facts(after)
    assert facts["size_limit"] == 10240000 and facts["smtputf8"] and facts["pipelining"]
    assert facts["etrn"] is False
    assert v.judge_extensions(None, None).status is Status.ERROR


def test_extensions_warn_on_etrn_on_submission_only() -> None:
    """RFC 6409 sec. 7: ETRN MUST NOT be offered on submission. Postfix offers it on
    every smtpd by default; harmless, so a warning (it was recorded only)."""
    postfix = parse_ehlo(r(POSTFIX_DEFAULT_AFTER_TLS))
    result = v.judge_extensions(None, postfix, "submission")
    assert result.status is Status.WARN
    assert result.summary == ("ETRN offered after TLS on a submission port (RFC 6409 sec. 7: "
                              "MUST NOT)")
    assert "smtpd_discard_ehlo_keywords=etrn" in result.advice
    assert result.evidence["etrn_on_submission"] is True
    assert v.judge_extensions(None, postfix, "smtp").status is Status.PASS  # fine on 25


def test_extensions_warn_naming_each_missing_should() -> None:
    """aiosmtpd's EHLO after TLS: no PIPELINING, ENHANCEDSTATUSCODES or DSN."""
    after = parse_ehlo(r("250-mx|250-SIZE 1000|250-8BITMIME|250-SMTPUTF8|250 AUTH PLAIN"))
    result = v.judge_extensions(None, after, "submission")
    assert result.status is Status.WARN
    assert result.summary == "not offered after TLS: PIPELINING, ENHANCEDSTATUSCODES, DSN"
    assert "PIPELINING (SHOULD on submission (RFC 6409 sec. 7, RFC 2920))" in result.observed
    assert set(result.evidence["missing"]) == {"PIPELINING", "ENHANCEDSTATUSCODES", "DSN"}
    assert "smtpd_discard_ehlo_keywords" in result.advice
    no_size = parse_ehlo(r(POSTFIX_AFTER_TLS.replace("250-SIZE 10240000|", "")))
    size = v.judge_extensions(None, no_size, "submissions")
    assert size.status is Status.WARN and size.summary.endswith(": SIZE")


def test_extensions_fail_without_auth_after_tls_on_submission_only() -> None:
    no_auth = parse_ehlo(r(POSTFIX_AFTER_TLS.replace("250-AUTH PLAIN LOGIN|", "")))
    for protocol in ("submission", "submissions"):
        result = v.judge_extensions(None, no_auth, protocol)
        assert result.status is Status.FAIL, protocol
        assert result.summary.startswith("no AUTH after TLS on a submission port")
        assert "MUST support AUTH" in result.advice
    # Port 25: AUTH is not asked, DSN not judged; the best-practice four are.
    assert v.judge_extensions(None, no_auth, "smtp").status is Status.PASS
    plain = parse_ehlo(r("250-mx|250-SIZE 0|250 8BITMIME"))
    mta = v.judge_extensions(plain, None, "smtp")
    assert mta.status is Status.WARN
    assert mta.summary == "not offered in plaintext (no TLS): PIPELINING, ENHANCEDSTATUSCODES"
    assert mta.evidence["role"] == "mta"


def test_submit() -> None:
    ok, data = r("250 2.1.0 Ok"), r("250 2.0.0 queued as X")
    assert v.judge_submit(ok, ok, data).status is Status.PASS
    assert v.judge_submit(r("530 5.7.0 auth"), None, None).status is Status.FAIL
    assert v.judge_submit(ok, r("550 5.1.1 unknown"), None).status is Status.FAIL
    assert v.judge_submit(ok, ok, r("554 5.7.1 rejected")).status is Status.FAIL
    sent = b"Message-ID: <a@b>\r\n\r\nbody\r\n"
    assert v.judge_submit(ok, ok, data, sent, sent, checked_mailbox=True).status is Status.PASS
    lost = v.judge_submit(ok, ok, data, None, sent, checked_mailbox=True)
    assert lost.status is Status.FAIL and "not found" in lost.summary
    changed = v.judge_submit(ok, ok, data, sent + b"x", sent, checked_mailbox=True)
    assert changed.status is Status.FAIL and "differ" in changed.summary


def test_mail_before_auth_judges_a_recipient_other_than_postmaster() -> None:
    """Exim's Debian ACL lets postmaster in before AUTH (RFC 5321 sec. 4.5.1) and refuses
    everyone else: a warning, not an accepted RCPT."""
    from harness.checks.smtp_verdicts import is_postmaster, judge_mail_before_auth
    reply = r
    result = judge_mail_before_auth(reply("250 OK"), reply("550 Authentication required"),
                                    postmaster=reply("250 Accepted"))
    assert result.status is Status.WARN, result.describe()
    assert result.replies == ["250 OK", "250 Accepted", "550 Authentication required"]
    assert "postmaster" in result.observed
    accepted = judge_mail_before_auth(reply("250 OK"), reply("250 Accepted"),
                                      postmaster=reply("250 Accepted"))
    assert accepted.status is Status.FAIL
    assert is_postmaster("<PostMaster@example.net>") and not is_postmaster("pm@example.net")

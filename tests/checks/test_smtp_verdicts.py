"""Judging rules of the SMTP checks, on reply fixtures (no sockets)."""

from __future__ import annotations

import pytest

from harness.checks import smtp_verdicts as v
from harness.protocols.smtp import Reply, parse_ehlo, parse_reply
from harness.results import Status


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
    warned = v.judge_certificate_lint([{"severity": "warning", "message": "long validity"}])
    assert warned.status is Status.PASS and "1 note" in warned.summary
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
    if status is Status.PASS and replies[0].startswith("503"):
        assert "rather than 530" in result.summary


def test_mail_before_auth() -> None:
    assert v.judge_mail_before_auth(r("530 5.7.0 Authentication required")).status is Status.PASS
    other = v.judge_mail_before_auth(r("550 5.7.1 no"))
    assert other.status is Status.PASS and "530 is the RFC 4954 code" in other.summary
    assert v.judge_mail_before_auth(r("250 OK")).status is Status.FAIL
    late = v.judge_mail_before_auth(r("250 OK"), r("554 5.7.1 denied"), True)
    assert late.status is Status.PASS
    assert v.judge_mail_before_auth(r("250 OK"), r("554 5.7.1 denied"), False).status is (
        Status.FAIL
    )
    assert v.judge_mail_before_auth(r("250 OK"), r("250 OK"), True).status is Status.FAIL


@pytest.mark.parametrize(
    ("mail", "auth", "status"),
    [
        ("503 5.5.1 Error: send HELO/EHLO first", None, Status.PASS),
        ("250 2.1.0 Ok", None, Status.FAIL),
        ("530 5.7.0 Authentication required", "503 Error: send EHLO first", Status.PASS),
        ("530 5.7.0 Authentication required", "334 ", Status.FAIL),
        ("530 5.7.0 Authentication required", "502 5.5.1 no AUTH", Status.ERROR),
        ("530 5.7.0 Authentication required", None, Status.ERROR),
    ],
)
def test_state_reset(mail: str, auth: str | None, status: Status) -> None:
    assert v.judge_state_reset(r(mail), r(auth) if auth else None).status is status


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


@pytest.mark.parametrize(
    ("reply", "status", "note"),
    [
        ("535 5.7.8 Authentication credentials invalid", Status.PASS, ""),
        ("535 5.7.0 nope", Status.PASS, "5.7.8 expected"),
        ("550 5.7.1 denied", Status.PASS, "535 expected"),
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


POSTFIX_AFTER_TLS = ("250-mail.ftps-lab.test|250-PIPELINING|250-SIZE 10240000|250-ETRN|"
                     "250-AUTH PLAIN LOGIN|250-ENHANCEDSTATUSCODES|250-8BITMIME|250-DSN|"
                     "250-SMTPUTF8|250 CHUNKING")


def test_extensions_pass_when_submission_offers_auth_and_every_should() -> None:
    before = parse_ehlo(r("250-mx|250-STARTTLS|250 PIPELINING"))
    after = parse_ehlo(r(POSTFIX_AFTER_TLS))
    result = v.judge_extensions(before, after, "submission")
    assert result.status is Status.PASS, result.summary
    assert "after TLS" in result.summary and "PIPELINING" in result.summary
    assert result.evidence["missing"] == {}
    facts = v.extension_facts(after)
    assert facts["size_limit"] == 10240000 and facts["smtputf8"] and facts["pipelining"]
    # ETRN is a MUST NOT on submission (RFC 6409 sec. 7) but is only recorded.
    assert facts["etrn"] is True
    assert v.judge_extensions(None, None).status is Status.ERROR


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

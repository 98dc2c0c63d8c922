"""Pure judging for the SMTP checks: parsed replies in, a :class:`CheckResult` out.

Kept free of sockets so each rule (which codes pass, which fail, what is only worth a
note) is unit-tested with reply fixtures. The check functions in
:mod:`harness.checks.smtp` drive a session, then hand what they saw to these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.protocols.smtp import Ehlo, Reply
from harness.results import CheckResult, Status

BANNER = "smtp-banner"
EHLO = "ehlo"
STARTTLS = "starttls"
CERT_TRUST = "smtp-certificate-trust"
CERT_LINT = "smtp-certificate-lint"
AUTH_NOT_BEFORE_TLS = "auth-not-before-tls"
MAIL_BEFORE_AUTH = "mail-before-auth-refused"
STATE_RESET = "starttls-state-reset"
EHLO_AFTER_TLS_AUTH = "ehlo-after-tls-lists-auth"
INJECTION = "starttls-injection"
AUTH_PLAIN = "auth-plain"
AUTH_BAD_PASSWORD = "auth-bad-password"
RELAY_REFUSED = "relay-refused"
EXTENSIONS = "extensions"
SUBMIT = "submit-message"

PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")
RECORDED_EXTENSIONS = (
    "SIZE",
    "8BITMIME",
    "PIPELINING",
    "SMTPUTF8",
    "CHUNKING",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "STARTTLS",
    "AUTH",
    "ETRN",
)


def wire(*replies: Reply | None) -> list[str]:
    """Reply lines as the server wrote them, for ``CheckResult.replies``."""
    lines: list[str] = []
    for reply in replies:
        if reply is not None:
            lines.extend(reply.wire_lines)
    return lines


def _result(check: str, status: Status, summary: str, **fields: Any) -> CheckResult:
    return CheckResult(check=check, status=status, summary=summary, **fields)


def _brief(reply: Reply) -> str:
    return f"{reply.code} {reply.first}".strip()


# -- greeting and EHLO ---------------------------------------------------------------


def judge_banner(banner: Reply) -> CheckResult:
    expected = "a 220 greeting"
    if banner.code == 220:
        return _result(
            BANNER, Status.PASS, f"greeting: {_brief(banner)}",
            expected=expected, observed=_brief(banner), replies=wire(banner),
        )
    advice = (
        "The server refuses service to this client (554); check connection filters."
        if banner.code == 554
        else "A 4xx greeting means the server is overloaded or shutting down; retry later."
    )
    return _result(
        BANNER, Status.FAIL, f"greeting was {banner.code}, not 220",
        expected=expected, observed=_brief(banner), replies=wire(banner), advice=advice,
    )


def judge_ehlo(reply: Reply) -> CheckResult:
    expected = "250 to EHLO with a list of extensions"
    if reply.code == 250:
        keywords = " ".join(line.split()[0] for line in reply.lines[1:] if line.split())
        return _result(
            EHLO, Status.PASS, f"EHLO accepted; extensions: {keywords or 'none'}",
            expected=expected, observed=_brief(reply), replies=wire(reply),
        )
    return _result(
        EHLO, Status.FAIL, f"EHLO answered {reply.code}",
        expected=expected, observed=_brief(reply), replies=wire(reply),
        advice="Enable ESMTP; without EHLO there is no STARTTLS and no AUTH.",
    )


# -- TLS -----------------------------------------------------------------------------


def judge_starttls(
    advertised: bool,
    reply: Reply | None,
    handshake_error: str | None,
    ehlo_after: Reply | None,
    tls: dict[str, Any] | None = None,
) -> CheckResult:
    """STARTTLS advertised, answered 220, handshake done, session usable afterwards."""
    expected = "STARTTLS in EHLO, 220 to STARTTLS, a TLS handshake, then 250 to EHLO"
    replies = wire(reply, ehlo_after)
    if not advertised:
        return _result(
            STARTTLS, Status.FAIL, "STARTTLS is not advertised",
            expected=expected, observed="EHLO reply has no STARTTLS", replies=replies,
            advice="Configure a certificate and enable STARTTLS "
                   "(Postfix: smtpd_tls_security_level = may).",
        )
    if reply is None or reply.code != 220:
        observed = _brief(reply) if reply else "no reply"
        return _result(
            STARTTLS, Status.FAIL, f"STARTTLS answered {observed}",
            expected=expected, observed=observed, replies=replies,
            advice="The server advertises STARTTLS but does not start it; check its TLS keys.",
        )
    if handshake_error:
        return _result(
            STARTTLS, Status.FAIL, f"TLS handshake failed: {handshake_error}",
            expected=expected, observed=f"220, then handshake error: {handshake_error}",
            replies=replies,
            advice="Check the certificate/key pair and the TLS versions and ciphers enabled.",
        )
    if ehlo_after is None or ehlo_after.code != 250:
        observed = _brief(ehlo_after) if ehlo_after else "connection closed"
        return _result(
            STARTTLS, Status.FAIL, f"session unusable after the handshake: {observed}",
            expected=expected, observed=observed, replies=replies,
        )
    version = (tls or {}).get("tls_version", "TLS")
    cipher = (tls or {}).get("cipher", "")
    return _result(
        STARTTLS, Status.PASS, f"STARTTLS works ({version} {cipher})".replace(" )", ")"),
        expected=expected, observed=f"220, {version}, then 250", replies=replies,
    )


def judge_implicit_tls(
    handshake_error: str | None, banner: Reply | None, tls: dict[str, Any] | None = None
) -> CheckResult:
    """Port 465: the handshake comes first, then a 220 greeting inside TLS."""
    expected = "a TLS handshake on connect, then a 220 greeting inside TLS"
    if handshake_error:
        return _result(
            STARTTLS, Status.FAIL, f"implicit TLS handshake failed: {handshake_error}",
            expected=expected, observed=handshake_error,
            advice="Port 465 must speak TLS from the first byte (RFC 8314).",
        )
    if banner is None or banner.code != 220:
        observed = _brief(banner) if banner else "no greeting"
        return _result(
            STARTTLS, Status.FAIL, f"no 220 inside TLS: {observed}",
            expected=expected, observed=observed, replies=wire(banner),
        )
    version = (tls or {}).get("tls_version", "TLS")
    return _result(
        STARTTLS, Status.PASS, f"implicit TLS works ({version})",
        expected=expected, observed=f"{version}, then {_brief(banner)}", replies=wire(banner),
    )


# The same words as the FTPS certificate-trust check's skip.
INSECURE_TRUST_REASON = (
    "target trust is 'insecure': nothing is verified under insecure trust; set ca_file or "
    "pin_sha256 to have the certificate checked"
)


def judge_certificate_trust(error: str | None, kind: str | None, mode: str) -> CheckResult:
    """``kind`` is ``verify`` (chain/host name), ``pin`` or None when trusted."""
    expected = f"certificate trusted ({mode} trust)"
    if error is None:
        return _result(CERT_TRUST, Status.PASS, f"certificate trusted ({mode})",
                       expected=expected, observed="verified")
    advice = (
        "Install a certificate whose chain reaches the configured CA and whose names "
        "cover the host name clients use, or update the pin."
    )
    label = "pin mismatch" if kind == "pin" else "verification failed"
    return _result(
        CERT_TRUST, Status.FAIL, f"certificate not trusted: {label}: {error}",
        expected=expected, observed=error, advice=advice,
    )


def finding_dict(finding: Any) -> dict[str, Any]:
    """A lint finding as a plain dict, whatever shape the linter returns."""
    if isinstance(finding, dict):
        return dict(finding)
    if hasattr(finding, "to_dict"):
        return dict(finding.to_dict())
    return {
        key: getattr(finding, key)
        for key in ("code", "severity", "message", "advice")
        if hasattr(finding, key)
    }


def _severity(finding: dict[str, Any]) -> str:
    value = finding.get("severity", "error")
    return str(getattr(value, "value", value)).lower()


def judge_certificate_lint(findings: list[Any]) -> CheckResult:
    """Fail on findings of severity error; warnings and notes are only evidence."""
    found = [finding_dict(f) for f in findings]
    errors = [f for f in found if _severity(f) in ("error", "fail", "critical")]
    expected = "no certificate lint errors"
    evidence: dict[str, Any] = {"findings": found}
    if errors:
        first = str(errors[0].get("message", errors[0]))
        return _result(
            CERT_LINT, Status.FAIL, f"{len(errors)} certificate problem(s): {first}",
            expected=expected, observed="; ".join(str(f.get("message", f)) for f in errors),
            evidence=evidence, advice=str(errors[0].get("advice", "")),
        )
    observed = f"{len(found)} note(s)" if found else "clean"
    return _result(CERT_LINT, Status.PASS, f"certificate lint clean ({observed})",
                   expected=expected, observed=observed, evidence=evidence)


# -- authentication ------------------------------------------------------------------


def judge_auth_not_before_tls(
    offered: tuple[str, ...], attempts: list[tuple[str, Reply]]
) -> CheckResult:
    """AUTH PLAIN/LOGIN hidden before TLS, and refused (ideally 530) when tried."""
    expected = "no AUTH PLAIN/LOGIN in the pre-TLS EHLO; AUTH before TLS refused with 530"
    replies = wire(*(reply for _, reply in attempts))
    shown = [mech for mech in offered if mech in PASSWORD_MECHANISMS]
    notes: list[str] = []
    failures: list[str] = []
    if shown:
        failures.append(f"pre-TLS EHLO offers AUTH {' '.join(shown)} before STARTTLS")
    for mechanism, reply in attempts:
        if reply.code in (334, 235) or reply.positive:
            failures.append(f"AUTH {mechanism} before TLS answered {reply.code}")
        elif reply.code in (530, 538):
            continue
        else:
            notes.append(f"AUTH {mechanism} refused with {reply.code} rather than 530")
    observed = "; ".join(failures + notes) or "AUTH hidden and refused with 530 before TLS"
    if failures:
        return _result(
            AUTH_NOT_BEFORE_TLS, Status.FAIL, failures[0],
            expected=expected, observed=observed, replies=replies,
            advice="Offer AUTH only after STARTTLS (Postfix: smtpd_tls_auth_only = yes; "
                   "aiosmtpd: auth_require_tls=True).",
        )
    summary = "AUTH not available before TLS"
    if notes:
        summary += " (" + "; ".join(notes) + ")"
    return _result(AUTH_NOT_BEFORE_TLS, Status.PASS, summary,
                   expected=expected, observed=observed, replies=replies)


def judge_mail_before_auth(
    mail: Reply, rcpt: Reply | None = None, accept_refusal_at_rcpt: bool = False
) -> CheckResult:
    expected = "MAIL FROM before AUTH refused with 530 5.7.0"
    if accept_refusal_at_rcpt:
        expected += " (or the recipient refused)"
    replies = wire(mail, rcpt)
    if not mail.positive:
        summary = f"MAIL before AUTH refused with {_brief(mail)}"
        if mail.code != 530:
            summary += " (530 is the RFC 4954 code)"
        return _result(MAIL_BEFORE_AUTH, Status.PASS, summary,
                       expected=expected, observed=_brief(mail), replies=replies)
    if accept_refusal_at_rcpt and rcpt is not None and not rcpt.positive:
        return _result(
            MAIL_BEFORE_AUTH, Status.PASS,
            f"MAIL accepted, but the recipient was refused before AUTH ({rcpt.code})",
            expected=expected, observed=f"MAIL {mail.code}, RCPT {_brief(rcpt)}", replies=replies,
        )
    return _result(
        MAIL_BEFORE_AUTH, Status.FAIL, "MAIL before AUTH accepted",
        expected=expected, observed=_brief(mail), replies=replies,
        advice="Require authentication on the submission port (Postfix master.cf: "
               "-o smtpd_sender_restrictions=reject_sender_login_mismatch,"
               "permit_sasl_authenticated,reject -o smtpd_delay_reject=no; without the "
               "latter Postfix defers the refusal to RCPT); if the server only refuses at "
               "RCPT time by design, set the check parameter accept_refusal_at_rcpt.",
    )


def judge_state_reset(mail: Reply, auth: Reply | None = None) -> CheckResult:
    """After STARTTLS the server must forget the pre-TLS EHLO (RFC 3207 4.2)."""
    expected = "after the handshake, MAIL without a new EHLO refused with 503"
    replies = wire(mail, auth)
    advice = ("Discard all pre-TLS session state after STARTTLS, as RFC 3207 4.2 requires; "
              "a server that accepts MAIL without any EHLO fails this too (Postfix: "
              "smtpd_helo_required = yes).")
    if mail.code == 503:
        return _result(STATE_RESET, Status.PASS, "server asked for a new EHLO after STARTTLS",
                       expected=expected, observed=_brief(mail), replies=replies)
    if mail.positive:
        return _result(
            STATE_RESET, Status.FAIL, "MAIL accepted after STARTTLS without a new EHLO",
            expected=expected, observed=_brief(mail), replies=replies, advice=advice,
        )
    if auth is None:
        return _result(
            STATE_RESET, Status.ERROR,
            f"MAIL refused with {mail.code}, which does not show whether EHLO state was kept",
            expected=expected, observed=_brief(mail), replies=replies,
        )
    if auth.code == 503:
        return _result(
            STATE_RESET, Status.PASS,
            f"MAIL refused ({mail.code}) and AUTH without a new EHLO refused with 503",
            expected=expected, observed=f"MAIL {mail.code}, AUTH {_brief(auth)}", replies=replies,
        )
    if auth.code == 334 or auth.positive:
        return _result(
            STATE_RESET, Status.FAIL,
            "AUTH accepted after STARTTLS without a new EHLO: pre-TLS state kept",
            expected=expected, observed=f"MAIL {mail.code}, AUTH {_brief(auth)}",
            replies=replies, advice=advice,
        )
    return _result(
        STATE_RESET, Status.ERROR,
        f"inconclusive: MAIL {mail.code}, AUTH {auth.code} after STARTTLS",
        expected=expected, observed=f"MAIL {_brief(mail)}; AUTH {_brief(auth)}", replies=replies,
    )


def judge_ehlo_after_tls_lists_auth(ehlo: Ehlo, reply: Reply | None = None) -> CheckResult:
    expected = "AUTH PLAIN or LOGIN in the EHLO reply after TLS"
    mechanisms = ehlo.auth_mechanisms
    usable = [mech for mech in mechanisms if mech in PASSWORD_MECHANISMS]
    observed = f"AUTH {' '.join(mechanisms)}" if mechanisms else "no AUTH keyword"
    if usable:
        return _result(EHLO_AFTER_TLS_AUTH, Status.PASS, f"after TLS the server offers {observed}",
                       expected=expected, observed=observed, replies=wire(reply))
    return _result(
        EHLO_AFTER_TLS_AUTH, Status.FAIL, f"after TLS: {observed}",
        expected=expected, observed=observed, replies=wire(reply),
        advice="Enable SASL AUTH (PLAIN, LOGIN) for TLS sessions on the submission port.",
    )


def judge_injection(
    starttls: Reply,
    unsolicited: Reply | None,
    extra_after_ehlo: Reply | None = None,
    closed: bool = False,
) -> CheckResult:
    """CVE-2011-0411: nothing pipelined after STARTTLS may be answered inside TLS."""
    expected = "no reply inside TLS to the NOOP pipelined after STARTTLS"
    replies = wire(starttls, unsolicited, extra_after_ehlo)
    advice = ("Discard the plaintext input buffer when TLS starts (CVE-2011-0411); "
              "upgrade the MTA.")
    if unsolicited is not None or extra_after_ehlo is not None:
        reply = unsolicited or extra_after_ehlo
        assert reply is not None
        return _result(
            INJECTION, Status.FAIL,
            f"plaintext command injected before TLS was answered inside TLS ({reply.code})",
            expected=expected, observed=_brief(reply), replies=replies, advice=advice,
        )
    summary = "pipelined plaintext discarded at STARTTLS"
    if closed:
        summary += " (the server closed the session)"
    return _result(INJECTION, Status.PASS, summary, expected=expected,
                   observed="no reply before our first TLS command", replies=replies)


def judge_auth_plain(reply: Reply, offered: tuple[str, ...] = ()) -> CheckResult:
    expected = "235 to AUTH PLAIN (RFC 4616) with the configured credentials"
    if reply.code == 235:
        return _result(AUTH_PLAIN, Status.PASS, "AUTH PLAIN accepted",
                       expected=expected, observed=_brief(reply), replies=wire(reply))
    if reply.code == 504 or (offered and "PLAIN" not in offered):
        advice = "Enable the PLAIN mechanism for TLS sessions."
    elif reply.code == 535:
        advice = "Check the user name and password (and the account's submission rights)."
    else:
        advice = "Check the SASL backend (Postfix: smtpd_sasl_type, Dovecot auth socket)."
    return _result(
        AUTH_PLAIN, Status.FAIL, f"AUTH PLAIN answered {reply.code}",
        expected=expected, observed=_brief(reply), replies=wire(reply), advice=advice,
    )


def judge_auth_bad_password(reply: Reply) -> CheckResult:
    expected = "535 5.7.8 to AUTH with a wrong password"
    observed = _brief(reply)
    if reply.code == 535:
        summary = "wrong password refused"
        if reply.enhanced not in (None, "5.7.8"):
            summary += f" (enhanced code {reply.enhanced}, 5.7.8 expected)"
        return _result(AUTH_BAD_PASSWORD, Status.PASS, summary,
                       expected=expected, observed=observed, replies=wire(reply))
    if reply.transient:
        return _result(
            AUTH_BAD_PASSWORD, Status.ERROR, f"temporary failure {reply.code}, no verdict",
            expected=expected, observed=observed, replies=wire(reply),
        )
    if reply.permanent:
        return _result(
            AUTH_BAD_PASSWORD, Status.PASS,
            f"wrong password refused with {reply.code} (535 expected)",
            expected=expected, observed=observed, replies=wire(reply),
        )
    return _result(
        AUTH_BAD_PASSWORD, Status.FAIL, f"AUTH with a wrong password answered {reply.code}",
        expected=expected, observed=observed, replies=wire(reply),
        advice="The server accepts any password: fix the authentication backend now.",
    )


# -- relaying ------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayAttempt:
    """One relay probe: address form, the step that decided, and the reply."""

    form: str
    address: str
    stage: str  # "MAIL" or "RCPT"
    reply: Reply | None  # None: not tried (session ended)

    @property
    def outcome(self) -> str:
        return classify_relay_reply(self.reply)

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "address": self.address,
            "stage": self.stage,
            "reply": str(self.reply) if self.reply else None,
            "outcome": self.outcome,
        }


def classify_relay_reply(reply: Reply | None) -> str:
    """``accepted`` (2xx), ``refused`` (5xx, 454, 530) or ``inconclusive``."""
    if reply is None:
        return "inconclusive"
    if reply.positive or reply.intermediate:
        return "accepted"
    if reply.permanent or reply.code == 454:
        return "refused"
    return "inconclusive"


def judge_relay(attempts: list[RelayAttempt]) -> CheckResult:
    expected = "every relay attempt refused (550/554 5.7.1, or 454)"
    replies = [f"{a.form}: {a.reply}" for a in attempts if a.reply is not None]
    accepted = [a for a in attempts if a.outcome == "accepted"]
    open_forms = [a for a in attempts if a.outcome == "inconclusive"]
    observed = "; ".join(f"{a.form} -> {a.reply.code if a.reply else 'not tried'}"
                         for a in attempts)
    if accepted:
        names = ", ".join(a.form for a in accepted)
        return _result(
            RELAY_REFUSED, Status.FAIL, f"OPEN RELAY: recipient accepted ({names})",
            expected=expected, observed=observed, replies=replies,
            advice="Refuse relaying for unauthenticated clients (Postfix: "
                   "smtpd_relay_restrictions = permit_sasl_authenticated, "
                   "reject_unauth_destination; allow_percent_hack = no).",
        )
    if open_forms:
        return _result(
            RELAY_REFUSED, Status.ERROR,
            f"no verdict for {', '.join(a.form for a in open_forms)}",
            expected=expected, observed=observed, replies=replies,
        )
    unusual = [a for a in attempts if a.reply is not None and not _is_relay_refusal(a.reply)]
    summary = f"relaying refused for all {len(attempts)} address forms"
    if unusual:
        summary += " (unusual codes: " + ", ".join(
            f"{a.form} {a.reply.code}" for a in unusual if a.reply) + ")"
    return _result(RELAY_REFUSED, Status.PASS, summary,
                   expected=expected, observed=observed, replies=replies)


def _is_relay_refusal(reply: Reply) -> bool:
    return reply.code == 454 or reply.code == 530 or (
        reply.code in (550, 554) and reply.enhanced in (None, "5.7.1")
    )


# -- extensions and delivery ---------------------------------------------------------


def extension_facts(ehlo: Ehlo | None) -> dict[str, Any]:
    """The extensions that matter for submission, as evidence."""
    if ehlo is None:
        return {}
    facts: dict[str, Any] = {key.lower(): ehlo.has(key) for key in RECORDED_EXTENSIONS}
    facts["size_limit"] = ehlo.size_limit
    facts["auth_mechanisms"] = list(ehlo.auth_mechanisms)
    return facts


# What a server should offer in its final EHLO (after TLS where there is TLS), and why.
# RFC 6409 sec. 7 lists each extension's status on the submission port; SIZE is a MAY
# there but counts as best practice: without it a client learns the limit only after
# sending the whole message. On port 25 (an MTA) the same four are best practice for
# any modern MTA (RFC 2920, RFC 6152, RFC 2034, RFC 1870); DSN and AUTH are not asked.
SUBMISSION_SHOULD: dict[str, str] = {
    "PIPELINING": "SHOULD on submission (RFC 6409 sec. 7, RFC 2920)",
    "ENHANCEDSTATUSCODES": "SHOULD on submission (RFC 6409 sec. 7, RFC 2034)",
    "8BITMIME": "SHOULD on submission (RFC 6409 sec. 7, RFC 6152)",
    "DSN": "SHOULD on submission (RFC 6409 sec. 7, RFC 3461)",
    "SIZE": "MAY in RFC 6409 sec. 7, best practice: the limit known before DATA (RFC 1870)",
}
MTA_SHOULD: dict[str, str] = {
    "PIPELINING": "best practice for an MTA (RFC 2920)",
    "ENHANCEDSTATUSCODES": "best practice for an MTA (RFC 2034)",
    "8BITMIME": "best practice for an MTA (RFC 6152)",
    "SIZE": "best practice for an MTA: the limit known before DATA (RFC 1870)",
}
ADVICE_EXTENSIONS = (
    "Offer the missing extensions; they are on by default in the common servers, so look "
    "for what removes them: Postfix: smtpd_discard_ehlo_keywords (main.cf, or -o in the "
    "master.cf service); Exim: pipelining_advertise_hosts, accept_8bitmime; Exchange: the "
    "receive connector's EnhancedStatusCodesEnabled, PipeliningEnabled, "
    "EightBitMimeEnabled, DeliveryStatusNotificationEnabled; or a proxy in front that "
    "filters EHLO."
)
ADVICE_AUTH_MISSING = (
    "A submission server MUST support AUTH (RFC 6409 sec. 4.3 and 7, RFC 4954): enable "
    "SASL inside TLS on this port (Postfix master.cf: -o smtpd_sasl_auth_enable=yes; "
    "Exim: an authenticator with server_advertise_condition = ${if def:tls_in_cipher}; "
    "Exchange: the client receive connector with Basic authentication after TLS)."
)


def judge_extensions(
    before_tls: Ehlo | None, after_tls: Ehlo | None, protocol: str = "submission"
) -> CheckResult:
    """Judge the final EHLO (after TLS where there is TLS) against what the port needs.

    Submission (587, 465): no AUTH after TLS fails, because a submission server MUST
    support AUTH and clients cannot submit without it; each missing SHOULD of RFC 6409
    sec. 7 (and SIZE) is a warning naming it. Port 25: the best-practice four warn, AUTH
    is not asked. ETRN (MUST NOT on submission) and SMTPUTF8 are recorded only.
    """
    final = after_tls or before_tls
    if final is None:
        return _result(EXTENSIONS, Status.ERROR, "no EHLO reply to read extensions from")
    submission = protocol in ("submission", "submissions")
    wanted = SUBMISSION_SHOULD if submission else MTA_SHOULD
    where = "after TLS" if after_tls is not None else "in plaintext (no TLS)"
    present = [key for key in RECORDED_EXTENSIONS if final.has(key)]
    missing = {key: why for key, why in wanted.items() if not final.has(key)}
    evidence: dict[str, Any] = {"role": "submission" if submission else "mta",
                                "judged": where, "missing": missing}
    expected = (
        "AUTH (MUST) and " if submission else ""
    ) + f"{', '.join(wanted)} in the EHLO reply {where}"
    offered = f"offered {where}: {' '.join(present) or 'none of the recorded extensions'}"
    if submission and not final.auth_mechanisms:
        return _result(
            EXTENSIONS, Status.FAIL,
            f"no AUTH {where} on a submission port: clients cannot authenticate to submit",
            expected=expected, observed=offered, evidence=evidence,
            advice=ADVICE_AUTH_MISSING,
        )
    if missing:
        names = ", ".join(missing)
        return _result(
            EXTENSIONS, Status.WARN, f"not offered {where}: {names}",
            expected=expected,
            observed=offered + "; missing: "
            + "; ".join(f"{key} ({why})" for key, why in missing.items()),
            evidence=evidence, advice=ADVICE_EXTENSIONS,
        )
    summary = f"extensions {where}: {' '.join(present)}"
    return _result(EXTENSIONS, Status.PASS, summary, expected=expected, observed=offered,
                   evidence=evidence)


def judge_submit(
    mail: Reply,
    rcpt: Reply | None,
    data: Reply | None,
    delivered: bytes | None = None,
    sent: bytes | None = None,
    checked_mailbox: bool = False,
) -> CheckResult:
    """250 to DATA; with a mailbox at hand, the stored bytes must equal the sent ones."""
    expected = "250 to MAIL, RCPT and the end of DATA"
    if checked_mailbox:
        expected += ", and the same bytes in the mailbox"
    replies = wire(mail, rcpt, data)
    for step, reply in (("MAIL", mail), ("RCPT", rcpt), ("DATA", data)):
        if reply is None or not reply.positive:
            observed = f"{step}: {_brief(reply) if reply else 'not sent'}"
            return _result(SUBMIT, Status.FAIL, f"message refused at {observed}",
                           expected=expected, observed=observed, replies=replies)
    assert data is not None
    if checked_mailbox:
        if delivered is None:
            return _result(
                SUBMIT, Status.FAIL, "accepted with 250 but not found in the mailbox",
                expected=expected, observed=_brief(data), replies=replies,
            )
        if sent is not None and delivered != sent:
            return _result(
                SUBMIT, Status.FAIL, "delivered bytes differ from the bytes sent",
                expected=expected, observed=f"{len(delivered)} octets stored, {len(sent)} sent",
                replies=replies,
            )
        return _result(SUBMIT, Status.PASS, "message accepted and delivered byte for byte",
                       expected=expected, observed=_brief(data), replies=replies)
    return _result(SUBMIT, Status.PASS, f"message accepted: {_brief(data)}",
                   expected=expected, observed=_brief(data), replies=replies)

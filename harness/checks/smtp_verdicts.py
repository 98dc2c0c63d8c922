"""Pure judging for the SMTP checks: parsed replies in, a :class:`CheckResult` out.

Kept free of sockets so each rule (which codes pass, which fail, what is only worth a
note) is unit-tested with reply fixtures. The check functions in
:mod:`harness.checks.smtp` drive a session, then hand what they saw to these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks import identify
from harness.protocols.smtp import Ehlo, Reply
from harness.results import CheckResult, SkipKind, Status

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
            advice=identify.generic("smtp-starttls"),
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
    """Fail on findings of severity error; warn on warnings (a CA certificate as leaf, no
    digitalSignature: valid and working today, off best practice); notes (info, e.g.
    self-signed) are only evidence, and so is "expires in N days": the expiry watch
    (harness/checks/expiry.py) judges the days left with the target's thresholds."""
    found = [finding_dict(f) for f in findings]
    errors = [f for f in found if _severity(f) in ("error", "fail", "critical")]
    warnings = [f for f in found if _severity(f) == "warning"
                and f.get("code") not in ("expires-soon",)]
    expected = "no certificate lint errors or warnings"
    evidence: dict[str, Any] = {"findings": found}
    if errors:
        first = str(errors[0].get("message", errors[0]))
        return _result(
            CERT_LINT, Status.FAIL, f"{len(errors)} certificate problem(s): {first}",
            expected=expected, observed="; ".join(str(f.get("message", f)) for f in errors),
            evidence=evidence, advice=str(errors[0].get("advice", "")),
        )
    if warnings:
        first = str(warnings[0].get("message", warnings[0]))
        return _result(
            CERT_LINT, Status.WARN, f"{len(warnings)} certificate warning(s): {first}",
            expected=expected,
            observed="; ".join(str(f.get("message", f)) for f in warnings),
            evidence=evidence, advice=str(warnings[0].get("advice", "")),
        )
    observed = f"{len(found)} note(s)" if found else "clean"
    return _result(CERT_LINT, Status.PASS, f"certificate lint clean ({observed})",
                   expected=expected, observed=observed, evidence=evidence)


# -- authentication ------------------------------------------------------------------


def judge_auth_not_before_tls(
    offered: tuple[str, ...], attempts: list[tuple[str, Reply]]
) -> CheckResult:
    """AUTH PLAIN/LOGIN hidden before TLS, and refused when tried.

    Any refusal passes: 538 is RFC 4954's own code (encryption required for the
    mechanism), 530 RFC 3207's, and 502/503/504 are right for an AUTH the server does
    not offer in plaintext (Postfix on 25: ``503 5.5.1 Error: authentication not
    enabled``). Offering PLAIN/LOGIN before TLS fails even when the attempt is refused:
    a client sends AUTH PLAIN with its credentials in the same line.
    """
    expected = "no AUTH PLAIN/LOGIN in the pre-TLS EHLO; AUTH before TLS refused"
    replies = wire(*(reply for _, reply in attempts))
    shown = [mech for mech in offered if mech in PASSWORD_MECHANISMS]
    refusals: list[str] = []
    failures: list[str] = []
    if shown:
        failures.append(f"pre-TLS EHLO offers AUTH {' '.join(shown)} before STARTTLS")
    for mechanism, reply in attempts:
        if reply.code in (334, 235) or reply.positive:
            failures.append(f"AUTH {mechanism} before TLS answered {reply.code}")
        else:
            refusals.append(f"AUTH {mechanism} {reply.code}")
    observed = "; ".join(failures) or ("AUTH hidden, and refused before TLS: "
                                       + ", ".join(refusals))
    if failures:
        return _result(
            AUTH_NOT_BEFORE_TLS, Status.FAIL, failures[0],
            expected=expected, observed=observed, replies=replies,
            advice=identify.generic("smtp-auth-after-tls"),
        )
    summary = "AUTH not available before TLS"
    if refusals:
        summary += " (refused: " + ", ".join(refusals) + ")"
    return _result(AUTH_NOT_BEFORE_TLS, Status.PASS, summary,
                   expected=expected, observed=observed, replies=replies)


NOT_POSTMASTER = "ftps-lab-probe@"  # the local part asked for instead of postmaster


def is_postmaster(address: str) -> bool:
    """True for ``postmaster`` (any case, any domain, or bare): RFC 5321 sec. 4.5.1 makes
    servers accept it whatever their other rules say."""
    return address.strip("<>").rpartition("@")[0 if "@" in address else 2].lower() == (
        "postmaster")


def judge_mail_before_auth(
    mail: Reply, rcpt: Reply | None = None, accept_refusal_at_rcpt: bool = False,
    *, postmaster: Reply | None = None,
) -> CheckResult:
    """Before AUTH nothing may enter through a submission port (RFC 6409 sec. 4.3).

    MAIL refused with 530 (RFC 4954 sec. 6): pass. MAIL refused with another code:
    a warning (secure; the client reports "sender rejected" instead of "authentication
    required"). MAIL accepted but the unauthenticated recipient refused: a warning, no
    mail can enter (Postfix with the default smtpd_delay_reject=yes: ``554 5.7.1
    <postmaster@...>: Recipient address rejected: Access denied``). An accepted RCPT
    fails: the server takes mail without AUTH. ``accept_refusal_at_rcpt`` is accepted
    and ignored: a refusal at RCPT is always this warning now.
    """
    del accept_refusal_at_rcpt  # no longer changes anything; kept for old scenarios
    expected = "MAIL FROM before AUTH refused with 530 5.7.0 Authentication required"
    replies = wire(mail, postmaster, rcpt)
    advice = identify.generic("smtp-mail-before-auth")
    if not mail.positive and not mail.intermediate:
        if mail.code == 530:
            return _result(MAIL_BEFORE_AUTH, Status.PASS,
                           f"MAIL before AUTH refused with {_brief(mail)}",
                           expected=expected, observed=_brief(mail), replies=replies)
        return _result(
            MAIL_BEFORE_AUTH, Status.WARN,
            f"MAIL before AUTH refused with {mail.code}, not 530 (RFC 4954 sec. 6): "
            "nothing enters, but clients report a rejected sender instead of "
            "'authentication required'",
            expected=expected, observed=_brief(mail), replies=replies, advice=advice,
        )
    if rcpt is None:
        return _result(
            MAIL_BEFORE_AUTH, Status.ERROR,
            f"MAIL before AUTH accepted ({mail.code}) and no recipient was tried: no "
            "verdict on whether mail can enter",
            expected=expected, observed=_brief(mail), replies=replies,
        )
    observed = f"MAIL {_brief(mail)}; RCPT {_brief(rcpt)}"
    if postmaster is not None:
        # Judged on the other local part; postmaster's own answer is only reported.
        observed = (f"MAIL {_brief(mail)}; RCPT postmaster {_brief(postmaster)} (RFC 5321 "
                    f"sec. 4.5.1 lets it in); RCPT {NOT_POSTMASTER}… {_brief(rcpt)}")
    if rcpt.positive or rcpt.intermediate:
        return _result(
            MAIL_BEFORE_AUTH, Status.FAIL,
            f"unauthenticated MAIL and RCPT accepted ({mail.code}, {rcpt.code}): the "
            "submission port takes mail without AUTH",
            expected=expected, observed=observed, replies=replies, advice=advice,
        )
    if postmaster is not None and _unknown_recipient(rcpt):
        return _result(
            MAIL_BEFORE_AUTH, Status.WARN,
            f"MAIL before AUTH accepted ({mail.code}); postmaster accepted, as RFC 5321 "
            f"sec. 4.5.1 requires, and the other local part refused as unknown "
            f"({_brief(rcpt)}): not proven that AUTH is required; set the target's "
            "rcpt_to to an existing mailbox other than postmaster",
            expected=expected, observed=observed, replies=replies, advice=advice,
        )
    return _result(
        MAIL_BEFORE_AUTH, Status.WARN,
        f"MAIL before AUTH accepted ({mail.code}), the recipient refused "
        f"({_brief(rcpt)}): no mail enters without AUTH, but RFC 6409 sec. 4.3 asks for "
        "the refusal at MAIL (530)",
        expected=expected, observed=observed, replies=replies, advice=advice,
    )


_UNKNOWN_RECIPIENT = ("unknown", "unrouteable", "no such", "does not exist", "not found")


def _unknown_recipient(reply: Reply) -> bool:
    """A refusal that names the recipient as unknown (5.1.1 or words), not a policy."""
    text = " ".join(reply.lines).lower()
    return "5.1.1" in text or any(words in text for words in _UNKNOWN_RECIPIENT)


@dataclass(frozen=True)
class ResetProbe:
    """One command sent right after a TLS handshake with no EHLO after it, in three
    sessions: after an EHLO before STARTTLS (the session under test), with no EHLO at
    all (STARTTLS first), and with a new EHLO after the handshake. Only when the two
    baselines differ does the command depend on EHLO state; then the session under test
    answering like the no-EHLO session shows the pre-TLS EHLO was forgotten (RFC 3207
    sec. 4.2), answering like the new-EHLO session shows it survived."""

    command: str
    after_pre_tls_ehlo: Reply | None
    without_ehlo: Reply | None = None
    with_new_ehlo: Reply | None = None

    def outcome(self) -> tuple[str, str]:
        """(``reset`` | ``kept`` | ``undecided``, why)."""
        test, bare, fresh = self.after_pre_tls_ehlo, self.without_ehlo, self.with_new_ehlo
        cmd = self.command
        if test is None:
            return "undecided", f"{cmd} not sent"
        if bare is not None and fresh is not None:
            if bare.code == fresh.code:
                return "undecided", (f"{cmd} is answered {bare.code} with or without EHLO, "
                                     "so its answer says nothing about EHLO state")
            if test.code == bare.code:
                return "reset", (f"{cmd} answered {_brief(test)}, as in a session without "
                                 f"any EHLO (after a new EHLO: {fresh.code})")
            if test.code == fresh.code:
                said = (f"accepted ({_brief(test)})" if test.positive or test.intermediate
                        else f"answered {_brief(test)}")
                return "kept", (f"{cmd} after STARTTLS without a new EHLO {said}, as after "
                                f"an EHLO; a session without any EHLO gets {bare.code}")
            return "undecided", (f"{cmd} answered {test.code}, neither {bare.code} (no EHLO) "
                                 f"nor {fresh.code} (new EHLO)")
        if test.code == 503:  # no baseline: only a bad-sequence refusal speaks for itself
            return "reset", f"{cmd} refused as a bad sequence: {_brief(test)}"
        return "undecided", f"{cmd} answered {test.code} and no baseline session could be run"

    def to_dict(self) -> dict[str, Any]:
        outcome, why = self.outcome()
        return {
            "after_pre_tls_ehlo": str(self.after_pre_tls_ehlo or ""),
            "without_ehlo": str(self.without_ehlo or ""),
            "with_new_ehlo": str(self.with_new_ehlo or ""),
            "outcome": outcome,
            "why": why,
        }


@dataclass(frozen=True)
class TransactionProbe:
    """MAIL FROM before STARTTLS, then RCPT right after the handshake (no EHLO, no
    MAIL): a server that discarded its state (RFC 3207 sec. 4.2: MUST) answers 503
    (no MAIL, or no EHLO); one that kept the transaction takes the recipient."""

    mail_before_tls: Reply | None
    starttls: Reply | None = None
    rcpt_after_tls: Reply | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def outcome(self) -> tuple[str, str]:
        mail, rcpt = self.mail_before_tls, self.rcpt_after_tls
        if mail is None or not mail.positive:
            said = _brief(mail) if mail is not None else "not sent"
            return "undecided", f"MAIL before STARTTLS refused ({said}): no transaction to carry"
        if rcpt is None:
            said = _brief(self.starttls) if self.starttls is not None else "no STARTTLS"
            return "undecided", f"no RCPT after the handshake ({said})"
        if rcpt.code == 503:
            return "reset", (f"RCPT without MAIL after STARTTLS answered {_brief(rcpt)}: the "
                             f"pre-TLS transaction (MAIL {mail.code}) was discarded")
        if rcpt.positive or rcpt.intermediate:
            return "kept", (f"RCPT without MAIL after STARTTLS accepted ({_brief(rcpt)}): "
                            f"the pre-TLS transaction (MAIL {mail.code}) survived")
        return "undecided", f"RCPT after STARTTLS answered {_brief(rcpt)}, not 503"

    def to_dict(self) -> dict[str, Any]:
        outcome, why = self.outcome()
        return {
            "mail_before_tls": str(self.mail_before_tls or ""),
            "starttls": str(self.starttls or ""),
            "rcpt_after_tls": str(self.rcpt_after_tls or ""),
            "outcome": outcome,
            "why": why,
        }


def judge_state_reset(
    probes: Sequence[ResetProbe], transaction: TransactionProbe | None = None
) -> CheckResult:
    """RFC 3207 sec. 4.2: after STARTTLS the server MUST discard what it knew before.

    Fail only with proof that pre-TLS state survived (a command answered as after an
    EHLO where a session without EHLO is answered otherwise; a recipient taken for a
    MAIL sent before the handshake). Pass on proof of the reset. When no probe can tell
    (the server answers the same with or without EHLO, and refuses MAIL before TLS),
    the check could not run: a skip with the hardening that would make it decidable.
    """
    expected = ("after STARTTLS, commands without a new EHLO answered as in a session "
                "without EHLO (503), and no pre-TLS transaction left")
    outcomes = [(p, *p.outcome()) for p in probes]
    evidence: dict[str, Any] = {"state_reset": {p.command: p.to_dict() for p in probes}}
    replies = wire(*(p.after_pre_tls_ehlo for p in probes))
    if transaction is not None:
        evidence["state_reset"]["transaction"] = transaction.to_dict()
        replies += wire(transaction.mail_before_tls, transaction.rcpt_after_tls)
        outcomes.append((transaction, *transaction.outcome()))
    observed = "; ".join(why for _, _, why in outcomes) or "nothing probed"
    kept = [why for _, outcome, why in outcomes if outcome == "kept"]
    if kept:
        return _result(
            STATE_RESET, Status.FAIL, "pre-TLS state survived STARTTLS: " + "; ".join(kept),
            expected=expected, observed=observed, replies=replies, evidence=evidence,
            advice="Discard all pre-TLS session state after STARTTLS, as RFC 3207 4.2 "
                   "requires (EHLO argument, MAIL transaction, AUTH): upgrade the server.",
        )
    reset = [(probe, why) for probe, outcome, why in outcomes if outcome == "reset"]
    if reset:
        by_ehlo = any(isinstance(probe, ResetProbe) for probe, _ in reset)
        summary = ("server asked for a new EHLO after STARTTLS" if by_ehlo
                   else "the pre-TLS MAIL transaction was discarded at STARTTLS")
        return _result(
            STATE_RESET, Status.PASS, f"{summary} ({reset[0][1]})",
            expected=expected, observed=observed, replies=replies, evidence=evidence,
        )
    return _result(
        STATE_RESET, Status.SKIP,
        "no probe can tell whether pre-TLS state survives STARTTLS here: " + observed,
        expected=expected, observed=observed, replies=replies, evidence=evidence,
        advice=identify.generic("smtp-helo-required"), skip_kind=SkipKind.COULD_NOT_RUN,
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


def judge_auth_plain(
    reply: Reply | None, offered: tuple[str, ...] = (), login: Reply | None = None
) -> CheckResult:
    """AUTH PLAIN (RFC 4616) with the configured credentials gets 235.

    A server that offers LOGIN but no PLAIN (Exchange, Office 365: ``250-AUTH LOGIN
    XOAUTH2``) is not sent PLAIN; ``login`` is its answer to AUTH LOGIN with the same
    credentials. 235 there is a warning: every client logs in (they negotiate LOGIN),
    PLAIN, the standard mechanism, is what is missing.
    """
    expected = "235 to AUTH PLAIN (RFC 4616) with the configured credentials"
    if reply is not None and reply.code == 235:
        return _result(AUTH_PLAIN, Status.PASS, "AUTH PLAIN accepted",
                       expected=expected, observed=_brief(reply), replies=wire(reply))
    if reply is None and login is not None:
        mechanisms = " ".join(offered) or "none"
        if login.code == 235:
            return _result(
                AUTH_PLAIN, Status.WARN,
                f"AUTH PLAIN not offered (AUTH {mechanisms}); AUTH LOGIN with the same "
                "credentials accepted",
                expected=expected, observed=f"AUTH LOGIN: {_brief(login)}",
                replies=wire(login), advice=identify.generic("smtp-auth-login-only"),
            )
        advice = ("Check the user name and password (and the account's submission rights)."
                  if login.code == 535 else
                  "Check the SASL backend (Postfix: smtpd_sasl_type, Dovecot auth socket).")
        return _result(
            AUTH_PLAIN, Status.FAIL,
            f"AUTH PLAIN not offered (AUTH {mechanisms}), and AUTH LOGIN answered {login.code}",
            expected=expected, observed=f"AUTH LOGIN: {_brief(login)}", replies=wire(login),
            advice=advice,
        )
    if reply is None:
        return _result(AUTH_PLAIN, Status.ERROR, "no AUTH attempt was made",
                       expected=expected)
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
        # Refused, so secure; but RFC 4954 sec. 6 has clients ask for new credentials
        # on 535 only: another code reads as a server fault, not a wrong password.
        return _result(
            AUTH_BAD_PASSWORD, Status.WARN,
            f"wrong password refused with {reply.code}, not 535: clients do not read it "
            "as a wrong password (RFC 4954 sec. 6)",
            expected=expected, observed=observed, replies=wire(reply),
            advice="Answer a failed AUTH with 535 5.7.8 Authentication credentials "
                   "invalid (RFC 4954 sec. 6); check the SASL backend's error mapping.",
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
            advice=identify.generic("smtp-relay"),
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
ADVICE_EXTENSIONS = identify.generic("smtp-extensions")
ADVICE_AUTH_MISSING = identify.generic("smtp-auth-missing")
ADVICE_ETRN = identify.generic("smtp-etrn")


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
    # RFC 6409 sec. 7: ETRN MUST NOT be offered on submission. Harmless (it only asks
    # for a queue run), so a warning: Postfix offers it on every smtpd by default.
    etrn = submission and final.has("ETRN")
    evidence["etrn_on_submission"] = etrn
    if missing or etrn:
        problems = []
        notes = []
        advice = []
        if missing:
            problems.append(f"not offered {where}: {', '.join(missing)}")
            notes.append("missing: " + "; ".join(f"{key} ({why})"
                                                 for key, why in missing.items()))
            advice.append(ADVICE_EXTENSIONS)
        if etrn:
            problems.append(f"ETRN offered {where} on a submission port (RFC 6409 sec. 7: "
                            "MUST NOT)")
            notes.append("ETRN offered (MUST NOT on submission, RFC 6409 sec. 7)")
            advice.append(ADVICE_ETRN)
        return _result(
            EXTENSIONS, Status.WARN, "; ".join(problems),
            expected=expected + (" and no ETRN" if submission else ""),
            observed=offered + "; " + "; ".join(notes),
            evidence=evidence, advice=" ".join(advice),
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

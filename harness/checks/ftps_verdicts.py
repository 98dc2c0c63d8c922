"""Pure judging for the FTPS checks: parsed replies and transfer records in, a verdict out.

Kept free of sockets so every rule (which vendor codes pass, what is only a note, which
server setting to change) is unit-tested with reply fixtures. The check functions in
:mod:`harness.checks.ftps` drive :class:`~harness.protocols.ftps_client.FTPSClient`,
then hand what they saw to these functions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks import identify
from harness.protocols.ftp import Features, Reply
from harness.protocols.ftps_client import Passive, Transfer
from harness.results import CheckResult, SkipKind, Status

BANNER = "banner"
FEAT_AUTH_TLS = "feat-auth-tls"
AUTH_TLS = "auth-tls"
CERT_TRUST = "certificate-trust"
CERT_LINT = "certificate-lint"
LEGACY_TLS = "legacy-tls-refused"
PBSZ_BEFORE_AUTH = "pbsz-before-auth-refused"
PBSZ_PROT = "pbsz-prot-p"
LOGIN = "login"
PLAINTEXT_LOGIN = "plaintext-login-refused"
PROT_C = "prot-c-refused"
PASV_ADDRESS = "pasv-address"
EPSV = "epsv"
SESSION_REUSE = "data-session-reuse"
TRANSFERS = "transfers"
QUIT = "quit"

# What each server answers when policy forbids the step (for notes and docs).
PLAINTEXT_LOGIN_REFUSALS = {
    534: "IIS (Require SSL)",
    530: "vsftpd (force_local_logins_ssl)",
    421: "pure-ftpd (--tls=2/3)",
    550: "pyftpdlib / ProFTPD (TLSRequired)",
}
DATA_REFUSALS = {534, 522, 521, 550, 425}

# -- advice, per server product ------------------------------------------------------------

ADVICE_ENABLE_TLS = identify.generic("ftps-enable-tls")
ADVICE_TLS_VERSIONS = identify.generic("ftps-tls-versions")
ADVICE_LEGACY = identify.generic("ftps-legacy")
ADVICE_REQUIRE_CONTROL = identify.generic("ftps-require-control")
ADVICE_ALLOW_CONTROL = identify.generic("ftps-allow-control")
ADVICE_REQUIRE_DATA = identify.generic("ftps-require-data")
ADVICE_ALLOW_DATA = identify.generic("ftps-allow-data")
ADVICE_PASV_ADDRESS = identify.generic("ftps-pasv-address")
ADVICE_PASV_PORTS = identify.generic("ftps-pasv-ports")
ADVICE_PASV_REACH = (
    "The control port answers but the passive data port does not: open and forward the "
    "passive range on the firewall/NAT. " + ADVICE_PASV_PORTS
)
ADVICE_EPSV = (
    "Enable EPSV (RFC 2428): it is on by default in IIS, vsftpd, ProFTPD and pure-ftpd; a "
    "firewall or NAT 'FTP helper' rewriting the control channel may break it (it cannot "
    "read TLS). Turn the helper off and forward the passive range."
)
ADVICE_REUSE_SUPPORT = identify.generic("ftps-reuse-support")
ADVICE_REUSE_REQUIRE = identify.generic("ftps-reuse-require")
ADVICE_REUSE_LEAK = (
    "The server decides on session reuse only after it has started sending: whoever opened "
    "the data connection received data before the refusal. The check must come right after "
    "the data connection's TLS handshake, before any transfer byte (vsftpd, ProFTPD and "
    "FileZilla Server do so); update the server."
)
ADVICE_LOGIN = identify.generic("ftps-login")
ADVICE_PBSZ = (
    "The server must answer PBSZ 0 and PROT P with 200 after AUTH TLS (RFC 4217): IIS, "
    "vsftpd (ssl_enable=YES), ProFTPD (mod_tls) and pure-ftpd (--tls) all do once TLS is on."
)
ADVICE_PBSZ_BEFORE_AUTH = (
    "PBSZ is only meaningful after AUTH (RFC 2228 sec. 3): the server should answer 503. "
    "Update the server software; accepting it suggests sloppy command sequencing."
)
ADVICE_TRANSFER = (
    "The server changed or lost bytes. The check uses binary mode (TYPE I): look for "
    "storage filters, antivirus on upload folders, quotas or a full disk, and proxies "
    "inspecting FTP."
)
ADVICE_QUIT = "The server should answer QUIT with 221 and close the connection (RFC 959)."
ADVICE_CONTROL_LOST = (
    "The server (or a firewall/NAT between) cut the control connection while data moved: "
    "look for a crash or a restart in the server log, an idle timeout on the control "
    "connection in a firewall or NAT (raise it above the longest transfer), or a load "
    "balancer that does not keep the control connection alive during transfers."
)
ADVICE_STALL = (
    "The data connection was accepted but nothing moved: a firewall or NAT forwarding the "
    "passive range but dropping its packets, a proxy holding the data, or a hung server "
    "process (IIS: FTP service state; vsftpd/ProFTPD: a blocked child process). Check the "
    "passive range end to end and the server log for the transfer."
)
ADVICE_TRUST = {
    "expired": identify.generic("ftps-renew"),
    "not-yet-valid": "The certificate starts in the future: check the server and client "
    "clocks, or re-issue it.",
    "hostname": "Issue the certificate for the host name clients connect to (in its SAN), "
    "or set the target's server_name to a name it carries.",
    "unknown-ca": "Give the target the issuing CA as ca_file (the lab CA, your enterprise "
    "CA), pin the certificate's SHA-256, or install a publicly trusted certificate. A "
    "server must also send its intermediate certificates.",
    "self-signed": "Self-signed (IIS 'Create Self-Signed Certificate'): trust it by pin "
    "(its SHA-256 fingerprint) or use its PEM as ca_file.",
    "pin": "The certificate changed since the pin was taken: confirm the new one out of "
    "band, then update the pin (sha256 fingerprint).",
    "other": "Fix the certificate chain the server sends, or the target's trust settings.",
}


def wire(*replies: Reply | None) -> list[str]:
    """Reply lines as the server wrote them, for ``CheckResult.replies``."""
    lines: list[str] = []
    for reply in replies:
        if reply is not None:
            lines.extend(reply.wire_lines)
    return lines


def _result(check: str, status: Status, summary: str, **fields: Any) -> CheckResult:
    return CheckResult(check=check, status=status, summary=summary, **fields)


def brief(reply: Reply | None) -> str:
    if reply is None:
        return "no reply"
    return reply.first


# -- banner, FEAT, AUTH TLS ----------------------------------------------------------------


def judge_banner(reply: Reply | None, error: str | None = None) -> CheckResult:
    expected = "a 220 banner"
    if reply is None:
        return _result(BANNER, Status.FAIL, error or "no banner",
                       expected=expected, observed=error or "nothing",
                       advice="Check that the FTP service runs and that nothing between "
                       "(firewall, load balancer) swallows the connection.")
    if reply.code == 220:
        return _result(BANNER, Status.PASS, f"banner: {brief(reply)}",
                       expected=expected, observed=brief(reply), replies=wire(reply))
    advice = {
        120: "The server is starting up (120); retry later.",
        421: identify.generic("ftps-421"),
    }.get(reply.code, "The server greeted with an unexpected code.")
    summary = f"banner was {reply.code}, not 220"
    if reply.code == 421:
        summary = f"server refuses service with 421 instead of a 220 banner: {reply.text[:160]}"
    return _result(BANNER, Status.FAIL, summary,
                   expected=expected, observed=brief(reply), replies=wire(reply), advice=advice)


def judge_feat_auth_tls(
    reply: Reply,
    features: Features,
    auth: Reply | None = None,
    tls_error: str | None = None,
    tls: dict[str, Any] | None = None,
) -> CheckResult:
    """FEAT lists AUTH TLS: pass. When it does not (or FEAT is not answered 211), ``auth``
    is the server's answer to AUTH TLS tried anyway: if that works (234 and a handshake),
    clients that send AUTH TLS without reading FEAT are served, and nothing is weaker:
    a warning (vsftpd 3.0.x with ssl_tlsv1=NO). Without working AUTH TLS there is no
    explicit FTPS at all: a failure."""
    expected = "FEAT (211) lists AUTH TLS"
    evidence: dict[str, Any] = {"features": list(features.lines),
                                "auth": list(features.auth_mechanisms)}
    listed_ok = reply.code == 211 and features.auth_tls
    if listed_ok:
        mechanisms = ";".join(features.auth_mechanisms)
        return _result(FEAT_AUTH_TLS, Status.PASS, f"FEAT lists AUTH {mechanisms}",
                       expected=expected, observed=f"AUTH {mechanisms}", replies=wire(reply),
                       evidence=evidence)
    if reply.code != 211:
        missing = f"FEAT answered {reply.code}, not 211"
        observed = brief(reply)
    else:
        missing = "FEAT does not list AUTH TLS"
        observed = f"features: {', '.join(features.names) or 'nothing'}"
    replies = wire(reply, auth)
    works = auth is not None and auth.code == 234 and tls_error is None and tls is not None
    if auth is not None:
        evidence["auth_tls_anyway"] = {"reply": auth.first, "tls_error": tls_error,
                                       **(tls or {})}
    if works:
        assert auth is not None and tls is not None
        version = tls.get("tls_version", "TLS")
        return _result(FEAT_AUTH_TLS, Status.WARN,
                       f"{missing}, but AUTH TLS works ({auth.code}, {version}): clients "
                       "that send AUTH TLS without reading FEAT are served",
                       expected=expected, observed=f"{observed}; AUTH TLS: {brief(auth)}",
                       replies=replies, evidence=evidence,
                       advice=identify.generic("ftps-feat-auth-tls"))
    if auth is not None:
        said = tls_error if auth.code == 234 and tls_error else brief(auth)
        observed += f"; AUTH TLS: {said}"
    advice = ADVICE_ENABLE_TLS
    if reply.code != 211:
        advice = "Clients discover FTPS through FEAT (RFC 2389). " + ADVICE_ENABLE_TLS
    return _result(FEAT_AUTH_TLS, Status.FAIL, missing, expected=expected, observed=observed,
                   replies=replies, evidence=evidence, advice=advice)


def judge_auth_tls(
    reply: Reply | None, tls: dict[str, Any] | None, error: str | None, *, implicit: bool
) -> CheckResult:
    """AUTH TLS answered 234 and the handshake completed (or the implicit handshake did)."""
    expected = "TLS handshake on connect" if implicit else "AUTH TLS -> 234, then a TLS handshake"
    evidence = {"mode": "implicit" if implicit else "explicit", **(tls or {})}
    if not implicit and reply is not None and reply.code != 234:
        refused = "refused: " if reply.negative else ""
        return _result(AUTH_TLS, Status.FAIL,
                       f"AUTH TLS {refused}answered {reply.code}, not 234 ({brief(reply)}): "
                       "the server does not offer explicit FTPS",
                       expected=expected, observed=brief(reply), replies=wire(reply),
                       evidence=evidence, advice=ADVICE_ENABLE_TLS)
    if error is not None or tls is None:
        return _result(AUTH_TLS, Status.FAIL, f"TLS handshake failed: {error}",
                       expected=expected, observed=str(error), replies=wire(reply),
                       evidence=evidence, advice=ADVICE_TLS_VERSIONS)
    summary = f"{tls.get('tls_version')} {tls.get('cipher')}"
    return _result(AUTH_TLS, Status.PASS, f"TLS established: {summary}",
                   expected=expected, observed=summary, replies=wire(reply), evidence=evidence)


# -- certificates --------------------------------------------------------------------------

# OpenSSL X509_V_ERR_* codes a client sees for the faults the lab can build.
_VERIFY_KINDS = {
    9: "not-yet-valid",
    10: "expired",
    18: "self-signed",
    19: "unknown-ca",
    2: "unknown-ca",
    20: "unknown-ca",
    21: "unknown-ca",
    62: "hostname",
    64: "hostname",
}
_KIND_LABELS = {
    "expired": "certificate expired",
    "not-yet-valid": "certificate not yet valid",
    "hostname": "wrong host name",
    "unknown-ca": "unknown CA",
    "self-signed": "self-signed certificate not trusted",
    "pin": "pin mismatch",
    "other": "verification failed",
}


def classify_verify_error(code: int | None, message: str) -> str:
    """The fault behind a certificate verification error (``expired``, ``hostname``...)."""
    if code in _VERIFY_KINDS:
        return _VERIFY_KINDS[code]
    text = message.lower()
    for needle, kind in (
        ("expired", "expired"),
        ("not yet valid", "not-yet-valid"),
        ("hostname", "hostname"),
        ("ip address mismatch", "hostname"),
        ("self-signed certificate in", "unknown-ca"),
        ("self signed certificate in", "unknown-ca"),
        ("self-signed", "self-signed"),
        ("self signed", "self-signed"),
        ("issuer", "unknown-ca"),
    ):
        if needle in text:
            return kind
    return "other"


INSECURE_TRUST_REASON = (
    "target trust is 'insecure': nothing is verified under insecure trust; set ca_file or "
    "pin_sha256 to have the certificate checked"
)


def judge_certificate_trust(mode: str, kind: str | None, detail: str = "") -> CheckResult:
    """``kind`` is None when the handshake verified, else a :func:`classify_verify_error` kind
    or ``pin``. Trust mode ``insecure`` verifies nothing, so the check could not run: a
    skip (``--lab-strict`` fails it), never a pass that proves nothing."""
    evidence: dict[str, Any] = {"trust": mode, "verified": mode != "insecure" and kind is None}
    if mode == "insecure":
        return _result(CERT_TRUST, Status.SKIP, INSECURE_TRUST_REASON,
                       expected="trust per target (insecure: none)",
                       observed="not verified (insecure)", evidence=evidence,
                       advice="Configure a ca_file or a SHA-256 pin to have trust verified.",
                       skip_kind=SkipKind.COULD_NOT_RUN)
    expected = {"ca": "chain to the CA file and host name match",
                "pin": "leaf SHA-256 equals the pin",
                "system": "chain to the system trust store and host name match"}.get(mode, mode)
    if kind is None:
        return _result(CERT_TRUST, Status.PASS, f"certificate trusted ({mode})",
                       expected=expected, observed="verified", evidence=evidence)
    evidence["failure"] = kind
    label = _KIND_LABELS.get(kind, kind)
    summary = f"certificate not trusted: {label}" + (f": {detail}" if detail else "")
    return _result(CERT_TRUST, Status.FAIL, summary,
                   expected=expected, observed=detail or label, evidence=evidence,
                   advice=ADVICE_TRUST.get(kind, ADVICE_TRUST["other"]))


def finding_dict(finding: Any) -> dict[str, Any]:
    if isinstance(finding, dict):
        return dict(finding)
    return dict(finding.to_dict())


# Lint findings about the days left: judged by the expiry watch with the target's own
# thresholds (harness/checks/expiry.py), never a warning of the lint itself.
EXPIRY_FINDINGS = ("expires-soon",)


def judge_certificate_lint(findings: Sequence[Any], facts: dict[str, Any]) -> CheckResult:
    """Errors fail; warnings (expiring soon...) and notes (self-signed) are evidence."""
    found = [finding_dict(finding) for finding in findings]
    errors = [f for f in found if f.get("severity") == "error"]
    warnings = [f for f in found if f.get("severity") == "warning"]
    evidence: dict[str, Any] = {
        "findings": found,
        "warnings": [f["message"] for f in warnings],
        "days_left": facts.get("days_left"),
        "self_signed": facts.get("self_signed"),
        "certificate": facts,
    }
    expected = "valid now, host name in SAN, RSA >= 2048 / EC >= 256, SHA-2, serverAuth"
    if errors:
        messages = "; ".join(f["message"] for f in errors)
        return _result(CERT_LINT, Status.FAIL,
                       f"{len(errors)} certificate problem(s): {errors[0]['message']}",
                       expected=expected, observed=messages, evidence=evidence,
                       advice=str(errors[0].get("advice", "")))
    notes = [f["message"] for f in found]
    observed = "; ".join(notes) if notes else "clean"
    # Valid and working today, but off best practice (a CA certificate as the leaf, no
    # digitalSignature): a warning, with the finding's own advice. The days left are the
    # expiry watch's (harness/checks/expiry.py, the target's cert_expiry_warn_days).
    off_practice = [f for f in warnings if f.get("code") not in EXPIRY_FINDINGS]
    if off_practice:
        return _result(CERT_LINT, Status.WARN,
                       f"{len(off_practice)} certificate warning(s): "
                       f"{off_practice[0]['message']}",
                       expected=expected, observed=observed, evidence=evidence,
                       advice=str(off_practice[0].get("advice", "")))
    summary = "certificate lint clean"
    if warnings:
        summary += f" (warning: {warnings[0]['message']})"
    elif facts.get("self_signed"):
        summary += " (self-signed)"
    return _result(CERT_LINT, Status.PASS, summary, expected=expected, observed=observed,
                   evidence=evidence)


# -- legacy TLS ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LegacyOutcome:
    """What offering one legacy TLS version gave: refused, accepted, untestable or error."""

    version: str
    outcome: str
    detail: str = ""
    negotiated: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "detail": self.detail, "negotiated": self.negotiated}


def judge_legacy_tls(outcomes: Sequence[LegacyOutcome]) -> CheckResult:
    expected = "handshakes offering only " + "/".join(f"TLS {o.version}" for o in outcomes) + \
        " are refused by the server"
    evidence = {f"TLS {o.version}": o.to_dict() for o in outcomes}
    accepted = [o for o in outcomes if o.outcome == "accepted"]
    errors = [o for o in outcomes if o.outcome == "error"]
    refused = [o for o in outcomes if o.outcome == "refused"]
    untestable = [o for o in outcomes if o.outcome == "untestable"]
    observed = "; ".join(f"TLS {o.version}: {o.outcome} ({o.detail})" for o in outcomes)
    if accepted:
        names = ", ".join(f"TLS {o.version} (negotiated {o.negotiated})" for o in accepted)
        return _result(LEGACY_TLS, Status.FAIL, f"server accepts legacy {names}",
                       expected=expected, observed=observed, evidence=evidence,
                       advice=ADVICE_LEGACY)
    if errors:
        return _result(LEGACY_TLS, Status.ERROR,
                       f"TLS {errors[0].version}: no verdict: {errors[0].detail}",
                       expected=expected, observed=observed, evidence=evidence)
    if not refused:
        return _result(LEGACY_TLS, Status.SKIP,
                       "this client cannot offer "
                       + ", ".join(f"TLS {o.version} ({o.detail})" for o in untestable),
                       expected=expected, observed=observed, evidence=evidence,
                       skip_kind=SkipKind.COULD_NOT_RUN)
    summary = "server refuses " + ", ".join(f"TLS {o.version}" for o in refused)
    if untestable:
        summary += "; not tested (client cannot offer): " + ", ".join(
            f"TLS {o.version}" for o in untestable)
    return _result(LEGACY_TLS, Status.PASS, summary, expected=expected, observed=observed,
                   evidence=evidence)


# -- PBSZ / PROT ---------------------------------------------------------------------------


# RFC 2228 sec. 5 (command-reply sequences): the only replies PBSZ and PROT may get.
PBSZ_REPLIES = {200, 503, 500, 501, 421, 530}
PROT_REPLIES = {200, 504, 536, 503, 534, 431, 500, 501, 421, 530}


def judge_pbsz_before_auth(reply: Reply) -> CheckResult:
    """PBSZ on the plaintext connection must be refused. Any refusal is secure and no
    client sends PBSZ before AUTH, so the code decides nothing: 503 (bad sequence) and
    the other refusals RFC 2228 lists for PBSZ (530 not logged in: vsftpd before login;
    500, 501, 421) pass plainly, a code outside that list passes with a note."""
    expected = "PBSZ before AUTH TLS refused (503 bad sequence, or another RFC 2228 reply)"
    if reply.negative:
        listed = reply.code in PBSZ_REPLIES
        summary = f"PBSZ before AUTH refused with {reply.code}"
        evidence: dict[str, Any] = {"rfc2228_reply": listed}
        if not listed:
            summary += " (note: not a reply RFC 2228 lists for PBSZ)"
            evidence["note"] = f"refused with {reply.code}, which RFC 2228 does not list"
        return _result(PBSZ_BEFORE_AUTH, Status.PASS, summary,
                       expected=expected, observed=brief(reply), replies=wire(reply),
                       evidence=evidence)
    return _result(PBSZ_BEFORE_AUTH, Status.FAIL,
                   f"PBSZ accepted ({reply.code}) on a plaintext control connection",
                   expected=expected, observed=brief(reply), replies=wire(reply),
                   advice=ADVICE_PBSZ_BEFORE_AUTH)


def judge_pbsz_prot(pbsz: Reply, prot: Reply | None) -> CheckResult:
    expected = "PBSZ 0 -> 200 and PROT P -> 200"
    if pbsz.code != 200:
        return _result(PBSZ_PROT, Status.FAIL, f"PBSZ 0 answered {pbsz.code}, not 200",
                       expected=expected, observed=brief(pbsz), replies=wire(pbsz),
                       advice=ADVICE_PBSZ)
    if prot is None or prot.code != 200:
        code = prot.code if prot is not None else "nothing"
        return _result(PBSZ_PROT, Status.FAIL, f"PROT P answered {code}, not 200",
                       expected=expected, observed=brief(prot), replies=wire(pbsz, prot),
                       advice=ADVICE_PBSZ)
    return _result(PBSZ_PROT, Status.PASS, "PBSZ 0 and PROT P accepted (200)",
                   expected=expected, observed=f"{brief(pbsz)}; {brief(prot)}",
                   replies=wire(pbsz, prot))


# -- login and policy ----------------------------------------------------------------------


def judge_login(user: Reply, password: Reply | None) -> CheckResult:
    expected = "USER -> 331, PASS -> 230 over TLS"
    final = password if password is not None else user
    if final.code == 230:
        note = "" if password is not None else " (no password was asked for)"
        return _result(LOGIN, Status.PASS, f"logged in over TLS{note}", expected=expected,
                       observed=brief(final), replies=wire(user, password))
    step = "PASS" if password is not None else "USER"
    return _result(LOGIN, Status.FAIL, f"login refused: {step} answered {final.code}",
                   expected=expected, observed=brief(final), replies=wire(user, password),
                   advice=ADVICE_LOGIN)


ADVICE_DECOY = (
    "To prove it, send the real password in plaintext to a test account: check parameter "
    "plaintext_password: true (it then crosses the network in clear text), or run from "
    "the server's own loopback, where the real password is sent by default."
)


def judge_plaintext_login(
    user: Reply, password: Reply | None, policy: str, *, decoy: bool = False
) -> CheckResult:
    """USER/PASS before AUTH TLS: refused under ``require``, accepted under ``allow``.

    ``decoy`` means PASS carried a made-up password (the real one is never sent in
    plaintext to a remote host). Any server refuses a wrong password, so a refused decoy
    proves neither refusal (``require``) nor acceptance (``allow``) of the real one:
    the check could not run. USER accepted and the real PASS refused is secure but late
    (a client that tries has sent its password in clear): a warning.
    """
    replies = wire(user, password)
    evidence: dict[str, Any] = {"policy": policy, "user_code": user.code,
                                "pass_code": password.code if password else None,
                                "decoy_password": decoy}
    vendor = PLAINTEXT_LOGIN_REFUSALS.get(user.code)
    if vendor:
        evidence["refusal_style"] = vendor
    logged_in = (password is not None and password.code in (230, 202)) or user.code == 230
    user_ok = user.code in (331, 332) or user.code == 230
    decoy_refused = (user_ok and decoy and password is not None and password.negative)
    if policy == "allow":
        expected = "plaintext USER/PASS accepted (policy: allow)"
        if logged_in:
            return _result(PLAINTEXT_LOGIN, Status.PASS,
                           "plaintext login allowed (230), as the policy says",
                           expected=expected, observed=brief(password or user), replies=replies,
                           evidence=evidence)
        if decoy_refused:
            return _result(PLAINTEXT_LOGIN, Status.SKIP,
                           f"plaintext USER accepted ({user.code}), but PASS was only tried "
                           f"with a decoy password (refused, {password.code if password else '-'}"
                           "): whether the real password logs in without TLS is not proven",
                           expected=expected, observed=f"{brief(user)}; {brief(password)}",
                           replies=replies, evidence=evidence, advice=ADVICE_DECOY,
                           skip_kind=SkipKind.COULD_NOT_RUN)
        step = password if user_ok and password is not None else user
        return _result(PLAINTEXT_LOGIN, Status.FAIL,
                       f"plaintext login refused ({step.code}) although policy is 'allow'",
                       expected=expected, observed=brief(step), replies=replies,
                       evidence=evidence, advice=ADVICE_ALLOW_CONTROL)
    expected = "USER (or PASS) before AUTH TLS refused (policy: require)"
    if logged_in:
        return _result(PLAINTEXT_LOGIN, Status.FAIL,
                       "plaintext login ACCEPTED (230) before AUTH TLS: the password "
                       "crossed the network in clear text",
                       expected=expected, observed=brief(password or user), replies=replies,
                       evidence=evidence, advice=ADVICE_REQUIRE_CONTROL)
    if user.negative:
        who = f" ({vendor} style)" if vendor else ""
        return _result(PLAINTEXT_LOGIN, Status.PASS,
                       f"plaintext USER refused with {user.code}{who}",
                       expected=expected, observed=brief(user), replies=replies,
                       evidence=evidence)
    if decoy_refused:
        assert password is not None
        note = (f"USER was accepted in plaintext ({user.code}); a decoy PASS was refused "
                f"with {password.code}, as any wrong password is")
        evidence["note"] = note
        return _result(PLAINTEXT_LOGIN, Status.SKIP,
                       f"{note}: refusal of the real password without TLS is not proven",
                       expected=expected, observed=f"{brief(user)}; {brief(password)}",
                       replies=replies, evidence=evidence,
                       advice=ADVICE_DECOY + " Better still, refuse USER already: "
                       + ADVICE_REQUIRE_CONTROL,
                       skip_kind=SkipKind.COULD_NOT_RUN)
    if user_ok and password is not None and password.negative:
        note = (f"USER was accepted in plaintext ({user.code}); the real PASS was refused "
                f"with {password.code}")
        evidence["note"] = note
        return _result(PLAINTEXT_LOGIN, Status.WARN,
                       f"plaintext login refused only at PASS ({password.code}): a client "
                       "that tries has sent its password in clear text before the refusal",
                       expected=expected, observed=f"{brief(user)}; {brief(password)}",
                       replies=replies, evidence=evidence,
                       advice="Refuse USER already, as IIS, vsftpd, ProFTPD and pure-ftpd "
                       "do: " + ADVICE_REQUIRE_CONTROL)
    return _result(PLAINTEXT_LOGIN, Status.FAIL,
                   f"unexpected answer to plaintext login: USER {user.code}, "
                   f"PASS {password.code if password else '-'}",
                   expected=expected, observed=f"{brief(user)}; {brief(password)}",
                   replies=replies, evidence=evidence, advice=ADVICE_REQUIRE_CONTROL)


def judge_prot_c(prot: Reply, transfer: Transfer | None, policy: str) -> CheckResult:
    """PROT C and an unprotected LIST: refused under ``require``, working under ``allow``."""
    replies = wire(prot, *(transfer.replies if transfer else []))
    evidence: dict[str, Any] = {"policy": policy, "prot_c": prot.code,
                                "transfer": transfer.to_dict() if transfer else None}
    if policy == "allow":
        expected = "PROT C -> 200 and an unprotected LIST works (policy: allow)"
        if prot.code == 200 and transfer is not None and transfer.ok:
            return _result(PROT_C, Status.PASS,
                           "unprotected data connection allowed, as the policy says",
                           expected=expected, observed=transfer.describe(), replies=replies,
                           evidence=evidence)
        what = f"PROT C answered {prot.code}" if prot.code != 200 else (
            transfer.describe() if transfer else "no transfer")
        return _result(PROT_C, Status.FAIL,
                       f"unprotected data refused although policy is 'allow': {what}",
                       expected=expected, observed=what, replies=replies, evidence=evidence,
                       advice=ADVICE_ALLOW_DATA)
    expected = "PROT C refused (534/536/504) or the clear-text transfer refused (policy: require)"
    if prot.negative:
        # Any refusal keeps the data protected; RFC 2228's PROT replies pass plainly.
        note = "" if prot.code in PROT_REPLIES else f" (note: {prot.code} is unusual)"
        return _result(PROT_C, Status.PASS, f"PROT C refused with {prot.code}{note}",
                       expected=expected, observed=brief(prot), replies=replies,
                       evidence=evidence)
    if transfer is None:
        return _result(PROT_C, Status.ERROR, "PROT C accepted but no transfer was tried",
                       expected=expected, observed=brief(prot), replies=replies,
                       evidence=evidence)
    if transfer.started and (transfer.size > 0 or transfer.ok):
        return _result(PROT_C, Status.FAIL,
                       f"clear-text data transfer completed after PROT C ({transfer.size} "
                       "bytes unprotected)",
                       expected=expected, observed=transfer.describe(), replies=replies,
                       evidence=evidence, advice=ADVICE_REQUIRE_DATA)
    refusal = transfer.refusal
    if refusal is not None:
        note = "" if refusal.code in DATA_REFUSALS else f" (note: {refusal.code} is unusual)"
        return _result(PROT_C, Status.PASS,
                       f"PROT C accepted but the clear-text transfer was refused with "
                       f"{refusal.code}{note}",
                       expected=expected, observed=transfer.describe(), replies=replies,
                       evidence=evidence)
    return _result(PROT_C, Status.ERROR,
                   f"no verdict: the clear-text transfer ended without a refusal: "
                   f"{transfer.describe()}",
                   expected=expected, observed=transfer.describe(), replies=replies,
                   evidence=evidence)


# -- passive mode --------------------------------------------------------------------------


def address_kind(host: str) -> str:
    """``public``, ``private`` (RFC 1918), ``shared`` (CGNAT), ``loopback``, ``link-local``,
    ``unspecified``, ``reserved`` or ``invalid``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "invalid"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in ipaddress.ip_network(net)
               for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")):
            return "private"
        if address in ipaddress.ip_network("100.64.0.0/10"):
            return "shared"
    elif address in ipaddress.ip_network("fc00::/7"):
        return "private"
    return "public" if address.is_global else "reserved"


def _port_problem(port: int, ports: tuple[int, int] | None) -> str | None:
    if ports is not None and not ports[0] <= port <= ports[1]:
        return f"port {port} is outside the passive range {ports[0]}-{ports[1]}"
    return None


def judge_pasv_address(
    reply: Reply,
    endpoint: Passive | None,
    expected_host: str,
    ports: tuple[int, int] | None,
    transfer: Transfer | None,
) -> CheckResult:
    """The 227 address must be the address clients reach, the port in the range, and the
    port must work (the data connection goes to the target host, never elsewhere)."""
    expected = f"227 announcing {expected_host}" + (
        f" with a port in {ports[0]}-{ports[1]}" if ports else "")
    replies = wire(reply, *(transfer.replies[1:] if transfer else []))
    evidence: dict[str, Any] = {"expected_address": expected_host,
                                "passive_ports": list(ports) if ports else None}
    if reply.code != 227:
        return _result(PASV_ADDRESS, Status.FAIL, f"PASV answered {reply.code}, not 227",
                       expected=expected, observed=brief(reply), replies=replies,
                       evidence=evidence, advice=ADVICE_PASV_PORTS)
    if endpoint is None or endpoint.announced_host is None:
        return _result(PASV_ADDRESS, Status.FAIL, "227 reply without a usable h1,h2,h3,h4,p1,p2",
                       expected=expected, observed=brief(reply), replies=replies,
                       evidence=evidence)
    announced, port = endpoint.announced_host, endpoint.port
    kind = address_kind(announced)
    evidence.update(announced_address=announced, announced_port=port, address_kind=kind,
                    connected_to=endpoint.connect_host,
                    transfer=transfer.to_dict() if transfer else None)
    observed = f"{announced}:{port} ({kind})"
    if announced != expected_host:
        behind_nat = kind in ("private", "shared", "link-local") or (
            kind == "loopback" and address_kind(expected_host) != "loopback")
        if behind_nat:
            summary = (f"server behind NAT hands out its private address {announced} "
                       f"instead of {expected_host}")
        elif kind == "unspecified":
            summary = f"server announces {announced} instead of {expected_host}"
        else:
            summary = f"PASV announces {announced}, but the reachable address is {expected_host}"
        evidence["behind_nat"] = behind_nat
        return _result(PASV_ADDRESS, Status.FAIL, summary, expected=expected, observed=observed,
                       replies=replies, evidence=evidence, advice=ADVICE_PASV_ADDRESS)
    problem = _port_problem(port, ports)
    if problem:
        return _result(PASV_ADDRESS, Status.FAIL, problem, expected=expected, observed=observed,
                       replies=replies, evidence=evidence, advice=ADVICE_PASV_PORTS)
    if transfer is not None and not transfer.ok:
        return _result(PASV_ADDRESS, Status.FAIL,
                       f"address correct but the data connection failed: {transfer.diagnosis}",
                       expected=expected, observed=observed, replies=replies,
                       evidence=evidence, advice=ADVICE_PASV_REACH)
    return _result(PASV_ADDRESS, Status.PASS, f"PASV announces {announced}:{port}",
                   expected=expected, observed=observed, replies=replies, evidence=evidence)


def judge_epsv(
    reply: Reply, endpoint: Passive | None, ports: tuple[int, int] | None,
    transfer: Transfer | None, *, ipv6: bool = False,
) -> CheckResult:
    """EPSV answered 229 with a port of the range, and a LIST over it works.

    EPSV refused on an IPv4 control connection is a warning: clients fall back to PASV
    (curl does after the refusal; FileZilla and WinSCP use PASV on IPv4 anyway), and
    pasv-address judges that. Over IPv6 EPSV is the only passive mode: a failure.
    """
    expected = "EPSV -> 229 (|||port|)" + (f" with a port in {ports[0]}-{ports[1]}" if ports
                                             else "") + " and a working data connection"
    replies = wire(reply, *(transfer.replies[1:] if transfer else []))
    evidence: dict[str, Any] = {"passive_ports": list(ports) if ports else None,
                                "transfer": transfer.to_dict() if transfer else None}
    if reply.code != 229 and reply.negative and not ipv6:
        return _result(EPSV, Status.WARN,
                       f"EPSV refused ({reply.code}) on an IPv4 connection: clients fall back "
                       "to PASV (see pasv-address)",
                       expected=expected, observed=brief(reply), replies=replies,
                       evidence=evidence, advice=ADVICE_EPSV)
    if reply.code != 229:
        return _result(EPSV, Status.FAIL, f"EPSV answered {reply.code}, not 229",
                       expected=expected, observed=brief(reply), replies=replies,
                       evidence=evidence, advice=ADVICE_EPSV)
    if endpoint is None:
        return _result(EPSV, Status.FAIL, "229 reply without a usable (|||port|)",
                       expected=expected, observed=brief(reply), replies=replies,
                       evidence=evidence)
    evidence["port"] = endpoint.port
    problem = _port_problem(endpoint.port, ports)
    if problem:
        return _result(EPSV, Status.FAIL, problem, expected=expected, observed=brief(reply),
                       replies=replies, evidence=evidence, advice=ADVICE_PASV_PORTS)
    if transfer is None or not transfer.ok:
        what = transfer.diagnosis if transfer else "no transfer"
        return _result(EPSV, Status.FAIL, f"EPSV data connection failed: {what}",
                       expected=expected, observed=what, replies=replies, evidence=evidence,
                       advice=ADVICE_PASV_REACH)
    return _result(EPSV, Status.PASS, f"EPSV port {endpoint.port}, LIST over it works",
                   expected=expected, observed=brief(reply), replies=replies,
                   evidence=evidence)


# -- session reuse -------------------------------------------------------------------------


# Codes a server refuses a data connection with when it did not resume the session.
REUSE_REFUSALS = {
    522: "vsftpd require_ssl_reuse, the lab",
    425: "ProFTPD mod_tls, FileZilla Server",
}


@dataclass(frozen=True)
class ReuseProbe:
    """What the data connection WITHOUT session reuse showed: ``requires`` is ``yes``
    (refused with a session-reuse code), ``no`` (it worked) or ``unknown`` (anything
    else: no transfer, another refusal, a broken connection), ``why`` says which."""

    requires: str
    why: str
    refusal: Reply | None = None
    stage: str = ""  # which reply refused it: "preliminary" or "final"


def classify_without_reuse(without_reuse: Transfer | None, error: str | None = None) -> ReuseProbe:
    """Only the data command's own refusal with 522 or 425 means "reuse required"; a
    refused PASV, a lost connection or a 550 say nothing about session reuse."""
    if without_reuse is None:
        return ReuseProbe("unknown", f"no transfer without reuse: {error or 'not attempted'}")
    command = without_reuse.command
    if without_reuse.ok:
        return ReuseProbe("no", f"{command} without reuse completed "
                                f"({brief(without_reuse.final)})")
    for stage, reply in (("preliminary", without_reuse.preliminary),
                         ("final", without_reuse.final)):
        if reply is None or not reply.negative:
            continue
        if reply.code in REUSE_REFUSALS:
            return ReuseProbe("yes", f"{command} without reuse refused: {reply.first}",
                              reply, stage)
        known = ", ".join(f"{code} ({who})" for code, who in REUSE_REFUSALS.items())
        return ReuseProbe("unknown", f"{command} without reuse was refused with "
                                     f"{reply.first!r}, which is not a session-reuse refusal "
                                     f"({known})", reply, stage)
    return ReuseProbe("unknown", f"{command} without reuse did not complete: "
                                 f"{without_reuse.diagnosis}")


def judge_session_reuse(
    transfers: Sequence[Transfer], without_reuse: Transfer | None, required: bool | None,
    without_reuse_error: str | None = None,
) -> CheckResult:
    """Data connections resuming the control session work and do resume; whether the
    server *requires* reuse is recorded, and judged only when the target says it must:
    then only a 522/425 refusal of the data command, with no byte of it delivered, passes,
    and a result that cannot tell is an error, never a pass."""
    expected = "every data connection resumes the control TLS session"
    if required:
        expected += ("; a data connection without reuse is refused with 522 or 425 before "
                     "any data")
    evidence: dict[str, Any] = {
        "data_connections": [t.to_dict() for t in transfers],
        "session_reuse_required_by_target": required,
    }
    probe = classify_without_reuse(without_reuse, without_reuse_error)
    requires = probe.requires
    if without_reuse is not None:
        evidence["without_reuse"] = without_reuse.to_dict()
    evidence["server_requires_session_reuse"] = requires
    evidence["without_reuse_outcome"] = probe.why
    if probe.refusal is not None:
        evidence["without_reuse_refusal"] = {
            "code": probe.refusal.code,
            "text": probe.refusal.text,
            "reply": probe.refusal.first,
            "stage": probe.stage,
        }
    leaked = without_reuse.size if requires == "yes" and without_reuse is not None else 0
    if requires == "yes":
        evidence["without_reuse_bytes_before_refusal"] = leaked
    replies = wire(*(r for t in transfers for r in t.replies[1:]))
    if without_reuse is not None:
        replies += wire(*without_reuse.replies[1:])
    failed = [t for t in transfers if not t.ok]
    if failed:
        return _result(SESSION_REUSE, Status.FAIL,
                       f"data connection with session reuse failed: {failed[0].diagnosis}",
                       expected=expected, observed=failed[0].describe(), replies=replies,
                       evidence=evidence, advice=ADVICE_REUSE_SUPPORT)
    not_reused = [t for t in transfers if t.session_reused is not True]
    if not_reused:
        # Every transfer worked, with full handshakes. Only a target that must require
        # reuse is harmed: a server that never resumes cannot be enforcing it. Otherwise
        # clients work and nothing is weaker than the target asked for: a warning
        # (Pure-FTPd 1.0.50 never resumes, and every client still transfers).
        status = Status.FAIL if required else Status.WARN
        summary = (f"{len(not_reused)} of {len(transfers)} data connections did not resume "
                   "the control session")
        if status is Status.WARN:
            summary += " (every data connection worked with a full handshake)"
        return _result(SESSION_REUSE, status, summary,
                       expected=expected,
                       observed=", ".join(f"{t.command}: reused={t.session_reused}"
                                          for t in not_reused),
                       replies=replies, evidence=evidence, advice=ADVICE_REUSE_SUPPORT)
    observed = (f"{len(transfers)} data connections resumed the session; server requires "
                f"session reuse: {requires}")
    if probe.refusal is not None:
        observed += f" (without reuse: {probe.refusal.first})"
    if leaked:
        observed += f"; {leaked} bytes of the transfer arrived before the refusal"
    if required and requires == "no":
        return _result(SESSION_REUSE, Status.FAIL,
                       "server accepts a data connection that does not resume the control "
                       "session, but the target must require reuse",
                       expected=expected, observed=observed, replies=replies,
                       evidence=evidence, advice=ADVICE_REUSE_REQUIRE)
    if required and requires == "unknown":
        return _result(SESSION_REUSE, Status.ERROR,
                       "cannot tell whether the server requires session reuse: " + probe.why,
                       expected=expected, observed=observed, replies=replies,
                       evidence=evidence)
    if required and leaked:
        return _result(SESSION_REUSE, Status.FAIL,
                       f"server refuses a data connection without session reuse "
                       f"({probe.refusal.first if probe.refusal else ''}) only after "
                       f"{leaked} bytes of the transfer went over it",
                       expected=expected, observed=observed, replies=replies,
                       evidence=evidence, advice=ADVICE_REUSE_LEAK)
    return _result(SESSION_REUSE, Status.PASS, observed, expected=expected, observed=observed,
                   replies=replies, evidence=evidence)


# -- transfers and QUIT --------------------------------------------------------------------


@dataclass
class FileRound:
    """One file of the transfers check: uploaded, downloaded, listed, deleted."""

    name: str
    size: int
    stor: Transfer | None = None
    retr: Transfer | None = None
    listed: bool | None = None
    dele: Reply | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sent_sha256": self.stor.sha256 if self.stor else None,
            "received_sha256": self.retr.sha256 if self.retr else None,
            "received_bytes": self.retr.size if self.retr else None,
            "listed": self.listed,
            "deleted": self.dele.code if self.dele else None,
        }


@dataclass
class TransferSession:
    """Everything the transfers check saw on its one login."""

    forced_tls: str | None
    negotiated: str | None
    files: list[FileRound] = field(default_factory=list)
    listings: list[Transfer] = field(default_factory=list)
    quit: Reply | None = None
    control_shutdown: str = ""
    control_lost: Transfer | None = None  # the transfer during which the server hung up

    @property
    def data_connections(self) -> list[Transfer]:
        out = list(self.listings)
        for item in self.files:
            out += [t for t in (item.stor, item.retr) if t is not None]
        return out


_TLS_NAMES = {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}


def judge_transfers(session: TransferSession) -> CheckResult:
    files = session.files
    expected = (f"{len(files)} files stored, retrieved byte for byte (SHA-256), listed and "
                "deleted on one login" + (f" over TLS {session.forced_tls}"
                                          if session.forced_tls else "") + "; QUIT -> 221")
    connections = session.data_connections
    evidence: dict[str, Any] = {
        "tls_version": session.negotiated,
        "forced_tls": session.forced_tls,
        "files": [item.to_dict() for item in files],
        "data_connections": len(connections),
        "data_sessions_reused": sum(1 for t in connections if t.session_reused),
        "data_tls_versions": sorted({t.tls.version for t in connections if t.tls}),
        "data_tls_shutdowns": sorted({t.tls_shutdown for t in connections}),
        "control_tls_shutdown": session.control_shutdown,
    }

    def fail(summary: str, observed: str, replies: list[str], advice: str = "") -> CheckResult:
        return _result(TRANSFERS, Status.FAIL, summary, expected=expected, observed=observed,
                       replies=replies, evidence=evidence, advice=advice)

    lost = session.control_lost
    if lost is not None:
        evidence["control_lost"] = lost.to_dict()
        return fail(lost.diagnosis, lost.error or lost.diagnosis, wire(*lost.replies),
                    ADVICE_CONTROL_LOST)
    wanted = _TLS_NAMES.get(session.forced_tls or "")
    if wanted and session.negotiated != wanted:
        return fail(f"server negotiated {session.negotiated} although the client offered only "
                    f"{wanted}", str(session.negotiated), [], ADVICE_TLS_VERSIONS)
    for transfer in connections:
        if wanted and transfer.tls is not None and transfer.tls.version != wanted:
            return fail(f"data connection negotiated {transfer.tls.version}, not {wanted}",
                        transfer.describe(), wire(*transfer.replies), ADVICE_TLS_VERSIONS)
    for item in files:
        for step in (item.stor, item.retr):
            if step is None:
                continue
            if not step.ok:
                if step.stalled:
                    return fail(step.diagnosis, step.describe(), wire(*step.replies),
                                ADVICE_STALL)
                return fail(f"{step.command} failed: {step.describe()}", step.describe(),
                            wire(*step.replies), ADVICE_TRANSFER)
        if item.stor is not None and item.retr is not None and (
            item.stor.sha256 != item.retr.sha256 or item.stor.size != item.retr.size
        ):
            return fail(
                f"{item.name} differs after the round trip: sent sha256 {item.stor.sha256} "
                f"({item.stor.size} bytes), received sha256 {item.retr.sha256} "
                f"({item.retr.size} bytes)",
                f"sha256 {item.stor.sha256} != {item.retr.sha256}",
                wire(*item.retr.replies), ADVICE_TRANSFER)
    for listing in session.listings:
        if not listing.ok:
            return fail(f"{listing.command} failed: {listing.describe()}", listing.describe(),
                        wire(*listing.replies), ADVICE_TRANSFER)
    for item in files:
        if item.listed is False:
            return fail(f"{item.name} is missing from the LIST after upload", "not listed", [],
                        ADVICE_TRANSFER)
        if item.dele is not None and item.dele.code != 250:
            return fail(f"DELE {item.name} answered {item.dele.code}, not 250",
                        brief(item.dele), wire(item.dele),
                        "The user needs delete permission (IIS: Write; vsftpd: write_enable=YES).")
    if session.quit is None or session.quit.code != 221:
        return fail(f"QUIT answered {session.quit.code if session.quit else 'nothing'}",
                    brief(session.quit), wire(session.quit), ADVICE_QUIT)
    total = sum(item.size for item in files)
    summary = (f"{len(files)} files ({total} bytes) round-tripped intact over "
               f"{session.negotiated}; {len(connections)} data connections, "
               f"{evidence['data_sessions_reused']} resumed the session")
    return _result(TRANSFERS, Status.PASS, summary, expected=expected, observed=summary,
                   replies=wire(session.quit), evidence=evidence)


def judge_quit(reply: Reply, shutdown: str) -> CheckResult:
    """221 and then the server closes: with close_notify (clean) or at least the TCP side."""
    expected = "QUIT -> 221, then the server closes the connection"
    evidence = {"tls_shutdown": shutdown}
    if reply.code != 221:
        return _result(QUIT, Status.FAIL, f"QUIT answered {reply.code}, not 221",
                       expected=expected, observed=brief(reply), replies=wire(reply),
                       evidence=evidence, advice=ADVICE_QUIT)
    if shutdown in ("clean", "no TLS"):
        return _result(QUIT, Status.PASS, "QUIT -> 221, connection closed cleanly",
                       expected=expected, observed=f"{brief(reply)}; TLS shutdown {shutdown}",
                       replies=wire(reply), evidence=evidence)
    if "timed out" in shutdown:
        return _result(QUIT, Status.FAIL, "server answered 221 but kept the connection open",
                       expected=expected, observed=shutdown, replies=wire(reply),
                       evidence=evidence, advice=ADVICE_QUIT)
    return _result(QUIT, Status.PASS,
                   "QUIT -> 221; the server closed without a TLS close_notify",
                   expected=expected, observed=shutdown, replies=wire(reply), evidence=evidence)

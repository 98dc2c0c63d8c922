"""SMTP checks for OP25B setups: the MTA on 25, submission on 587 (STARTTLS), 465 (TLS).

Each check drives one session through :class:`SMTPClient` and hands what it saw to a
pure function in :mod:`harness.checks.smtp_verdicts`. Trust rule: only the certificate
checks judge the certificate, so sessions that send no secret use a non-verifying TLS
context; a password is only ever sent over TLS verified as ``target.trust`` says.
No check ever sends credentials in plaintext.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import time
import uuid
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

from harness.checks import CheckFunction, authpenalty, check, identify
from harness.checks import smtp_verdicts as verdicts
from harness.lab.mailbox import Mailbox, find_in_mailbox
from harness.protocols.smtp import (
    Ehlo,
    Reply,
    SMTPProtocolError,
    domain_of,
    normalize_message,
    relay_forms,
)
from harness.protocols.smtp_client import (
    DEFAULT_HELO,
    SMTPClient,
    SMTPClosed,
    SMTPDriverError,
)
from harness.protocols.tls import PinMismatch, Trust, client_context, explain_tls_failure
from harness.results import CheckResult, SkipKind, Status
from harness.targets import SMTP_PROTOCOLS, Target
from harness.transcript import Transcript

__all__ = ["build_probe_message", "certificate_details", "find_in_mailbox"]

_DRIVER_ERRORS = (SMTPDriverError, SMTPProtocolError, ssl.SSLError, OSError)


class _Abort(Exception):
    """Stop a check early with a finished verdict (usually an unmet precondition)."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.summary)
        self.result = result


def describe_error(exc: BaseException) -> str:
    """A one-line description of a socket/TLS/protocol error for summaries."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {explain_tls_failure(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, SMTPProtocolError):
        return f"malformed reply: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Probe:
    """One check's session: driver, redacted transcript, evidence and the step in progress."""

    def __init__(self, name: str, target: Target, params: dict[str, Any]) -> None:
        self.name = name
        self.target = target
        self.params = params
        self.transcript = Transcript([target.password] if target.password else [])
        self.client = SMTPClient(
            target.host,
            target.port,
            timeout=float(params.get("timeout", target.timeout)),
            transcript=self.transcript,
            helo_name=str(params.get("helo_name", DEFAULT_HELO)),
        )
        self.evidence: dict[str, Any] = {"protocol": target.protocol}
        self.step = "connect"
        self.pre_tls_ehlo: Ehlo | None = None
        self.broken = False
        self.extra: list[SMTPClient] = []  # further sessions of the same check

    def new_client(self) -> SMTPClient:
        """Another session of this check, in the same transcript; closed by finish."""
        self.transcript.note(f"--- session {len(self.extra) + 2} ---")
        client = SMTPClient(
            self.target.host,
            self.target.port,
            timeout=self.client.timeout,
            transcript=self.transcript,
            helo_name=self.client.helo_name,
        )
        self.extra.append(client)
        return client

    # -- helpers ----------------------------------------------------------------------

    def context(self, *, verify: bool) -> ssl.SSLContext:
        trust = self.target.trust if verify else Trust(insecure=True)
        return client_context(trust, min_version=self.params.get("tls_min_version", "1.2"))

    def abort(self, status: Status, summary: str, **fields: Any) -> _Abort:
        return _Abort(CheckResult(check=self.name, status=status, summary=summary, **fields))

    def skip(self, reason: str, kind: SkipKind = SkipKind.COULD_NOT_RUN) -> _Abort:
        """A skip; ``kind`` says whether the step does not apply or could not be run."""
        return self.abort(Status.SKIP, reason, skip_kind=kind)

    def credentials(self) -> tuple[str, str]:
        if not self.target.user or not self.target.password:
            raise self.skip(
                "no user/password configured for this target", SkipKind.COULD_NOT_RUN
            )
        return self.target.user, self.target.password

    # -- session steps ----------------------------------------------------------------

    def open(self, *, verify: bool = False) -> Reply:
        """Connect (TLS first on 465) and read the greeting, whatever its code."""
        self.step = "connect"
        implicit = self.target.implicit_tls
        banner = self.client.connect(
            tls_context=self.context(verify=verify) if implicit else None,
            server_hostname=self.target.tls_name,
            trust=self.target.trust if implicit and verify else None,
        )
        self.evidence["banner"] = str(banner)
        if self.client.tls is not None:
            self.evidence["tls"] = self.client.tls.to_dict()
        return banner

    def greet(self, *, verify: bool = False) -> Ehlo:
        """Greeting 220 and EHLO 250, or abort with ``error`` (the banner/ehlo checks judge)."""
        banner = self.open(verify=verify)
        if banner.code != 220:
            raise self.abort(Status.ERROR, f"greeting was {banner.code}, not 220",
                             replies=banner.wire_lines)
        return self.ehlo()

    def ehlo(self) -> Ehlo:
        self.step = "EHLO"
        reply = self.client.ehlo()
        if self.client.ehlo_info is None:
            raise self.abort(Status.ERROR, f"EHLO answered {reply.code}",
                             replies=reply.wire_lines)
        key = "ehlo_after_tls" if self.client.tls else "ehlo"
        self.evidence[key] = self.client.ehlo_info.to_dict()
        return self.client.ehlo_info

    def starttls(self, ehlo: Ehlo, *, verify: bool) -> Ehlo:
        """STARTTLS, handshake and a new EHLO; any failure aborts with ``error``."""
        self.pre_tls_ehlo = ehlo
        if not ehlo.has("STARTTLS"):
            raise self.abort(Status.ERROR, "STARTTLS not advertised (see the starttls check)")
        _start_tls(self, verify=verify)
        return self.ehlo()

    def secure(self, *, verify: bool = False) -> Ehlo:
        """The post-TLS EHLO: implicit TLS on 465, STARTTLS elsewhere.

        The MTA role may lack STARTTLS; then the session stays in plaintext, noted.
        """
        ehlo = self.greet(verify=verify)
        if self.target.implicit_tls:
            return ehlo
        if self.target.protocol == "smtp" and not ehlo.has("STARTTLS"):
            self.transcript.note("no STARTTLS offered; continuing in plaintext")
            self.evidence["plaintext"] = True
            return ehlo
        return self.starttls(ehlo, verify=verify)

    def auth_plain(self, user: str, password: str, *, failing: bool = False) -> Reply:
        """AUTH PLAIN with time for the server's penalty after failed logins (and for
        its delayed refusal when ``failing``); the outcome is counted for later logins."""
        with authpenalty.login_budget(self.client, self.target, failing=failing,
                                      transcript=self.transcript):
            reply = self.client.auth_plain(user, password)
        if reply.code == 235 or reply.permanent:
            authpenalty.record(self.target, success=reply.code == 235)
        return reply

    def auth_login(self, user: str, password: str) -> Reply:
        """AUTH LOGIN, for servers that offer no PLAIN (Exchange, Office 365)."""
        with authpenalty.login_budget(self.client, self.target, transcript=self.transcript):
            reply = self.client.auth_login(user, password)
        if reply.code == 235 or reply.permanent:
            authpenalty.record(self.target, success=reply.code == 235)
        return reply

    def login(self) -> Reply:
        """Log in with PLAIN, or with LOGIN where the server offers LOGIN but no PLAIN."""
        user, password = self.credentials()
        offered = self.client.ehlo_info.auth_mechanisms if self.client.ehlo_info else ()
        if "PLAIN" not in offered and "LOGIN" in offered:
            self.step = "AUTH LOGIN"
            reply = self.auth_login(user, password)
        else:
            self.step = "AUTH PLAIN"
            reply = self.auth_plain(user, password)
        if reply.code != 235:
            raise self.abort(Status.ERROR, f"login failed with {reply.code} (see auth-plain)",
                             replies=reply.wire_lines)
        return reply

    def cancel_auth(self) -> None:
        """Abort a SASL exchange the server started (334) without sending anything secret."""
        self.client.command("*")

    def finish(self, result: CheckResult) -> CheckResult:
        if not self.broken:
            self.client.quit()
        self.client.close()
        for client in self.extra:
            client.quit()
            client.close()
        result.check = self.name
        for key, value in self.evidence.items():
            result.evidence.setdefault(key, value)
        result.transcript = self.transcript.lines
        # Advice in the identified server's own settings (Postfix, Exim, sendmail, ...).
        identify.apply(result, result.transcript)
        return result


def run_probe(
    name: str, target: Target, params: dict[str, Any], body: Callable[[Probe], CheckResult]
) -> CheckResult:
    """Run ``body``; turn aborts and session errors into results, never raise."""
    start = time.monotonic()
    probe = Probe(name, target, params)
    try:
        result = body(probe)
    except _Abort as abort:
        result = abort.result
    except PinMismatch as exc:
        probe.broken = True
        result = CheckResult(
            check=name, status=Status.ERROR, summary=f"{probe.step}: {exc}",
            advice="The certificate pin does not match; see smtp-certificate-trust.",
        )
    except _DRIVER_ERRORS as exc:
        probe.broken = True
        advice = ""
        if isinstance(exc, ssl.SSLCertVerificationError):
            advice = "See smtp-certificate-trust; configure trust (ca_file, pin) for the target."
        result = CheckResult(
            check=name, status=Status.ERROR,
            summary=f"{probe.step}: {describe_error(exc)}", advice=advice,
        )
    result = probe.finish(result)
    result.duration = time.monotonic() - start
    return result


def smtp_check(name: str) -> Callable[[Callable[[Probe], CheckResult]], CheckFunction]:
    """Register ``body(probe)`` as the check ``name`` for every SMTP protocol.

    The registered function has the registry's ``(target, params)`` signature and runs
    ``body`` through :func:`run_probe`, so no check repeats the session bookkeeping.
    """

    def decorate(body: Callable[[Probe], CheckResult]) -> CheckFunction:
        def function(target: Target, params: dict[str, Any]) -> CheckResult:
            return run_probe(name, target, params, body)

        function.__name__ = body.__name__
        function.__qualname__ = body.__qualname__
        function.__doc__ = body.__doc__
        return check(name, SMTP_PROTOCOLS)(function)

    return decorate


def _not_on(protocols: tuple[str, ...], probe: Probe, reason: str) -> None:
    """Skip as not applicable on these protocols (ports), e.g. AUTH checks on an MTA's 25."""
    if probe.target.protocol in protocols:
        raise probe.skip(reason, SkipKind.NOT_APPLICABLE)


# -- greeting and EHLO ---------------------------------------------------------------


@smtp_check(verdicts.BANNER)
def smtp_banner(probe: Probe) -> CheckResult:
    """The server greets with 220."""
    return verdicts.judge_banner(probe.open())


@smtp_check(verdicts.EHLO)
def smtp_ehlo(probe: Probe) -> CheckResult:
    """EHLO is answered 250; the announced extensions are recorded."""
    banner = probe.open()
    if banner.code != 220:
        raise probe.abort(Status.ERROR, f"greeting was {banner.code}, not 220")
    probe.step = "EHLO"
    reply = probe.client.ehlo()
    result = verdicts.judge_ehlo(reply)
    if probe.client.ehlo_info is not None:
        result.evidence["extensions"] = probe.client.ehlo_info.to_dict()
        result.evidence["server_name"] = probe.client.ehlo_info.domain
    return result


# -- TLS -----------------------------------------------------------------------------


@smtp_check(verdicts.STARTTLS)
def smtp_starttls(probe: Probe) -> CheckResult:
    """STARTTLS is advertised, answered 220 and the handshake succeeds (465: implicit TLS)."""
    if probe.target.implicit_tls:
        return _implicit_tls(probe)
    ehlo = probe.greet()
    if not ehlo.has("STARTTLS"):
        return verdicts.judge_starttls(False, None, None, None)
    probe.step = "STARTTLS"
    client = probe.client
    reply = client.command("STARTTLS")
    if reply.code != 220:
        return verdicts.judge_starttls(True, reply, None, None)
    try:
        facts = client.handshake(probe.context(verify=False), probe.target.tls_name)
    except (ssl.SSLError, OSError, SMTPDriverError) as exc:
        probe.broken = True
        return verdicts.judge_starttls(True, reply, _starttls_failure(exc), None)
    probe.evidence["tls"] = facts.to_dict()
    probe.step = "EHLO after TLS"
    try:
        after = client.ehlo()
    except (SMTPDriverError, OSError) as exc:
        probe.broken = True
        probe.transcript.note(f"after handshake: {describe_error(exc)}")
        after = None
    if client.ehlo_info is not None:
        probe.evidence["ehlo_after_tls"] = client.ehlo_info.to_dict()
    return verdicts.judge_starttls(True, reply, None, after, probe.evidence["tls"])


def _starttls_failure(exc: BaseException) -> str:
    """The handshake after ``220`` failed: a server that hangs up at once is named as such."""
    reason = str(getattr(exc, "reason", None) or "")
    hung_up = isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                               BrokenPipeError, SMTPClosed)) or "EOF" in reason.upper()
    if hung_up:
        detail = f" ({reason})" if reason else ""
        return ("the server closed the connection right after 220 to STARTTLS, before the "
                f"handshake could start{detail}")
    return describe_error(exc)


def _implicit_tls(probe: Probe) -> CheckResult:
    try:
        banner = probe.open()
    except (ssl.SSLError, OSError, SMTPDriverError) as exc:
        probe.broken = True
        if probe.client.tls is not None:  # the handshake worked; the greeting did not
            raise
        return verdicts.judge_implicit_tls(describe_error(exc), None)
    return verdicts.judge_implicit_tls(None, banner, probe.evidence.get("tls"))


def _start_tls(probe: Probe, *, verify: bool) -> None:
    """STARTTLS and the handshake, without a new EHLO (after a plaintext EHLO)."""
    probe.step = "STARTTLS"
    reply = probe.client.starttls(
        probe.context(verify=verify),
        probe.target.tls_name,
        trust=probe.target.trust if verify else None,
    )
    if reply.code != 220:
        raise probe.abort(Status.ERROR, f"STARTTLS answered {reply.code}",
                          replies=reply.wire_lines)
    assert probe.client.tls is not None
    probe.evidence["tls"] = probe.client.tls.to_dict()


def _handshake_only(probe: Probe, *, verify: bool) -> None:
    """Reach a completed handshake (implicit or STARTTLS) and stop there."""
    if probe.target.implicit_tls:
        probe.open(verify=verify)
        return
    ehlo = probe.greet()
    if not ehlo.has("STARTTLS"):
        raise probe.abort(Status.ERROR, "STARTTLS not advertised (see the starttls check)")
    _start_tls(probe, verify=verify)


def certificate_details(der: bytes) -> dict[str, Any]:
    """Subject, issuer, validity and names of a DER certificate, for evidence."""
    from cryptography import x509

    from harness.protocols.tls import sha256_fingerprint

    cert = x509.load_der_x509_certificate(der)
    details: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "self_signed": cert.subject == cert.issuer,
        "sha256": sha256_fingerprint(der),
    }
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        details["dns_names"] = names.get_values_for_type(x509.DNSName)
        details["ip_addresses"] = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        details["dns_names"] = []
        details["ip_addresses"] = []
    return details


def fetch_certificate(target: Target, params: dict[str, Any]) -> bytes | None:
    """The server's leaf certificate, fetched without verifying it (for evidence/lint)."""

    def body(probe: Probe) -> CheckResult:
        _handshake_only(probe, verify=False)
        der = probe.client.tls.peer_der if probe.client.tls else None
        return CheckResult(check="fetch", status=Status.PASS, summary="",
                           evidence={"der": der})

    result = run_probe("fetch-certificate", target, params, body)
    der = result.evidence.get("der")
    return der if isinstance(der, bytes) else None


@smtp_check(verdicts.CERT_TRUST)
def smtp_certificate_trust(probe: Probe) -> CheckResult:
    """The certificate verifies against the target's trust (CA and host name, or pin)."""
    target, params = probe.target, probe.params
    mode = target.trust.mode
    if mode == "insecure":
        # The target chose not to be verified: the property is unproven, not irrelevant.
        raise probe.skip(verdicts.INSECURE_TRUST_REASON, SkipKind.COULD_NOT_RUN)
    try:
        _handshake_only(probe, verify=True)
    except ssl.SSLCertVerificationError as exc:
        result = verdicts.judge_certificate_trust(describe_error(exc), "verify", mode)
    except PinMismatch as exc:
        result = verdicts.judge_certificate_trust(str(exc), "pin", mode)
    else:
        result = verdicts.judge_certificate_trust(None, None, mode)
    der = probe.client.tls.peer_der if probe.client.tls else None
    if der is None:
        der = fetch_certificate(target, params)
    if der is not None:
        result.evidence["certificate"] = certificate_details(der)
    result.evidence["trust"] = mode
    result.evidence["server_name"] = target.tls_name
    return result


def _lint(der: bytes, hostname: str) -> list[Any]:
    from harness.checks import certlint  # written alongside; imported late on purpose

    return list(certlint.lint_certificate(der, hostname))


@smtp_check(verdicts.CERT_LINT)
def smtp_certificate_lint(probe: Probe) -> CheckResult:
    """The certificate has no lint errors (names, validity, key, signature, usage)."""
    _handshake_only(probe, verify=False)
    der = probe.client.tls.peer_der if probe.client.tls else None
    if der is None:
        raise probe.abort(Status.ERROR, "the server sent no certificate")
    try:
        findings = _lint(der, probe.target.tls_name)
    except ImportError:
        raise probe.abort(Status.ERROR, "certificate linter not available") from None
    result = verdicts.judge_certificate_lint(findings)
    result.evidence["certificate"] = certificate_details(der)
    return result


# -- AUTH and its order --------------------------------------------------------------


@smtp_check(verdicts.AUTH_NOT_BEFORE_TLS)
def auth_not_before_tls(probe: Probe) -> CheckResult:
    """AUTH PLAIN/LOGIN is neither offered nor accepted before TLS."""
    _not_on(("submissions",), probe, "no plaintext phase on implicit TLS")
    ehlo = probe.greet()
    attempts: list[tuple[str, Reply]] = []
    for mechanism in verdicts.PASSWORD_MECHANISMS:
        probe.step = f"AUTH {mechanism} before TLS"
        # No credentials: an initial response would put them on the wire in clear.
        reply = probe.client.command(f"AUTH {mechanism}")
        attempts.append((mechanism, reply))
        if reply.code == 334:
            probe.cancel_auth()
    result = verdicts.judge_auth_not_before_tls(ehlo.auth_mechanisms, attempts)
    result.evidence["auth_before_tls"] = list(ehlo.auth_mechanisms)
    return result


@smtp_check(verdicts.MAIL_BEFORE_AUTH)
def mail_before_auth_refused(probe: Probe) -> CheckResult:
    """After TLS, nothing enters before AUTH: MAIL refused (530), else the recipient.

    ``accept_refusal_at_rcpt`` is accepted and ignored: a MAIL that is accepted is
    always followed by an unauthenticated RCPT, whose refusal is a warning.
    """
    target = probe.target
    _not_on(("smtp",), probe, "an MTA on port 25 accepts mail without AUTH")
    probe.secure()
    probe.step = "MAIL before AUTH"
    mail = probe.client.mail(target.mail_from)
    rcpt = postmaster = None
    if mail.positive:
        probe.step = "RCPT before AUTH"
        recipient = target.rcpt_to
        if verdicts.is_postmaster(recipient):
            # RFC 5321 sec. 4.5.1: mail to postmaster must be taken, and servers exempt it
            # from their AUTH rules (Exim's Debian ACL does). Ask for another local part.
            postmaster = probe.client.rcpt(recipient)
            recipient = verdicts.NOT_POSTMASTER + recipient.rpartition("@")[2]
        rcpt = probe.client.rcpt(recipient)  # never DATA: nothing is submitted
        probe.client.rset()
    return verdicts.judge_mail_before_auth(mail, rcpt, postmaster=postmaster)


_RESET_COMMANDS = ("MAIL", "AUTH")


def _reset_commands(client: SMTPClient, target: Target) -> dict[str, Reply]:
    """MAIL, then AUTH PLAIN without credentials, right after a handshake; undone again."""
    mail = client.mail(target.mail_from)
    if mail.positive:
        client.rset()
    auth = client.command("AUTH PLAIN")  # no credentials: only the code matters
    if auth.code == 334:
        client.command("*")
    return {"MAIL": mail, "AUTH": auth}


def _baseline(probe: Probe, *, new_ehlo: bool) -> dict[str, Reply] | None:
    """The same commands in a session with no EHLO at all (STARTTLS right after the
    greeting), or with a new EHLO after the handshake; None when it cannot be run."""
    client = probe.new_client()
    label = "a new EHLO after TLS" if new_ehlo else "no EHLO at all"
    probe.step = f"baseline session with {label}"
    try:
        banner = client.connect()
        if banner.code != 220:
            return None
        if new_ehlo:
            client.ehlo()
        starttls = client.starttls(probe.context(verify=False), probe.target.tls_name)
        probe.evidence.setdefault("starttls_without_ehlo" if not new_ehlo else
                                  "starttls_after_ehlo", str(starttls))
        if starttls.code != 220:
            return None
        if new_ehlo:
            client.ehlo()
        return _reset_commands(client, probe.target)
    except _DRIVER_ERRORS as exc:
        probe.transcript.note(f"baseline session with {label}: {describe_error(exc)}")
        client.close()
        return None


def _transaction(probe: Probe) -> verdicts.TransactionProbe:
    """MAIL before STARTTLS, RCPT right after the handshake (no EHLO, no MAIL)."""
    client = probe.new_client()
    probe.step = "MAIL before STARTTLS, RCPT after"
    try:
        if client.connect().code != 220 or client.ehlo().code != 250:
            return verdicts.TransactionProbe(None, notes=("greeting or EHLO refused",))
        mail = client.mail(probe.target.mail_from)
        if not mail.positive:
            return verdicts.TransactionProbe(mail)
        starttls = client.starttls(probe.context(verify=False), probe.target.tls_name)
        if starttls.code != 220:
            return verdicts.TransactionProbe(mail, starttls)
        rcpt = client.rcpt(probe.target.rcpt_to)
        if rcpt.positive:
            client.rset()
        return verdicts.TransactionProbe(mail, starttls, rcpt)
    except _DRIVER_ERRORS as exc:
        probe.transcript.note(f"transaction probe: {describe_error(exc)}")
        client.close()
        return verdicts.TransactionProbe(None, notes=(describe_error(exc),))


@smtp_check(verdicts.STATE_RESET)
def starttls_state_reset(probe: Probe) -> CheckResult:
    """After STARTTLS the server forgets what it knew before (RFC 3207 sec. 4.2).

    MAIL and AUTH go right after the handshake without a new EHLO, and the same two
    commands in two baseline sessions (no EHLO at all; a new EHLO after TLS) show
    whether their answers depend on EHLO at all. When they do not (Postfix without
    smtpd_helo_required takes MAIL with no EHLO), a MAIL sent before STARTTLS and a
    RCPT after it show whether the transaction survived; failing both, the check skips.
    """
    _not_on(("submissions",), probe, "no STARTTLS on implicit TLS")
    ehlo = probe.greet()
    if not ehlo.has("STARTTLS"):
        raise probe.skip("STARTTLS not offered (see the starttls check)", SkipKind.COULD_NOT_RUN)
    _start_tls(probe, verify=False)
    probe.step = "MAIL and AUTH after TLS without a new EHLO"
    tested = _reset_commands(probe.client, probe.target)
    bare = _baseline(probe, new_ehlo=False)
    fresh = _baseline(probe, new_ehlo=True)
    probes = [
        verdicts.ResetProbe(command, tested.get(command),
                            bare.get(command) if bare else None,
                            fresh.get(command) if fresh else None)
        for command in _RESET_COMMANDS
    ]
    transaction = None
    if all(p.outcome()[0] == "undecided" for p in probes):
        transaction = _transaction(probe)
    return verdicts.judge_state_reset(probes, transaction)


@smtp_check(verdicts.EHLO_AFTER_TLS_AUTH)
def ehlo_after_tls_lists_auth(probe: Probe) -> CheckResult:
    """The EHLO reply inside TLS offers AUTH PLAIN or LOGIN."""
    _not_on(("smtp",), probe, "an MTA on port 25 need not offer AUTH")
    ehlo = probe.secure()
    return verdicts.judge_ehlo_after_tls_lists_auth(ehlo)


@smtp_check(verdicts.INJECTION)
def starttls_injection(probe: Probe) -> CheckResult:
    """Plaintext pipelined after STARTTLS is not executed inside TLS (CVE-2011-0411)."""
    target, params = probe.target, probe.params
    _not_on(("submissions",), probe, "no STARTTLS on implicit TLS")
    ehlo = probe.greet()
    if not ehlo.has("STARTTLS"):
        raise probe.skip("STARTTLS not offered (see the starttls check)", SkipKind.COULD_NOT_RUN)
    client = probe.client
    probe.step = "STARTTLS with pipelined NOOP"
    client.send_raw(b"STARTTLS\r\nNOOP\r\n", record="STARTTLS\\r\\nNOOP\\r\\n (one write)")
    reply = client.read_reply()
    if reply.code != 220:
        raise probe.abort(Status.ERROR, f"STARTTLS answered {reply.code}",
                          replies=reply.wire_lines)
    if client.pending_bytes:
        probe.evidence["plaintext_after_220"] = client.pending_bytes
    probe.step = "TLS handshake"
    try:
        facts = client.handshake(probe.context(verify=False), target.tls_name)
    except (ssl.SSLError, OSError, SMTPDriverError) as exc:
        raise probe.abort(
            Status.ERROR, f"handshake after pipelined STARTTLS failed: {describe_error(exc)}",
            replies=reply.wire_lines,
        ) from exc
    probe.evidence["tls"] = facts.to_dict()
    probe.step = "waiting for unsolicited replies inside TLS"
    wait = float(params.get("wait", 0.5))
    try:
        unsolicited = client.poll_reply(wait)
    except SMTPClosed:
        return verdicts.judge_injection(reply, None, closed=True)
    extra = None
    if unsolicited is None:
        probe.step = "EHLO inside TLS"
        try:
            client.ehlo()
            extra = client.poll_reply(min(wait, 0.2))
        except SMTPClosed:
            return verdicts.judge_injection(reply, None, closed=True)
    return verdicts.judge_injection(reply, unsolicited, extra)


@smtp_check(verdicts.AUTH_PLAIN)
def auth_plain(probe: Probe) -> CheckResult:
    """AUTH PLAIN (RFC 4616) inside TLS with the configured credentials gets 235."""
    _not_on(("smtp",), probe, "an MTA on port 25 need not offer AUTH")
    user, password = probe.credentials()
    ehlo = probe.secure(verify=True)
    offered = ehlo.auth_mechanisms
    if "PLAIN" not in offered and "LOGIN" in offered:
        # Exchange, Office 365: LOGIN only. PLAIN would be refused with 504 and prove
        # nothing about the credentials; LOGIN shows whether clients can log in.
        probe.step = "AUTH LOGIN (no PLAIN offered)"
        login = probe.auth_login(user, password)
        result = verdicts.judge_auth_plain(None, offered, login)
    else:
        probe.step = "AUTH PLAIN"
        reply = probe.auth_plain(user, password)
        result = verdicts.judge_auth_plain(reply, offered)
    result.evidence["user"] = user
    return result


@smtp_check(verdicts.AUTH_BAD_PASSWORD)
def auth_bad_password(probe: Probe) -> CheckResult:
    """AUTH with a wrong password is refused (535 5.7.8)."""
    target, params = probe.target, probe.params
    _not_on(("smtp",), probe, "an MTA on port 25 need not offer AUTH")
    user = str(params.get("user") or target.user or "ftps-lab-probe")
    wrong = "wrong-" + secrets.token_hex(12)
    while target.password and wrong == target.password:  # pragma: no cover
        wrong = "wrong-" + secrets.token_hex(12)
    probe.transcript.add_secret(wrong)
    offered = probe.secure().auth_mechanisms
    if "PLAIN" not in offered and "LOGIN" in offered:
        # PLAIN would be refused as a mechanism (504), not as a password.
        probe.step = "AUTH LOGIN with a wrong password"
        with authpenalty.login_budget(probe.client, target, failing=True,
                                      transcript=probe.transcript):
            reply = probe.client.auth_login(user, wrong)
        if reply.code == 235 or reply.permanent:
            authpenalty.record(target, success=reply.code == 235)
    else:
        probe.step = "AUTH PLAIN with a wrong password"
        reply = probe.auth_plain(user, wrong, failing=True)
    result = verdicts.judge_auth_bad_password(reply)
    result.evidence["user"] = user
    return result


# -- relaying ------------------------------------------------------------------------


@smtp_check(verdicts.RELAY_REFUSED)
def relay_refused(probe: Probe) -> CheckResult:
    """Unauthenticated relaying to a foreign domain is refused, in every address form."""
    target, params = probe.target, probe.params
    local_domain = str(params.get("local_domain") or domain_of(target.rcpt_to))
    relay_to = str(params.get("relay_to") or target.relay_to)
    probe.secure()
    client = probe.client
    attempts: list[verdicts.RelayAttempt] = []
    forms = relay_forms(relay_to, local_domain)
    for form in forms:
        probe.step = f"relay probe {form.name}"
        try:
            if attempts:
                client.rset()
            mail = client.mail(target.mail_from)
            if not mail.positive:
                attempts.append(verdicts.RelayAttempt(form.name, form.address, "MAIL", mail))
                continue
            rcpt = client.command(f"RCPT {form.rcpt_argument}")
            attempts.append(verdicts.RelayAttempt(form.name, form.address, "RCPT", rcpt))
        except SMTPClosed:
            probe.broken = True
            probe.transcript.note("server closed the session during relay probes")
            attempts += [
                verdicts.RelayAttempt(f.name, f.address, "RCPT", None)
                for f in forms[len(attempts):]
            ]
            break
    if not probe.broken:
        client.rset()
    result = verdicts.judge_relay(attempts)
    result.evidence["relay_attempts"] = [a.to_dict() for a in attempts]
    result.evidence["local_domain"] = local_domain
    return result


# -- extensions and delivery ---------------------------------------------------------


@smtp_check(verdicts.EXTENSIONS)
def extensions(probe: Probe) -> CheckResult:
    """Submission: AUTH after TLS (MUST) and RFC 6409's SHOULDs; 25: best practice."""
    final = probe.secure()
    in_tls = probe.client.tls is not None
    before = probe.pre_tls_ehlo or (None if in_tls else final)
    after_tls = final if in_tls else None
    result = verdicts.judge_extensions(before, after_tls, probe.target.protocol)
    result.evidence["before_tls"] = verdicts.extension_facts(before)
    result.evidence["after_tls"] = verdicts.extension_facts(after_tls)
    return result


def build_probe_message(
    mail_from: str, rcpt_to: str, message_id: str, subject: str = "ftps-lab probe"
) -> bytes:
    """A small RFC 5322 message with a unique Message-ID, CRLF line ends throughout."""
    body = (
        f"From: <{mail_from}>\r\n"
        f"To: <{rcpt_to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This message was sent by the ftps-lab harness to prove submission.\r\n"
        ".A line starting with a dot proves dot-stuffing.\r\n"
    )
    return normalize_message(body.encode("ascii"))


def _mailbox_from(value: Any) -> Any:
    """A mailbox object as given, or one loaded from a lab's mailbox directory."""
    if isinstance(value, (str, Path)):
        return Mailbox.from_directory(value)
    return value


@smtp_check(verdicts.SUBMIT)
def submit_message(probe: Probe) -> CheckResult:
    """A test message is accepted (250) after TLS and AUTH (MTA: TLS, local recipient)."""
    target, params = probe.target, probe.params
    mta = target.protocol == "smtp"
    if not mta:
        probe.credentials()
    probe.secure(verify=not mta)
    if not mta:
        probe.login()
    rcpt_to = str(params.get("rcpt_to") or target.rcpt_to)
    message_id = f"<{uuid.uuid4().hex}@ftps-lab.probe>"
    message = build_probe_message(target.mail_from, rcpt_to, message_id)
    probe.evidence.update(
        message_id=message_id,
        sha256=hashlib.sha256(message).hexdigest(),
        size=len(message),
        rcpt_to=rcpt_to,
    )
    client = probe.client
    probe.step = "MAIL"
    mail = client.mail(target.mail_from)
    rcpt = data = None
    if mail.positive:
        probe.step = "RCPT"
        rcpt = client.rcpt(rcpt_to)
        if rcpt.positive:
            probe.step = "DATA"
            data = client.data(message)
    mailbox = params.get("mailbox")
    delivered = None
    if mailbox is not None and data is not None and data.positive:
        box = _mailbox_from(mailbox)
        waiter = getattr(box, "wait_for", None)
        if callable(waiter):
            found = waiter(message_id, float(params.get("delivery_wait", 2.0)))
            delivered = found.data if found is not None else None
        else:
            delivered = find_in_mailbox(box, message_id)
    result = verdicts.judge_submit(
        mail, rcpt, data, delivered, message, checked_mailbox=mailbox is not None
    )
    if data is not None:
        result.evidence["queue_reply"] = str(data)
    return result

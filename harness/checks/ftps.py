"""FTPS checks: explicit (AUTH TLS) and implicit (port 990) FTP over TLS.

Each check drives one or two sessions through
:class:`~harness.protocols.ftps_client.FTPSClient` and hands what it saw to a pure
function in :mod:`harness.checks.ftps_verdicts`. Trust rule: only the certificate
checks judge the certificate, so sessions that send no secret use a non-verifying TLS
context; the password only ever goes over TLS verified as ``target.trust`` says, except
in ``plaintext-login-refused``, which sends the real password in clear text only to a
loopback target or when the scenario asks for it (``plaintext_password: true``).
"""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any

from harness.checks import CheckFunction, authpenalty, certlint, check, identify
from harness.checks import ftps_verdicts as verdicts
from harness.checks.ftps_verdicts import FileRound, LegacyOutcome, TransferSession
from harness.protocols.ftp import FTPProtocolError, Reply
from harness.protocols.ftps_client import (
    FTPClosed,
    FTPConnectTimeout,
    FTPControlLost,
    FTPDriverError,
    FTPSClient,
    FTPTimeout,
    Transfer,
    is_loopback,
    random_chunks,
)
from harness.protocols.tls import (
    PinMismatch,
    TLSFacts,
    Trust,
    classify_tls_failure,
    client_context,
    explain_tls_failure,
    is_protocol_alert,
    legacy_client_context,
)
from harness.results import CheckResult, SkipKind, Status
from harness.targets import Target
from harness.transcript import Transcript

FTPS_PROTOCOLS = ("ftps", "ftps-implicit")
DEFAULT_LEGACY_VERSIONS = ("1.0", "1.1")
DEFAULT_FILES = 6
DEFAULT_SIZE = 256 * 1024
_DRIVER_ERRORS = (FTPDriverError, FTPProtocolError, ssl.SSLError, OSError)

__all__ = ["FTPS_PROTOCOLS", "client_can_offer", "describe_error", "tls_evidence"]


class _Abort(Exception):
    """Stop a check early with a finished verdict (usually an unmet precondition)."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.summary)
        self.result = result


def describe_error(exc: BaseException, step: str = "", timeout: float | None = None) -> str:
    """One line naming the failure the way an operator searches for it."""
    if isinstance(exc, FTPConnectTimeout):
        return str(exc)
    if isinstance(exc, FTPTimeout) and step == "banner" and timeout is not None:
        return f"no banner within {timeout:g} s"
    if isinstance(exc, PinMismatch):
        return f"pin mismatch: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {explain_tls_failure(exc)}"
    if isinstance(exc, FTPControlLost):
        return str(exc)
    if isinstance(exc, FTPClosed):
        return f"the server closed the control connection ({exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"timed out{f' after {timeout:g} s' if timeout else ''}"
    if isinstance(exc, FTPProtocolError):
        return f"malformed reply: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def tls_evidence(facts: TLSFacts | None) -> dict[str, Any]:
    """TLS version, cipher and the certificate's facts, for evidence."""
    if facts is None:
        return {}
    out: dict[str, Any] = facts.to_dict()
    if facts.peer_der:
        try:
            cert = certlint.certificate_facts(facts.peer_der)
        except ValueError as exc:  # a certificate cryptography cannot parse
            out["certificate"] = {"error": str(exc)}
            return out
        out["certificate"] = {key: cert[key] for key in (
            "subject", "issuer", "dns_names", "ip_addresses", "not_after", "days_left",
            "self_signed", "sha256", "key_type", "key_bits")}
    return out


def client_can_offer(context: ssl.SSLContext) -> str | None:
    """None if ``context`` can produce a ClientHello, else OpenSSL's reason.

    Runs a handshake against memory buffers, so nothing is sent anywhere: a client
    that cannot offer TLS 1.0 must never have that counted as the server's refusal.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname="client-check.invalid")
    try:
        sslobj.do_handshake()
    except ssl.SSLWantReadError:
        return None if outgoing.pending else "no ClientHello produced"
    except ssl.SSLError as exc:
        return str(exc.reason or exc)
    return None


class Probe:
    """One check's sessions: clients, the shared redacted transcript, evidence, step."""

    def __init__(self, name: str, target: Target, params: dict[str, Any]) -> None:
        self.name = name
        self.target = target
        self.params = params
        self.transcript = Transcript([target.password] if target.password else [])
        self.timeout = float(params.get("timeout", target.timeout))
        self.evidence: dict[str, Any] = {"protocol": target.protocol}
        self.step = "connect"
        self.clients: list[FTPSClient] = []
        self.tag = secrets.token_hex(4)

    # -- helpers ----------------------------------------------------------------------

    def context(self, *, verify: bool, tls: str | None = None) -> ssl.SSLContext:
        trust = self.target.trust if verify else Trust(insecure=True)
        if tls is not None:
            return client_context(trust, min_version=tls, max_version=tls)
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

    def explicit_only(self) -> None:
        if self.target.implicit_tls:
            raise self.skip("implicit FTPS has no plaintext phase", SkipKind.NOT_APPLICABLE)

    def expect(self, reply: Reply, codes: tuple[int, ...], what: str, see: str = "") -> Reply:
        """Abort with ``error`` when a precondition step is not answered as needed."""
        if reply.code not in codes:
            hint = f" (see {see})" if see else ""
            text = reply.first[4:].strip() if reply.first[:3] == str(reply.code) else ""
            said = f": {text[:120]}" if text else ""
            raise self.abort(Status.ERROR, f"{what} answered {reply.code}{said}{hint}",
                             replies=reply.wire_lines)
        return reply

    # -- sessions ---------------------------------------------------------------------

    def client(
        self,
        *,
        verify: bool = False,
        tls: str | None = None,
        reuse: bool = True,
        context: ssl.SSLContext | None = None,
    ) -> FTPSClient:
        target = self.target
        if self.clients:
            self.transcript.note(f"--- session {len(self.clients) + 1} ---")
        client = FTPSClient(
            target.host,
            target.port,
            context=context or self.context(verify=verify, tls=tls),
            server_name=target.tls_name,
            trust=target.trust if verify else None,
            implicit=target.implicit_tls,
            timeout=self.timeout,
            transfer_timeout=self.params.get("transfer_timeout"),
            reuse_session=reuse,
            transcript=self.transcript,
        )
        self.clients.append(client)
        return client

    def connect(self, client: FTPSClient) -> Reply:
        """TCP (+ implicit TLS) and a 220 banner, else abort with ``error``."""
        self.step = "banner"
        banner = client.connect()
        self.evidence.setdefault("banner", banner.wire_lines)
        return self.expect(banner, (220,), "the banner", "banner")

    def secure(self, client: FTPSClient) -> None:
        """AUTH TLS on explicit targets (implicit ones are already under TLS)."""
        if client.implicit:
            return
        self.step = "AUTH TLS"
        self.expect(client.auth_tls(), (234,), "AUTH TLS", "auth-tls")

    def login_replies(self, client: FTPSClient, user: str, password: str
                      ) -> tuple[Reply, Reply | None]:
        """USER/PASS with time for the server's penalty after failed logins
        (``authpenalty``); the outcome is counted for later logins."""
        with authpenalty.login_budget(client, self.target, transcript=self.transcript):
            first, second = client.login(user, password)
        final = second if second is not None else first
        if final.code == 230 or (second is not None and second.negative):
            authpenalty.record(self.target, success=final.code == 230)
        return first, second

    def login(self, client: FTPSClient) -> None:
        user, password = self.credentials()
        self.step = "USER/PASS"
        first, second = self.login_replies(client, user, password)
        final = second if second is not None else first
        if final.code != 230:
            raise self.abort(Status.ERROR, f"login failed with {final.code} (see login)",
                             replies=[*first.wire_lines, *(second.wire_lines if second else [])])

    def protect(self, client: FTPSClient) -> None:
        self.step = "PBSZ/PROT"
        self.expect(client.pbsz(0), (200,), "PBSZ 0", "pbsz-prot-p")
        self.expect(client.prot("P"), (200,), "PROT P", "pbsz-prot-p")

    def session(
        self, *, tls: str | None = None, reuse: bool = True, protect: bool = True
    ) -> FTPSClient:
        """A logged-in, verified, protected session in binary mode (curl's order)."""
        self.credentials()
        client = self.client(verify=True, tls=tls, reuse=reuse)
        self.connect(client)
        self.secure(client)
        if client.tls is not None:
            self.evidence.setdefault("tls", tls_evidence(client.tls))
        self.login(client)
        if protect:
            self.protect(client)
        self.step = "TYPE I"
        self.expect(client.type_binary(), (200,), "TYPE I")
        return client

    def finish(self, result: CheckResult) -> CheckResult:
        for client in self.clients:
            if client.sock is not None:
                client.quit_quietly()
            client.close()
        result.check = self.name
        for key, value in self.evidence.items():
            result.evidence.setdefault(key, value)
        result.transcript = self.transcript.lines
        # Advice in the identified server's own settings (IIS, vsftpd, ProFTPD, ...).
        identify.apply(result, result.transcript, self.evidence.get("banner") or ())
        return result


def run_probe(
    name: str, target: Target, params: dict[str, Any], body: Callable[[Probe], CheckResult]
) -> CheckResult:
    """Run ``body``; aborts and session errors become results, never exceptions."""
    start = time.monotonic()
    probe = Probe(name, target, params)
    try:
        result = body(probe)
    except _Abort as abort:
        result = abort.result
    except PinMismatch as exc:
        result = CheckResult(
            check=name, status=Status.ERROR, summary=f"{probe.step}: {describe_error(exc)}",
            advice="The certificate does not match the pin; see certificate-trust.",
        )
    except _DRIVER_ERRORS as exc:
        advice = ""
        if isinstance(exc, ssl.SSLCertVerificationError):
            advice = "See certificate-trust; configure trust (ca_file, pin) for the target."
        elif isinstance(exc, ConnectionRefusedError):
            advice = "Nothing listens on that port: check the service and the firewall."
        result = CheckResult(
            check=name, status=Status.ERROR,
            summary=f"{probe.step}: {describe_error(exc, probe.step, probe.timeout)}",
            advice=advice,
        )
    result = probe.finish(result)
    result.duration = time.monotonic() - start
    return result


def ftps_check(
    name: str, protocols: tuple[str, ...] = FTPS_PROTOCOLS
) -> Callable[[Callable[[Probe], CheckResult]], CheckFunction]:
    """Register ``body(probe)`` as the check ``name`` with the registry's signature."""

    def decorate(body: Callable[[Probe], CheckResult]) -> CheckFunction:
        def function(target: Target, params: dict[str, Any]) -> CheckResult:
            return run_probe(name, target, params, body)

        function.__name__ = body.__name__
        function.__qualname__ = body.__qualname__
        function.__doc__ = body.__doc__
        return check(name, protocols)(function)

    return decorate


# -- banner, FEAT, AUTH TLS ----------------------------------------------------------------


@ftps_check(verdicts.BANNER)
def banner(probe: Probe) -> CheckResult:
    """The server greets with 220 within the timeout (after the TLS handshake if implicit)."""
    client = probe.client()
    probe.step = "banner"
    try:
        reply = client.connect()
    except FTPConnectTimeout:
        raise
    except FTPTimeout:
        return verdicts.judge_banner(None, f"no banner within {probe.timeout:g} s")
    except FTPClosed as exc:
        return verdicts.judge_banner(None, f"connection closed before the banner: {exc}")
    return verdicts.judge_banner(reply)


@ftps_check(verdicts.FEAT_AUTH_TLS)
def feat_auth_tls(probe: Probe) -> CheckResult:
    """FEAT, before TLS, lists AUTH TLS (explicit FTPS only)."""
    probe.explicit_only()
    client = probe.client()
    probe.connect(client)
    probe.step = "FEAT"
    reply = client.feat()
    assert client.features is not None
    if reply.code == 211 and client.features.auth_tls:
        return verdicts.judge_feat_auth_tls(reply, client.features)
    # Not listed: does AUTH TLS work all the same? Clients send it without reading FEAT.
    probe.step = "AUTH TLS (not listed in FEAT)"
    auth = client.command("AUTH TLS")
    error: str | None = None
    if auth.code == 234:
        try:
            client.handshake()
        except ssl.SSLError as exc:
            error = f"TLS handshake failed: {explain_tls_failure(exc)}"
        except OSError as exc:
            error = describe_error(exc)
    tls = tls_evidence(client.tls) if auth.code == 234 and error is None else None
    return verdicts.judge_feat_auth_tls(reply, client.features, auth, error, tls or None)


@ftps_check(verdicts.AUTH_TLS)
def auth_tls(probe: Probe) -> CheckResult:
    """AUTH TLS is answered 234 and the TLS handshake completes (implicit: on connect)."""
    client = probe.client()
    implicit = probe.target.implicit_tls
    reply: Reply | None = None
    probe.step = "TLS handshake" if implicit else "banner"
    try:
        if implicit:
            client.connect()
        else:
            probe.connect(client)
            probe.step = "AUTH TLS"
            reply = client.auth_tls()
    except ssl.SSLError as exc:
        return verdicts.judge_auth_tls(reply, None, explain_tls_failure(exc), implicit=implicit)
    return verdicts.judge_auth_tls(reply, tls_evidence(client.tls) or None, None,
                                   implicit=implicit)


# -- certificates --------------------------------------------------------------------------


def _handshake(probe: Probe, client: FTPSClient) -> None:
    """Only as far as the TLS handshake on the control connection."""
    if client.implicit:
        probe.step = "TLS handshake"
        client.connect()
        return
    probe.connect(client)
    probe.step = "AUTH TLS"
    probe.expect(client.auth_tls(), (234,), "AUTH TLS", "auth-tls")


def _peer_certificate(probe: Probe) -> bytes | None:
    """The leaf, from a non-verifying handshake (for evidence and lint)."""
    client = probe.client(verify=False)
    _handshake(probe, client)
    der = client.tls.peer_der if client.tls else None
    client.quit_quietly()
    client.close()
    return der


@ftps_check(verdicts.CERT_TRUST)
def certificate_trust(probe: Probe) -> CheckResult:
    """The certificate verifies as the target's trust says (CA + host name, or pin)."""
    mode = probe.target.trust.mode
    if mode == "insecure":  # nothing to verify against: could not run (no connection)
        return verdicts.judge_certificate_trust(mode, None)
    client = probe.client(verify=True)
    try:
        _handshake(probe, client)
    except ssl.SSLCertVerificationError as exc:
        kind = verdicts.classify_verify_error(exc.verify_code, exc.verify_message or str(exc))
        result = verdicts.judge_certificate_trust(mode, kind, str(exc.verify_message or exc))
    except PinMismatch as exc:
        result = verdicts.judge_certificate_trust(mode, "pin", str(exc))
    else:
        result = verdicts.judge_certificate_trust(mode, None)
    der = client.tls.peer_der if client.tls else None
    if client.tls is not None:  # the negotiated version and cipher, for reports
        result.evidence.update(
            {k: v for k, v in client.tls.to_dict().items() if k in ("tls_version", "cipher")}
        )
    client.close()
    if der is None:
        der = _peer_certificate(probe)
    if der is not None:
        facts = certlint.certificate_facts(der)
        result.evidence["certificate"] = facts
        result.evidence["certificate_sha256"] = facts["sha256"]
    result.evidence["server_name"] = probe.target.tls_name
    return result


@ftps_check(verdicts.CERT_LINT)
def certificate_lint(probe: Probe) -> CheckResult:
    """The leaf has no lint errors: validity, SAN host name, key size, hash, EKU."""
    der = _peer_certificate(probe)
    if der is None:
        raise probe.abort(Status.ERROR, "the server sent no certificate")
    findings = certlint.lint_certificate(der, probe.target.tls_name)
    result = verdicts.judge_certificate_lint(findings, certlint.certificate_facts(der))
    result.evidence["server_name"] = probe.target.tls_name
    return result


# -- legacy TLS ----------------------------------------------------------------------------


def _offer_legacy(probe: Probe, version: str) -> LegacyOutcome:
    """Offer only TLS ``version``; refused, accepted, untestable here, or no verdict.

    "untestable" is decided by :data:`harness.protocols.tls.TLS_REASONS`: a reason this
    client raised itself (it could not offer the version, or it refused the server's
    legacy signature or key) says nothing about the server.
    """
    try:
        context = legacy_client_context(version)
    except (ValueError, ssl.SSLError) as exc:
        return LegacyOutcome(version, "untestable", f"cannot build the client: {exc}")
    reason = client_can_offer(context)
    if reason is not None:
        probe.transcript.note(f"TLS {version}: this client cannot offer it: {reason}")
        return LegacyOutcome(version, "untestable", reason)
    client = probe.client(context=context)
    probe.transcript.note(f"offering only TLS {version}")
    try:
        _handshake(probe, client)
    except ssl.SSLError as exc:
        known = classify_tls_failure(exc)
        if known is not None and known.this_client:
            probe.transcript.note(f"TLS {version}: this client cannot complete it here")
            return LegacyOutcome(version, "untestable", explain_tls_failure(exc))
        if is_protocol_alert(exc):
            return LegacyOutcome(version, "refused", str(exc.reason or exc))
        return LegacyOutcome(version, "error", describe_error(exc))
    except ConnectionResetError as exc:  # a reset in the middle of the handshake
        return LegacyOutcome(version, "refused", f"connection reset: {exc}")
    finally:
        client.close()
    negotiated = client.tls.version if client.tls else None
    return LegacyOutcome(version, "accepted", f"handshake completed with {negotiated}",
                         negotiated)


@ftps_check(verdicts.LEGACY_TLS)
def legacy_tls_refused(probe: Probe) -> CheckResult:
    """A client offering only TLS 1.0 (or 1.1) is refused during the handshake."""
    versions = probe.params.get("versions", list(DEFAULT_LEGACY_VERSIONS))
    if isinstance(versions, str):
        versions = [versions]
    unknown = [str(v) for v in versions if str(v) not in DEFAULT_LEGACY_VERSIONS]
    if unknown:
        raise probe.abort(Status.ERROR, f"param versions: {', '.join(unknown)} is not a legacy "
                          "TLS version (use 1.0 and/or 1.1)")
    outcomes = [_offer_legacy(probe, str(version)) for version in versions]
    return verdicts.judge_legacy_tls(outcomes)


# -- PBSZ / PROT ---------------------------------------------------------------------------


@ftps_check(verdicts.PBSZ_BEFORE_AUTH)
def pbsz_before_auth_refused(probe: Probe) -> CheckResult:
    """PBSZ 0 before AUTH TLS is refused (503), as RFC 2228 orders (explicit only)."""
    probe.explicit_only()
    client = probe.client()
    probe.connect(client)
    probe.step = "PBSZ before AUTH"
    return verdicts.judge_pbsz_before_auth(client.pbsz(0))


@ftps_check(verdicts.PBSZ_PROT)
def pbsz_prot_p(probe: Probe) -> CheckResult:
    """After AUTH TLS, PBSZ 0 and PROT P are answered 200 (after login when possible)."""
    has_login = bool(probe.target.user and probe.target.password)
    client = probe.client(verify=has_login)
    probe.connect(client)
    probe.secure(client)
    if has_login:
        probe.login(client)
    probe.evidence["order"] = "after login" if has_login else "before login (no credentials)"
    probe.step = "PBSZ"
    pbsz = client.pbsz(0)
    prot = None
    if pbsz.code == 200:
        probe.step = "PROT P"
        prot = client.prot("P")
    return verdicts.judge_pbsz_prot(pbsz, prot)


# -- login and policy ----------------------------------------------------------------------


@ftps_check(verdicts.LOGIN)
def login(probe: Probe) -> CheckResult:
    """USER/PASS over (verified) TLS is answered 230."""
    user, password = probe.credentials()
    client = probe.client(verify=True)
    probe.connect(client)
    probe.secure(client)
    probe.evidence["tls"] = tls_evidence(client.tls)
    probe.step = "USER/PASS"
    first, second = probe.login_replies(client, user, password)
    return verdicts.judge_login(first, second)


def _plaintext_password_allowed(probe: Probe) -> bool:
    value = probe.params.get("plaintext_password")
    if value is None:
        return is_loopback(probe.target.host)
    return bool(value)


@ftps_check(verdicts.PLAINTEXT_LOGIN)
def plaintext_login_refused(probe: Probe) -> CheckResult:
    """USER/PASS before AUTH TLS: refused under policy 'require', accepted under 'allow'."""
    probe.explicit_only()
    target = probe.target
    policy = target.policy
    real = bool(target.user and target.password) and _plaintext_password_allowed(probe)
    if policy == "allow" and not (target.user and target.password):
        raise probe.skip(
            "policy 'allow' needs credentials to prove plaintext login works",
            SkipKind.COULD_NOT_RUN,
        )
    user = target.user or "ftps-lab-probe"
    decoy = f"decoy-{secrets.token_hex(6)}"
    password = target.password if real and target.password else decoy
    client = probe.client()
    probe.connect(client)
    probe.step = "plaintext USER"
    first = client.user(user)
    second = None
    if first.code in (331, 332):
        probe.step = "plaintext PASS"
        # A refusal (a decoy always is) may come late: vsftpd's delay_failed_login.
        with authpenalty.login_budget(client, target, failing=True,
                                      transcript=probe.transcript):
            second = client.password(password)
        if second.code == 230 or second.negative:
            authpenalty.record(target, success=second.code == 230)
    probe.evidence["password_sent"] = "real" if real else "decoy"
    return verdicts.judge_plaintext_login(first, second, policy, decoy=not real)


@ftps_check(verdicts.PROT_C)
def prot_c_refused(probe: Probe) -> CheckResult:
    """After a TLS login, PROT C plus a LIST: refused under 'require', working under 'allow'."""
    client = probe.session(protect=False)
    probe.step = "PBSZ 0"
    probe.expect(client.pbsz(0), (200,), "PBSZ 0", "pbsz-prot-p")
    probe.step = "PROT C"
    prot = client.prot("C")
    transfer: Transfer | None = None
    if not prot.negative:
        probe.step = "LIST without protection"
        transfer = client.list()
    return verdicts.judge_prot_c(prot, transfer, probe.target.policy)


# -- passive mode --------------------------------------------------------------------------


@ftps_check(verdicts.PASV_ADDRESS)
def pasv_address(probe: Probe) -> CheckResult:
    """PASV hands out the address clients reach and a port of the configured range."""
    client = probe.session()
    if client.peer_ip is not None and ":" in client.peer_ip:
        raise probe.skip(
            "the control connection is IPv6: PASV is IPv4-only (see epsv)",
            SkipKind.NOT_APPLICABLE,
        )
    expected = probe.target.passive_address or client.peer_ip or probe.target.host
    probe.step = "PASV + LIST"
    transfer = client.list(mode="PASV")
    assert transfer.setup is not None
    return verdicts.judge_pasv_address(transfer.setup, transfer.passive, expected,
                                       probe.target.passive_ports, transfer)


@ftps_check(verdicts.EPSV)
def epsv(probe: Probe) -> CheckResult:
    """EPSV is answered 229 with a port of the range, and a LIST over it works."""
    client = probe.session()
    probe.step = "EPSV + LIST"
    transfer = client.list(mode="EPSV")
    assert transfer.setup is not None
    ok_setup = transfer.setup.code == 229
    ipv6 = client.peer_ip is not None and ":" in client.peer_ip
    return verdicts.judge_epsv(transfer.setup, transfer.passive, probe.target.passive_ports,
                               transfer if ok_setup else None, ipv6=ipv6)


# -- data channel --------------------------------------------------------------------------


def _name(probe: Probe, index: int) -> str:
    """A file name no other run (or a file already on the server) can collide with."""
    return f"ftps-lab-{probe.tag}-{index}.bin"


@ftps_check(verdicts.SESSION_REUSE)
def data_session_reuse(probe: Probe) -> CheckResult:
    """Data connections resume the control TLS session; records whether reuse is required.

    ``params: {session_reuse_required: true|false}`` overrides the target's
    ``session_reuse_required`` (the lab sets it from ``require_session_reuse``).
    """
    required = probe.params.get("session_reuse_required", probe.target.session_reuse_required)
    if required is not None and not isinstance(required, bool):
        raise probe.abort(Status.ERROR, "param session_reuse_required must be true or false, "
                                        f"not {required!r}")
    client = probe.session()
    name = _name(probe, 0)
    probe.step = "LIST with session reuse"
    transfers = [client.list()]
    probe.step = "STOR with session reuse"
    transfers.append(client.stor(name, random_chunks(16 * 1024)))
    if transfers[-1].ok:
        probe.step = "RETR with session reuse"
        transfers.append(client.retr(name))
        probe.step = "DELE"
        client.dele(name)
    client.quit_quietly()
    client.close()
    probe.step = "LIST without session reuse (second login)"
    without: Transfer | None = None
    error: str | None = None
    try:
        other = probe.session(reuse=False)
        without = other.list()
    except FTPControlLost as exc:  # e.g. a server that hangs up instead of answering
        without, error = exc.transfer, describe_error(exc)
    except (FTPDriverError, FTPProtocolError, OSError) as exc:
        error = describe_error(exc)
    if error is not None:
        probe.evidence["without_reuse_error"] = error
    return verdicts.judge_session_reuse(transfers, without, required, error)


@ftps_check(verdicts.TRANSFERS)
def transfers(probe: Probe) -> CheckResult:
    """Files stored, retrieved byte for byte (SHA-256), listed and deleted on ONE login."""
    params = probe.params
    tls = params.get("tls")
    tls = str(tls) if tls is not None else None
    if tls is not None and tls not in ("1.2", "1.3"):
        raise probe.abort(Status.ERROR, f"param tls must be '1.2' or '1.3', not {tls!r}")
    count = int(params.get("files", DEFAULT_FILES))
    size = int(params.get("size", DEFAULT_SIZE))
    mode = str(params.get("mode", "PASV")).upper()
    if mode not in ("PASV", "EPSV"):
        raise probe.abort(Status.ERROR, f"param mode must be PASV or EPSV, not {mode!r}")
    try:
        client = probe.session(tls=tls)
    except ssl.SSLError as exc:
        if tls is None or isinstance(exc, ssl.SSLCertVerificationError):
            raise
        return CheckResult(
            check=probe.name, status=Status.FAIL,
            summary=f"server cannot negotiate TLS {tls}: {describe_error(exc)}",
            expected=f"a TLS {tls} handshake", observed=describe_error(exc),
            advice=verdicts.ADVICE_TLS_VERSIONS,
        )
    session = TransferSession(forced_tls=tls, negotiated=client.tls.version if client.tls else None)
    try:
        _transfer_rounds(probe, client, session, count, size, mode)
    except FTPControlLost as exc:
        session.control_lost = exc.transfer
        return verdicts.judge_transfers(session)
    for item in session.files:
        if item.stor is not None and item.stor.ok:
            probe.step = f"DELE {item.name}"
            item.dele = client.dele(item.name)
    probe.step = "QUIT"
    session.quit = client.quit()
    session.control_shutdown = client.shutdown_tls()
    return verdicts.judge_transfers(session)


def _transfer_rounds(
    probe: Probe, client: FTPSClient, session: TransferSession, count: int, size: int, mode: str
) -> None:
    """STOR + RETR per file, then one LIST; stops at the first failed data connection
    (the verdict is known, and another stalled connection would only cost time)."""
    for index in range(count):
        item = FileRound(_name(probe, index), size + index)
        session.files.append(item)
        probe.step = f"STOR {item.name}"
        item.stor = client.stor(item.name, random_chunks(item.size), mode=mode)
        if not item.stor.ok:
            return
        probe.step = f"RETR {item.name}"
        item.retr = client.retr(item.name, mode=mode)
        if not item.retr.ok:
            return
    probe.step = "LIST"
    listing = client.list(mode=mode)
    session.listings.append(listing)
    if listing.ok:
        names = listing.data.decode("utf-8", errors="replace")
        for item in session.files:
            item.listed = item.name in names


@ftps_check(verdicts.QUIT)
def quit_(probe: Probe) -> CheckResult:
    """QUIT is answered 221 and the server closes the connection."""
    client = probe.client()
    probe.connect(client)
    probe.secure(client)
    probe.step = "QUIT"
    reply = client.quit()
    probe.step = "close"
    return verdicts.judge_quit(reply, client.shutdown_tls())

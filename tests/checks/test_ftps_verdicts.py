"""The FTPS judges on reply fixtures: the codes real servers send, both ways."""

from __future__ import annotations

import pytest

from harness.checks import ftps_verdicts as v
from harness.checks.certlint import Finding
from harness.protocols.ftp import Features, Reply, parse_feat, parse_reply
from harness.protocols.ftps_client import Passive, Transfer
from harness.protocols.tls import TLSFacts
from harness.results import SkipKind, Status


def r(text: str) -> Reply:
    return parse_reply(text)


def facts(version: str = "TLSv1.3", reused: bool = True) -> TLSFacts:
    return TLSFacts(version=version, cipher="TLS_AES_256_GCM_SHA384", cipher_bits=256,
                    session_reused=reused)


def done(
    command: str = "LIST", *, size: int = 10, sha: str = "aa", tls: TLSFacts | None = None,
    final: str = "226 Transfer complete.",
) -> Transfer:
    """A transfer that went through PASV, 150 and a final reply."""
    return Transfer(
        command=command,
        setup=r("227 Entering Passive Mode (127,0,0,1,195,80)."),
        passive=Passive("PASV", r("227 (127,0,0,1,195,80)"), "127.0.0.1", 50000, "127.0.0.1"),
        preliminary=r("150 Opening data connection."),
        final=r(final),
        size=size,
        sha256=sha,
        protected=tls is not None,
        tls=tls,
    )


def refused_at(stage: str, text: str) -> Transfer:
    reply = r(text)
    if stage == "setup":
        return Transfer(command="LIST", setup=reply)
    return Transfer(command="LIST", setup=r("227 (127,0,0,1,195,80)"), preliminary=reply,
                    final=reply)


# --- banner, FEAT, AUTH TLS ---------------------------------------------------------------


def test_banner() -> None:
    assert v.judge_banner(r("220 Microsoft FTP Service")).status is Status.PASS
    busy = v.judge_banner(r("421 Too many users"))
    assert busy.status is Status.FAIL and "connection limits" in busy.advice
    assert busy.replies == ["421 Too many users"]
    silent = v.judge_banner(None, "no banner within 5 s")
    assert silent.status is Status.FAIL and silent.summary == "no banner within 5 s"


def test_feat_auth_tls() -> None:
    iis = r("211-Extended features supported:\r\n AUTH TLS;TLS-C;SSL;TLS-P;\r\n PBSZ\r\n211 END")
    result = v.judge_feat_auth_tls(iis, parse_feat(iis))
    assert result.status is Status.PASS and "TLS-C" in result.summary
    plain = r("211-Features:\r\n EPSV\r\n SIZE\r\n211 End")
    result = v.judge_feat_auth_tls(plain, parse_feat(plain))
    assert result.status is Status.FAIL and "ssl_enable=YES" in result.advice
    assert "EPSV" in result.observed
    refused = v.judge_feat_auth_tls(r("502 Command not implemented."), Features())
    assert refused.status is Status.FAIL and "not 211" in refused.summary


# vsftpd 3.0.3 with ssl_tlsv1=NO (Debian 12, TLS 1.0 off): FEAT without AUTH TLS...
VSFTPD_FEAT = ("211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n PBSZ\r\n PROT\r\n"
               " REST STREAM\r\n SIZE\r\n TVFS\r\n211 End")
TLS13 = {"tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}


def test_feat_without_auth_tls_but_auth_tls_works_is_a_warning() -> None:
    """...yet ``AUTH TLS`` gets ``234 Proceed with negotiation.`` and TLS comes up: clients
    that send AUTH TLS (all of them, FEAT or not) are served: a warning, not a fail."""
    feat = r(VSFTPD_FEAT)
    result = v.judge_feat_auth_tls(feat, parse_feat(feat), r("234 Proceed with negotiation."),
                                   None, TLS13)
    assert result.status is Status.WARN
    assert result.summary.startswith("FEAT does not list AUTH TLS, but AUTH TLS works (234, "
                                     "TLSv1.3)")
    assert "ssl_tlsv1=YES" in result.advice
    assert result.replies[-1] == "234 Proceed with negotiation."
    assert result.evidence["auth_tls_anyway"]["tls_version"] == "TLSv1.3"
    # No FEAT at all (an old server), AUTH TLS working: the same warning.
    no_feat = v.judge_feat_auth_tls(r("500 'FEAT': command not understood"), Features(),
                                    r("234 AUTH TLS successful"), None, TLS13)
    assert no_feat.status is Status.WARN and "not 211" in no_feat.summary


def test_feat_without_auth_tls_and_auth_tls_broken_fails() -> None:
    feat = r(VSFTPD_FEAT)
    refused = v.judge_feat_auth_tls(feat, parse_feat(feat), r("502 Command not implemented."))
    assert refused.status is Status.FAIL and "AUTH TLS: 502" in refused.observed
    broken = v.judge_feat_auth_tls(feat, parse_feat(feat), r("234 Proceed with negotiation."),
                                   "TLS handshake failed: no shared cipher", None)
    assert broken.status is Status.FAIL and "no shared cipher" in broken.observed


def test_auth_tls() -> None:
    tls = {"tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
    ok = v.judge_auth_tls(r("234 AUTH TLS successful."), tls, None, implicit=False)
    assert ok.status is Status.PASS and ok.evidence["tls_version"] == "TLSv1.3"
    no = v.judge_auth_tls(r("500 'AUTH TLS': command not understood"), None, None,
                          implicit=False)
    assert no.status is Status.FAIL and "not 234" in no.summary
    broken = v.judge_auth_tls(r("234 AUTH TLS successful."), None,
                              "TLS handshake failed: UNSUPPORTED_PROTOCOL", implicit=False)
    assert broken.status is Status.FAIL and "UNSUPPORTED_PROTOCOL" in broken.summary
    implicit = v.judge_auth_tls(None, tls, None, implicit=True)
    assert implicit.status is Status.PASS and implicit.evidence["mode"] == "implicit"


# --- certificates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (10, "certificate has expired", "expired"),
        (9, "certificate is not yet valid", "not-yet-valid"),
        (62, "Hostname mismatch, certificate is not valid for 'localhost'.", "hostname"),
        (64, "IP address mismatch, certificate is not valid for '127.0.0.1'.", "hostname"),
        (20, "unable to get local issuer certificate", "unknown-ca"),
        (19, "self-signed certificate in certificate chain", "unknown-ca"),
        (18, "self-signed certificate", "self-signed"),
        (None, "certificate has expired", "expired"),
        (None, "Hostname mismatch", "hostname"),
        (99, "something new", "other"),
    ],
)
def test_classify_verify_error(code: int | None, message: str, kind: str) -> None:
    assert v.classify_verify_error(code, message) == kind


def test_certificate_trust() -> None:
    ok = v.judge_certificate_trust("ca", None)
    assert ok.status is Status.PASS and ok.evidence["verified"] is True
    # Insecure trust verifies nothing: the check could not run (a pass proved nothing).
    insecure = v.judge_certificate_trust("insecure", None)
    assert (insecure.status, insecure.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert "nothing is verified under insecure trust" in insecure.summary
    assert insecure.observed == "not verified (insecure)"
    assert insecure.evidence["verified"] is False
    expired = v.judge_certificate_trust("ca", "expired", "certificate has expired")
    assert expired.status is Status.FAIL and "certificate expired" in expired.summary
    assert "Renew" in expired.advice
    pin = v.judge_certificate_trust("pin", "pin", "certificate SHA-256 AB:.. does not match")
    assert pin.status is Status.FAIL and "pin mismatch" in pin.summary
    assert v.judge_certificate_trust("ca", "unknown-ca").evidence["failure"] == "unknown-ca"
    assert "wrong host name" in v.judge_certificate_trust("system", "hostname", "x").summary


def test_certificate_lint() -> None:
    clean = v.judge_certificate_lint([], {"days_left": 300, "self_signed": False})
    assert clean.status is Status.PASS and clean.observed == "clean"
    # The days left are judged by the expiry watch (the target's thresholds): a note here.
    soon = v.judge_certificate_lint(
        [Finding("expires-soon", "warning", "certificate expires in 12 days", "Renew it.")],
        {"days_left": 12})
    assert soon.status is Status.PASS and "expires in 12 days" in soon.summary
    assert soon.evidence["warnings"] == ["certificate expires in 12 days"]
    # Valid and working, off best practice: a warning (it was a pass with a note).
    warn = v.judge_certificate_lint(
        [Finding("leaf-is-ca", "warning", "the server certificate is a CA certificate "
                 "(cA=TRUE)", "Re-issue it.")], {"days_left": 300})
    assert warn.status is Status.WARN and "cA=TRUE" in warn.summary
    assert warn.advice == "Re-issue it."
    self_signed = v.judge_certificate_lint(
        [Finding("self-signed", "info", "self-signed")], {"self_signed": True})
    assert self_signed.status is Status.PASS and "self-signed" in self_signed.summary
    bad = v.judge_certificate_lint(
        [Finding("expired", "error", "certificate expired on 2020-01-02", "Renew it."),
         Finding("weak-key", "error", "RSA key of 1024 bits")], {})
    assert bad.status is Status.FAIL and bad.summary.startswith("2 certificate problem(s)")
    assert bad.advice == "Renew it." and "1024" in bad.observed


# --- legacy TLS ---------------------------------------------------------------------------


def test_legacy_tls() -> None:
    refused = [v.LegacyOutcome("1.0", "refused", "TLSV1_ALERT_PROTOCOL_VERSION"),
               v.LegacyOutcome("1.1", "refused", "TLSV1_ALERT_PROTOCOL_VERSION")]
    assert v.judge_legacy_tls(refused).status is Status.PASS
    accepted = [refused[0], v.LegacyOutcome("1.1", "accepted", "ok", "TLSv1.1")]
    result = v.judge_legacy_tls(accepted)
    assert result.status is Status.FAIL and "negotiated TLSv1.1" in result.summary
    assert "SCHANNEL" in result.advice and "ssl_tlsv1=NO" in result.advice
    cannot = [v.LegacyOutcome("1.0", "untestable", "NO_CIPHERS_AVAILABLE")]
    result = v.judge_legacy_tls(cannot)
    assert result.status is Status.SKIP and "NO_CIPHERS_AVAILABLE" in result.summary
    mixed = v.judge_legacy_tls([cannot[0], refused[1]])
    assert mixed.status is Status.PASS and "not tested" in mixed.summary
    error = v.judge_legacy_tls([v.LegacyOutcome("1.0", "error", "timed out")])
    assert error.status is Status.ERROR


# --- PBSZ / PROT --------------------------------------------------------------------------


def test_pbsz_before_auth() -> None:
    strict = v.judge_pbsz_before_auth(r("503 PBSZ not allowed on insecure control connection."))
    assert strict.status is Status.PASS and "503" in strict.summary
    # vsftpd before login: 530 is one of the replies RFC 2228 lists for PBSZ, no note.
    other = v.judge_pbsz_before_auth(r("530 Please login with USER and PASS."))
    assert other.status is Status.PASS and "note" not in other.evidence
    assert other.summary == "PBSZ before AUTH refused with 530"
    odd = v.judge_pbsz_before_auth(r("550 Not allowed."))
    assert odd.status is Status.PASS and odd.evidence["note"] and "note:" in odd.summary
    sloppy = v.judge_pbsz_before_auth(r("200 PBSZ=0"))
    assert sloppy.status is Status.FAIL and "plaintext" in sloppy.summary


def test_pbsz_prot() -> None:
    ok = v.judge_pbsz_prot(r("200 PBSZ=0"), r("200 Protection level set to P"))
    assert ok.status is Status.PASS and len(ok.replies) == 2
    assert v.judge_pbsz_prot(r("500 PBSZ?"), None).status is Status.FAIL
    prot = v.judge_pbsz_prot(r("200 PBSZ=0"), r("536 PROT P not supported"))
    assert prot.status is Status.FAIL and "PROT P answered 536" in prot.summary


# --- login and policy ---------------------------------------------------------------------


def test_login() -> None:
    ok = v.judge_login(r("331 Password required"), r("230 User logged in."))
    assert ok.status is Status.PASS
    bad = v.judge_login(r("331 Password required"), r("530 User cannot log in."))
    assert bad.status is Status.FAIL and "PASS answered 530" in bad.summary
    assert "FTP Authorization Rules" in bad.advice
    assert v.judge_login(r("530 Not allowed"), None).status is Status.FAIL


@pytest.mark.parametrize(
    ("text", "vendor"),
    [
        ("534 Policy requires SSL.", "IIS"),
        ("530 Non-anonymous sessions must use encryption.", "vsftpd"),
        ("421 Sorry, cleartext sessions and weak ciphers are not accepted on this server.",
         "pure-ftpd"),
        ("550 SSL/TLS required on the control channel.", "pyftpdlib"),
    ],
)
def test_plaintext_login_refused_at_user_by_every_vendor(text: str, vendor: str) -> None:
    result = v.judge_plaintext_login(r(text), None, "require")
    assert result.status is Status.PASS, result.summary
    assert vendor in result.evidence["refusal_style"]
    assert result.replies == [text]


def test_plaintext_login_under_require() -> None:
    accepted = v.judge_plaintext_login(r("331 Password required"), r("230 Logged in"), "require")
    assert accepted.status is Status.FAIL and "ACCEPTED" in accepted.summary
    assert "force_local_logins_ssl=YES" in accepted.advice
    assert "Require SSL connections" in accepted.advice
    # The real password refused only at PASS: secure, but a client that tries has sent
    # its password in clear first: a warning, with the refuse-USER advice.
    late = v.judge_plaintext_login(r("331 Password required"),
                                   r("530 Login incorrect."), "require")
    assert late.status is Status.WARN and "only at PASS (530)" in late.summary
    assert "USER was accepted" in late.evidence["note"] and "Refuse USER" in late.advice
    # A decoy refused proves nothing (any wrong password is refused): could not run.
    decoy = v.judge_plaintext_login(r("331 Password required"), r("530 Login incorrect."),
                                    "require", decoy=True)
    assert (decoy.status, decoy.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert "decoy" in decoy.summary and "not proven" in decoy.summary
    assert "plaintext_password: true" in decoy.advice
    no_password = v.judge_plaintext_login(r("230 Welcome"), None, "require")
    assert no_password.status is Status.FAIL


def test_plaintext_login_under_allow() -> None:
    ok = v.judge_plaintext_login(r("331 Password required"), r("230 Logged in"), "allow")
    assert ok.status is Status.PASS and "allowed" in ok.summary
    refused = v.judge_plaintext_login(r("534 Policy requires SSL."), None, "allow")
    assert refused.status is Status.FAIL and "Allow SSL connections" in refused.advice
    bad_pass = v.judge_plaintext_login(r("331 Password required"), r("530 no"), "allow")
    assert bad_pass.status is Status.FAIL and "530" in bad_pass.summary
    # Policy allow, a decoy refused: acceptance of the real password is unproven, so the
    # check could not run (it used to pass saying "not proven").
    decoy = v.judge_plaintext_login(r("331 Password required"), r("530 no"), "allow",
                                    decoy=True)
    assert (decoy.status, decoy.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert "not proven" in decoy.summary and "plaintext_password: true" in decoy.advice


@pytest.mark.parametrize("text", ["534 Request denied for policy reasons.",
                                  "536 Requested PROT level not supported by mechanism.",
                                  "504 Command not implemented for that parameter.",
                                  # RFC 2228 lists 530 for PROT too: no note any more.
                                  "530 Please login with USER and PASS."])
def test_prot_c_refused_by_prot(text: str) -> None:
    result = v.judge_prot_c(r(text), None, "require")
    assert result.status is Status.PASS and "note" not in result.summary


@pytest.mark.parametrize(
    ("stage", "text"),
    [
        ("setup", "550 SSL/TLS required on the data channel."),
        ("setup", "534 Policy requires SSL."),
        ("command", "522 Data connections must be encrypted."),
        ("command", "521 Data connection cannot be opened with this PROT setting."),
        ("command", "425 Can't open data connection."),
    ],
)
def test_prot_c_refused_at_transfer(stage: str, text: str) -> None:
    result = v.judge_prot_c(r("200 Protection set to Clear"), refused_at(stage, text), "require")
    assert result.status is Status.PASS, result.summary
    assert text.split()[0] in result.summary and "unusual" not in result.summary
    assert text in result.replies


def test_prot_c_data_flowing_fails_under_require_and_passes_under_allow() -> None:
    flowed = done(size=120)
    result = v.judge_prot_c(r("200 Protection set to Clear"), flowed, "require")
    assert result.status is Status.FAIL and "120 bytes unprotected" in result.summary
    assert "force_local_data_ssl=YES" in result.advice
    allowed = v.judge_prot_c(r("200 Protection set to Clear"), flowed, "allow")
    assert allowed.status is Status.PASS
    refused = v.judge_prot_c(r("534 Policy requires SSL."), None, "allow")
    assert refused.status is Status.FAIL and "Data Channel: Allow" in refused.advice


# --- passive mode -------------------------------------------------------------------------


def _pasv(announced: str, port: int = 50000, connect: str = "127.0.0.1") -> tuple[Reply, Passive]:
    from harness.protocols.ftp import pasv_argument

    reply = r(f"227 Entering Passive Mode ({pasv_argument(announced, port)}).")
    return reply, Passive("PASV", reply, announced, port, connect)


@pytest.mark.parametrize(
    ("host", "kind"),
    [("10.1.2.3", "private"), ("172.20.0.1", "private"), ("192.168.1.1", "private"),
     ("100.64.0.1", "shared"), ("127.0.0.1", "loopback"), ("169.254.1.1", "link-local"),
     ("0.0.0.0", "unspecified"), ("8.8.8.8", "public"), ("fd00::1", "private"),
     ("203.0.113.5", "reserved"), ("nonsense", "invalid")],
)
def test_address_kind(host: str, kind: str) -> None:
    assert v.address_kind(host) == kind


def test_pasv_address_ok_and_port_range() -> None:
    reply, endpoint = _pasv("127.0.0.1", 50000)
    ok = v.judge_pasv_address(reply, endpoint, "127.0.0.1", (50000, 50010), done())
    assert ok.status is Status.PASS and ok.evidence["announced_port"] == 50000
    out = v.judge_pasv_address(reply, endpoint, "127.0.0.1", (40000, 40010), done())
    assert out.status is Status.FAIL and "outside the passive range" in out.summary
    assert "pasv_min_port" in out.advice and "PassivePorts" in out.advice


@pytest.mark.parametrize(
    ("announced", "expected"),
    [("10.99.99.99", "127.0.0.1"), ("192.168.0.10", "198.51.100.7"),
     ("100.64.3.4", "198.51.100.7"), ("127.0.0.1", "198.51.100.7")],
)
def test_pasv_private_address_is_flagged_as_nat(announced: str, expected: str) -> None:
    reply, endpoint = _pasv(announced, connect=expected)
    result = v.judge_pasv_address(reply, endpoint, expected, None, done())
    assert result.status is Status.FAIL
    assert "server behind NAT hands out its private address" in result.summary
    assert result.evidence["behind_nat"] is True
    for setting in ("External IP Address of Firewall", "pasv_address=", "MasqueradeAddress",
                    "-P "):
        assert setting in result.advice


def test_pasv_other_wrong_addresses() -> None:
    reply, endpoint = _pasv("198.51.100.9", connect="198.51.100.7")
    public = v.judge_pasv_address(reply, endpoint, "198.51.100.7", None, done())
    assert public.status is Status.FAIL and "reachable address is 198.51.100.7" in public.summary
    assert public.evidence["behind_nat"] is False
    reply, endpoint = _pasv("0.0.0.0")
    assert "0.0.0.0" in v.judge_pasv_address(reply, endpoint, "127.0.0.1", None, None).summary
    refused = v.judge_pasv_address(r("425 No passive port available."), None, "127.0.0.1",
                                   None, None)
    assert refused.status is Status.FAIL and "425" in refused.summary


def test_pasv_right_address_but_dead_port() -> None:
    reply, endpoint = _pasv("127.0.0.1")
    dead = Transfer(command="LIST", setup=reply, passive=endpoint,
                    error="data connection to 127.0.0.1:50000 failed: connection refused")
    result = v.judge_pasv_address(reply, endpoint, "127.0.0.1", None, dead)
    assert result.status is Status.FAIL and "data connection failed" in result.summary
    assert "forward" in result.advice


def test_epsv() -> None:
    reply = r("229 Entering Extended Passive Mode (|||50001|)")
    endpoint = Passive("EPSV", reply, None, 50001, "127.0.0.1")
    assert v.judge_epsv(reply, endpoint, (50000, 50010), done()).status is Status.PASS
    out = v.judge_epsv(reply, endpoint, (40000, 40001), done())
    assert out.status is Status.FAIL and "outside" in out.summary
    # EPSV refused over IPv4: clients fall back to PASV: a warning (it was a fail);
    # over IPv6 there is no PASV to fall back to: a fail.
    missing = v.judge_epsv(r("500 'EPSV': command not understood"), None, None, None)
    assert missing.status is Status.WARN and "FTP helper" in missing.advice
    assert "fall back to PASV" in missing.summary
    v6 = v.judge_epsv(r("502 Command not implemented."), None, None, None, ipv6=True)
    assert v6.status is Status.FAIL and "not 229" in v6.summary
    odd = v.judge_epsv(r("227 Entering Passive Mode (127,0,0,1,195,80)"), None, None, None)
    assert odd.status is Status.FAIL
    failed = v.judge_epsv(reply, endpoint, None, refused_at("command", "425 Can't open"))
    assert failed.status is Status.FAIL


# --- session reuse ------------------------------------------------------------------------


def test_session_reuse() -> None:
    reused = [done("LIST", tls=facts()), done("STOR a", tls=facts()), done("RETR a", tls=facts())]
    strict = refused_at("command", "522 SSL connection failed; session reuse required")
    lax = done("LIST", tls=facts(reused=False))
    result = v.judge_session_reuse(reused, strict, True)
    assert result.status is Status.PASS
    assert result.evidence["server_requires_session_reuse"] == "yes"
    assert "522" in result.summary
    recorded = v.judge_session_reuse(reused, lax, None)
    assert recorded.status is Status.PASS
    assert recorded.evidence["server_requires_session_reuse"] == "no"
    must = v.judge_session_reuse(reused, lax, True)
    assert must.status is Status.FAIL and "require_ssl_reuse=YES" in must.advice
    unknown = v.judge_session_reuse(reused, None, None)
    assert unknown.evidence["server_requires_session_reuse"] == "unknown"
    # Pure-FTPd 1.0.50: no data connection resumes, every one works: a warning when
    # the target does not require reuse (it was a fail), a fail when it does.
    not_reused = v.judge_session_reuse([done(tls=facts(reused=False))], None, None)
    assert not_reused.status is Status.WARN and "did not resume" in not_reused.summary
    assert "full handshake" in not_reused.summary
    required = v.judge_session_reuse([done(tls=facts(reused=False))], None, True)
    assert required.status is Status.FAIL and "did not resume" in required.summary
    broken = v.judge_session_reuse([strict], None, None)
    assert broken.status is Status.FAIL and "failed" in broken.summary


def _without_reuse(final: str, *, size: int = 0) -> Transfer:
    """The LIST without reuse as real servers answer it: 150, then the refusal."""
    transfer = done("LIST", size=size, final=final)
    transfer.tls = facts(reused=False)
    return transfer


REUSED = [done("LIST", tls=facts()), done("STOR a", tls=facts()), done("RETR a", tls=facts())]


@pytest.mark.parametrize(
    "refusal",
    [
        "522 SSL connection failed: session reuse required",  # vsftpd 3.0.3 (Debian 12)
        "522 SSL connection failed; session reuse required",  # the lab
        "425 Unable to build data connection: TLS session of data connection not resumed.",
    ],
)
def test_session_reuse_required_passes_only_on_a_reuse_refusal(refusal: str) -> None:
    result = v.judge_session_reuse(REUSED, _without_reuse(refusal), True)
    assert result.status is Status.PASS, result.summary
    code, text = refusal.split(" ", 1)
    assert result.evidence["without_reuse_refusal"] == {
        "code": int(code), "text": text, "reply": refusal, "stage": "final"}
    assert result.evidence["without_reuse_bytes_before_refusal"] == 0
    assert f"(without reuse: {refusal})" in result.summary


@pytest.mark.parametrize(
    ("without", "error", "named"),
    [
        (_without_reuse("550 Permission denied."), None, "'550 Permission denied.'"),
        (_without_reuse("451 Local error"), None, "'451 Local error'"),
        (None, "LIST without reuse: connection reset", "connection reset"),
        (refused_at("setup", "425 No passive port available."), None, "did not complete"),
    ],
)
def test_session_reuse_required_but_undecided_is_an_error(
    without: Transfer | None, error: str | None, named: str
) -> None:
    """Only 522/425 to the data command itself means "reuse required": a 550, a 451, a
    lost session or a refused PASV cannot tell, and a target that must require reuse
    then gets an error naming what happened, never a pass."""
    result = v.judge_session_reuse(REUSED, without, True, error)
    assert result.status is Status.ERROR, result.summary
    assert result.evidence["server_requires_session_reuse"] == "unknown"
    assert result.summary.startswith("cannot tell whether the server requires session reuse")
    assert named in result.summary
    if without is not None and without.final is not None:
        assert result.evidence["without_reuse_refusal"]["code"] == without.final.code
    # Without the requirement the same observation is only recorded.
    recorded = v.judge_session_reuse(REUSED, without, None, error)
    assert recorded.status is Status.PASS
    assert recorded.evidence["server_requires_session_reuse"] == "unknown"


def test_session_reuse_refusal_after_data_fails() -> None:
    """A 522 that comes after part of the listing reached the client refuses too late."""
    late = _without_reuse("522 SSL connection failed; session reuse required", size=62)
    result = v.judge_session_reuse(REUSED, late, True)
    assert result.status is Status.FAIL
    assert "only after 62 bytes" in result.summary
    assert result.evidence["without_reuse_bytes_before_refusal"] == 62
    assert v.judge_session_reuse(REUSED, late, None).status is Status.PASS


# --- transfers and QUIT -------------------------------------------------------------------


def _session(**changes: object) -> v.TransferSession:
    session = v.TransferSession(forced_tls="1.3", negotiated="TLSv1.3")
    for index in range(6):
        item = v.FileRound(f"f{index}.bin", 100 + index)
        item.stor = done(f"STOR {item.name}", size=item.size, sha=f"h{index}", tls=facts())
        item.retr = done(f"RETR {item.name}", size=item.size, sha=f"h{index}", tls=facts())
        item.listed = True
        item.dele = r("250 File removed.")
        session.files.append(item)
    session.listings.append(done(tls=facts()))
    session.quit = r("221 Goodbye.")
    session.control_shutdown = "clean"
    for key, value in changes.items():
        setattr(session, key, value)
    return session


def test_transfers_pass() -> None:
    result = v.judge_transfers(_session())
    assert result.status is Status.PASS, result.summary
    assert result.evidence["data_connections"] == 13
    assert result.evidence["data_sessions_reused"] == 13
    assert len(result.evidence["files"]) == 6


def test_transfers_name_the_file_and_both_hashes() -> None:
    session = _session()
    session.files[3].retr = done("RETR f3.bin", size=103, sha="beef", tls=facts())
    result = v.judge_transfers(session)
    assert result.status is Status.FAIL
    assert "f3.bin" in result.summary and "h3" in result.summary and "beef" in result.summary


def test_transfers_other_failures() -> None:
    assert "negotiated TLSv1.2" in v.judge_transfers(
        _session(negotiated="TLSv1.2")).summary
    session = _session()
    session.files[1].stor = refused_at("command", "553 Could not create file.")
    assert "553" in v.judge_transfers(session).summary
    session = _session()
    session.files[2].listed = False
    assert "missing from the LIST" in v.judge_transfers(session).summary
    session = _session()
    session.files[0].dele = r("550 Permission denied.")
    assert "DELE f0.bin answered 550" in v.judge_transfers(session).summary
    assert "QUIT" in v.judge_transfers(_session(quit=r("500 ?"))).summary
    session = _session()
    session.files[0].retr = done("RETR f0.bin", size=100, sha="h0", tls=facts("TLSv1.2"))
    assert "not TLSv1.3" in v.judge_transfers(session).summary


def test_quit() -> None:
    assert v.judge_quit(r("221 Goodbye."), "clean").status is Status.PASS
    ragged = v.judge_quit(r("221 Goodbye."), "no close_notify exchange: TLS error: EOF")
    assert ragged.status is Status.PASS and "without a TLS close_notify" in ragged.summary
    lingering = v.judge_quit(r("221 Goodbye."), "no close_notify exchange: timed out")
    assert lingering.status is Status.FAIL and "kept the connection open" in lingering.summary
    assert v.judge_quit(r("500 QUIT?"), "clean").status is Status.FAIL

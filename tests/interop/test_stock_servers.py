"""Every check against real servers in their distribution's shipped configurations.

Issue 10 (point 3): the interop tests must not judge servers tuned to the checks. Each
server here starts from its Debian package's own configuration, changed only where a
deployment guide changes it (:mod:`stock_launch`, docs/interop.md), in two variants:

* **secure**: must get no ``fail`` and no ``error`` from any check with default
  parameters; anything else is listed below with the reason.
* **weak**: one documented weakening (TLS optional, plaintext login allowed); it must
  fail exactly the checks that look at that weakness.

The rule for a verdict: ``fail`` means the behaviour weakens security or breaks real
clients; a deviation from an RFC's wording that does neither is ``warn``; a check that
cannot observe what it asks about on this server is ``skip``. Where today's harness
judges a row differently, the row holds the right verdict and is marked
``xfail(strict=True)`` with the server's reply lines as the reason: the suite stays green
now, and turns red (XPASS) once the verdict is fixed, so the table gets updated with it.
The harness has no ``warn`` status yet; every ``warn`` row is such a row.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from debian_cache import PackageUnavailable
from stock_launch import StockServer, configs, launch
from stock_sandbox import SandboxUnavailable

from harness.certs import LabPKI, lab_pki
from harness.checks import load_all, run_check
from harness.results import CheckResult
from harness.targets import Target

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

# Checks about the network rather than the server, left out: wait-listening (every
# launcher already waited for the greeting) and op25b-diagnose (probes the machine's own
# ports 25/465/587, whatever listens there).
NOT_SERVER_CHECKS = {"wait-listening", "op25b-diagnose"}
# The checks that fail a login on purpose run last, as the plugin orders them: after a
# failed login Dovecot and PAM delay the next ones from the same address.
FAILED_LOGIN_CHECKS = ("plaintext-login-refused", "auth-bad-password")


def _checks(protocol: str) -> list[str]:
    return sorted(n for n, s in load_all().items()
                  if protocol in s.protocols and n not in NOT_SERVER_CHECKS)


FTPS_CHECKS = _checks("ftps")
SMTP_CHECKS = _checks("submission")
IMPLICIT_TLS_SKIPS = {"auth-not-before-tls", "starttls-state-reset", "starttls-injection"}


@dataclass(frozen=True)
class Verdict:
    """The right verdict for one row; ``now`` is what the harness says today when it
    differs, ``why`` the evidence (the server's own replies)."""

    want: str
    now: str | None = None
    why: str = ""


def misjudged(want: str, now: str, why: str) -> Verdict:
    return Verdict(want, now, why)


# --- the misjudgements, with the servers' words ---------------------------------------------

VSFTPD_FEAT = Verdict(  # fixed: feat-auth-tls warns when AUTH TLS works
    "warn", why=
    "vsftpd 3.0.3 lists AUTH TLS in FEAT only when ssl_tlsv1=YES (features.c): FEAT "
    "gets '211-Features:' EPRT EPSV MDTM PASV PBSZ PROT REST STREAM SIZE TVFS '211 End' "
    "(PBSZ and PROT, no AUTH TLS), yet 'AUTH TLS' gets '234 Proceed with negotiation.' "
    "(auth-tls passes): clients send AUTH TLS without reading FEAT; nothing breaks, "
    "nothing is weaker",
)
PURE_REUSE = Verdict(  # fixed: data-session-reuse warns unless reuse is required
    "warn", why=
    "Pure-FTPd 1.0.50 never resumes the control TLS session on data connections (every "
    "data handshake is full: reused=False), yet every transfer works ('226-File "
    "successfully transferred'; transfers passes) and the target does not require "
    "reuse (session_reuse_required unset: the check says it only records it)",
)
POSTFIX_MAIL = Verdict(  # fixed: a refusal at RCPT is a warning
    "warn", why=
    "Debian's submission block refuses unauthenticated clients at RCPT "
    "(smtpd_delay_reject=yes): 'MAIL FROM' gets '250 2.1.0 Ok', then 'RCPT TO' gets "
    "'554 5.7.1 <postmaster@ftps-lab.test>: Recipient address rejected: Access denied'; "
    "nothing is accepted without AUTH",
)
POSTFIX_RESET = Verdict(  # fixed: no probe can tell, so could not run
    "skip", why=
    "Postfix takes MAIL without any EHLO (smtpd_helo_required=no, the default): in a "
    "session with no EHLO at all ('STARTTLS' right after the greeting: '220 2.0.0 Ready "
    "to start TLS') 'MAIL FROM' gets '250 2.1.0 Ok', so '250 2.1.0 Ok' after STARTTLS "
    "cannot show whether the pre-TLS EHLO was forgotten",
)
EXIM_MAIL = Verdict(  # the Exim specification's submission ACL refuses at RCPT: a warning
    "warn", why=
    "with the Exim specification's submission rule (Debian's CHECK_RCPT_LOCAL_ACL_FILE "
    "hook: deny unauthenticated RCPT on the submission port) 'MAIL FROM' gets '250 OK' "
    "and 'RCPT TO:<postmaster@…>' '250 Accepted' (RFC 5321 sec. 4.5.1: Debian's first RCPT "
    "rule); another local part gets '550 Unrouteable address': nothing proves mail can "
    "enter without AUTH, and nothing proves it cannot: a warning that says so",
)
SENDMAIL_RESET = Verdict(  # re-judged with a no-EHLO baseline session: proof, a fail
    "fail", why=
    "sendmail takes AUTH without any EHLO, but Debian's needmailhelo makes MAIL decide: "
    "with no EHLO at all (STARTTLS first) 'MAIL FROM' gets '503 5.0.0 Polite people say "
    "HELO first'; after an EHLO before STARTTLS and none after it, '530 5.7.0 "
    "Authentication required', as after a new EHLO: the pre-TLS HELO survived the "
    "handshake (srvrsmtp.c's STARTTLS resets n_helo, not gothello/sendinghost; RFC 3207 "
    "sec. 4.2 says MUST discard)",
)

# Postfix with TLS optional (weak): a MAIL before STARTTLS ('250 2.1.0 Ok') and a RCPT
# right after the handshake ('503 5.5.1 Error: need MAIL command') show the pre-TLS
# transaction discarded (RFC 3207 sec. 4.2): decided, a pass.
POSTFIX_WEAK_RESET = Verdict("pass")
# Postfix offers ETRN on every smtpd ('250-ETRN' after TLS on Debian's submission block):
# RFC 6409 sec. 7 says MUST NOT on submission; harmless, so a right warn.
POSTFIX_EXTENSIONS = Verdict("warn")

# Exim 4.96 does not offer ENHANCEDSTATUSCODES or DSN (RFC 6409 sec. 7 SHOULDs): "not
# offered after TLS: ENHANCEDSTATUSCODES, DSN". A right warn, asserted as one.
EXIM_EXTENSIONS = Verdict("warn")

# server, config -> service -> check -> verdict, for the rows that are not "pass".
EXCEPTIONS: dict[tuple[str, str], dict[str, dict[str, Verdict]]] = {
    ("vsftpd", "secure"): {"ftps": {"feat-auth-tls": VSFTPD_FEAT}},
    ("vsftpd", "weak"): {"ftps": {
        "feat-auth-tls": VSFTPD_FEAT,
        "plaintext-login-refused": Verdict("fail"),  # force_local_logins_ssl=NO: 230 in clear
        "prot-c-refused": Verdict("fail"),  # force_local_data_ssl=NO: LIST in clear works
    }},
    ("proftpd", "secure"): {"ftps": {}},
    ("proftpd", "weak"): {"ftps": {
        "plaintext-login-refused": Verdict("fail"),  # TLSRequired off
        "prot-c-refused": Verdict("fail"),
    }},
    ("pure-ftpd", "secure"): {"ftps": {"data-session-reuse": PURE_REUSE}},
    # TLS 2 protects the control channel only: PROT C then LIST in clear text is
    # accepted ('200 Data protection level set to "clear"', '226 0 matches total'). A
    # client can send files unencrypted: the fail is right (the harness's advice says
    # --tls=3, the secure variant).
    ("pure-ftpd", "control-only"): {"ftps": {
        "prot-c-refused": Verdict("fail"),
        "data-session-reuse": PURE_REUSE,
    }},
    ("pure-ftpd", "weak"): {"ftps": {
        "plaintext-login-refused": Verdict("fail"),  # TLS 1: '230 OK.' before AUTH TLS
        "prot-c-refused": Verdict("fail"),
        "data-session-reuse": PURE_REUSE,
    }},
    ("postfix", "secure"): {
        "submission": {"mail-before-auth-refused": POSTFIX_MAIL,
                       "starttls-state-reset": POSTFIX_RESET,
                       "extensions": POSTFIX_EXTENSIONS},
        "submissions": {"mail-before-auth-refused": POSTFIX_MAIL,
                        "extensions": POSTFIX_EXTENSIONS},
    },
    ("postfix", "weak"): {"submission": {
        "auth-not-before-tls": Verdict("fail"),  # smtpd_tls_auth_only=no: AUTH in clear
        "mail-before-auth-refused": POSTFIX_MAIL,
        "starttls-state-reset": POSTFIX_WEAK_RESET,
        "extensions": POSTFIX_EXTENSIONS,
    }},
    ("exim4", "secure"): {"submission": {
        "mail-before-auth-refused": EXIM_MAIL,
        "extensions": EXIM_EXTENSIONS,
    }},
    ("exim4", "weak"): {"submission": {
        "auth-not-before-tls": Verdict("fail"),  # AUTH_SERVER_ALLOW_NOTLS_PASSWORDS
        "mail-before-auth-refused": EXIM_MAIL,
        "extensions": EXIM_EXTENSIONS,
    }},
    ("sendmail", "secure"): {"submission": {"starttls-state-reset": SENDMAIL_RESET}},
    ("sendmail", "weak"): {"submission": {
        "auth-not-before-tls": Verdict("fail"),  # no confAUTH_OPTIONS p: PLAIN in clear
        "starttls-state-reset": SENDMAIL_RESET,
    }},
}


def expected(server: str, config: str, service: str, check: str) -> Verdict:
    """The row's verdict: an exception above, else skip for what implicit TLS has not,
    else pass."""
    listed = EXCEPTIONS[(server, config)][service].get(check)
    if listed is not None:
        return listed
    if service == "submissions" and check in IMPLICIT_TLS_SKIPS:
        return Verdict("skip")
    return Verdict("pass")


def table() -> Iterator[tuple[str, str, str, str, Verdict]]:
    """Every row, server by server; a server's failed-login checks after all its others
    (every service of it: Postfix's 587 and 465 ask the same Dovecot)."""
    for (server, config), services in EXCEPTIONS.items():
        rows = [(service, check) for service in services
                for check in (FTPS_CHECKS if service == "ftps" else SMTP_CHECKS)]
        rows.sort(key=lambda row: row[1] in FAILED_LOGIN_CHECKS)
        for service, check in rows:
            yield server, config, service, check, expected(server, config, service, check)


class Misjudged(AssertionError):
    """The harness gave the verdict the table records as today's misjudgement."""


LOOPBACK_ROW = "listens-on-loopback-only"
STOP_ROW = "stops-cleanly"


def _params() -> list[object]:
    """The rows, server by server: its checks, its listeners, the evidence rows that
    belong to it, then its stop, so that every server starts once and stops in a row
    of its own (where a leftover process is reported)."""
    params: list[object] = []
    previous: tuple[str, str] | None = None

    def close(key: tuple[str, str] | None) -> None:
        if key is None:
            return
        names = [LOOPBACK_ROW] + [n for n, (owner, _) in EXTRA_ROWS.items() if owner == key]
        params.extend(pytest.param(key, "*", name, None, id=f"{key[0]}-{key[1]}-{name}")
                      for name in [*names, STOP_ROW])

    for server, config, service, check, verdict in table():
        if previous != (server, config):
            close(previous)
            previous = (server, config)
        marks = []
        if verdict.now is not None:
            marks.append(pytest.mark.xfail(
                strict=True, raises=Misjudged,
                reason=f"harness misjudges: says {verdict.now}, should say {verdict.want}: "
                       f"{verdict.why}"))
        params.append(pytest.param((server, config), service, check, verdict, marks=marks,
                                   id=f"{server}-{config}-{service}-{check}"))
    close(previous)
    return params


# --- the running server -------------------------------------------------------------------


class Servers:
    """At most one stock server runs at a time: a row for another server stops the
    running one and starts its own (rows come server by server, so each starts once).

    A pytest fixture parametrized per row would do the same only if pytest kept the
    rows in order; with module-scoped parameters it regroups them, restarting servers.
    """

    def __init__(self, pki: LabPKI) -> None:
        self.pki = pki
        self.key: tuple[str, str] | None = None
        self.stack: contextlib.ExitStack | None = None
        self.running: StockServer | None = None
        self.unavailable: dict[tuple[str, str], str] = {}
        self.started: dict[str, float] = {}  # label -> seconds from spawn to ready

    def get(self, key: tuple[str, str]) -> StockServer:
        if self.key == key and self.running is not None:
            return self.running
        self.stop()
        if key in self.unavailable:
            pytest.skip(self.unavailable[key])
        stack = contextlib.ExitStack()
        try:
            running = stack.enter_context(launch(*key, self.pki))
        except (PackageUnavailable, SandboxUnavailable) as exc:
            self.unavailable[key] = str(exc)
            pytest.skip(str(exc))
        self.key, self.stack, self.running = key, stack, running
        self.started[running.label] = running.started_in
        return running

    def stop(self) -> StockServer | None:
        """Stop the running server (if any); it keeps its leftovers list."""
        stopped, stack = self.running, self.stack
        self.key, self.stack, self.running = None, None, None
        if stack is not None:
            stack.close()
        return stopped


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    manager = Servers(lab_pki())
    try:
        yield manager
    finally:
        manager.stop()


def _explain(result: CheckResult, stock: StockServer) -> str:
    transcript = "\n".join(result.transcript[-25:])
    return f"{result.describe()}\n{transcript}\n{stock.logs()}"


# --- rows that are not a check: listeners and the evidence behind the misjudgements -------

def listens_on_loopback_only(stock: StockServer) -> None:
    """Nothing the server runs listens beyond 127.0.0.1 (every process of its namespace)."""
    listening = stock.listening()
    assert listening, f"{stock.label}: no listener found"
    assert {address for address, _ in listening} == {"127.0.0.1"}, listening
    ports = {target.port for target in stock.targets.values()}
    assert ports <= {port for _, port in listening}, (ports, listening)


def _reply(reader: Any) -> str:
    """The last line of one SMTP reply (bounded: a reply has few continuation lines)."""
    for _ in range(100):
        line = reader.readline(1024).decode("ascii", "replace").rstrip("\r\n")
        if len(line) < 4 or line[3] != "-":
            return line
    raise AssertionError("endless multi-line reply")


def _session(target: Target, *commands: str, starttls_first: bool = False) -> list[str]:
    """SMTP without EHLO: the greeting, then the last reply line to each command; with
    ``starttls_first``, STARTTLS (no EHLO before it either) and the commands inside TLS."""
    with socket.create_connection((target.host, target.port), timeout=5) as raw:
        raw.settimeout(5)
        sock: socket.socket = raw
        reader = sock.makefile("rb")
        replies = [_reply(reader)]
        if starttls_first:
            sock.sendall(b"STARTTLS\r\n")
            replies.append(_reply(reader))
            context = ssl.create_default_context(cafile=str(target.trust.ca_file))
            sock = context.wrap_socket(raw, server_hostname=target.tls_name)
            reader = sock.makefile("rb")
        for command in commands:
            sock.sendall(command.encode() + b"\r\n")
            replies.append(_reply(reader))
        return replies


def postfix_refuses_at_rcpt_and_takes_mail_without_ehlo(stock: StockServer) -> None:
    """POSTFIX_MAIL and POSTFIX_RESET: the refusal comes at RCPT; MAIL needs no EHLO."""
    target = stock.targets["submission"]
    at_rcpt = run_check("mail-before-auth-refused", target, {"accept_refusal_at_rcpt": True})
    assert at_rcpt.status.value == "warn", at_rcpt.describe()
    assert at_rcpt.replies[0] == "250 2.1.0 Ok", at_rcpt.replies
    assert at_rcpt.replies[1] == ("554 5.7.1 <postmaster@ftps-lab.test>: Recipient address "
                                  "rejected: Access denied"), at_rcpt.replies
    # No EHLO at all in the session, neither before nor after STARTTLS: MAIL is taken.
    replies = _session(target, "MAIL FROM:<probe@ftps-lab.test>", "QUIT", starttls_first=True)
    assert replies[1] == "220 2.0.0 Ready to start TLS", replies
    assert replies[2] == "250 2.1.0 Ok", replies


def exim_refuses_unauthenticated_rcpt_and_relay(stock: StockServer) -> None:
    """EXIM_MAIL: MAIL is taken, the unauthenticated RCPT is refused, and so is relaying."""
    target = stock.targets["submission"]
    result = run_check("mail-before-auth-refused", target, {})
    assert result.status.value == "warn", result.describe()
    # postmaster is let in (RFC 5321 sec. 4.5.1, Debian's first RCPT rule); the probe's
    # other local part does not exist, so its refusal proves nothing: a warning that says so.
    assert result.replies == ["250 OK", "250 Accepted", "550 Unrouteable address"], (
        result.describe())
    assert "not proven that AUTH is required" in result.summary, result.summary
    relay = run_check("relay-refused", target, {})
    assert relay.status.value == "pass", relay.describe()
    assert relay.evidence["relay_attempts"][0]["reply"] == "550 relay not permitted"


def sendmail_takes_auth_without_ehlo(stock: StockServer) -> None:
    """SENDMAIL_RESET: a fresh connection's AUTH, no EHLO, gets a challenge."""
    replies = _session(stock.targets["submission"], "AUTH CRAM-MD5", "*", "QUIT")
    assert replies[1].startswith("334 "), replies
    assert replies[2] == "501 5.0.0 AUTH aborted", replies


def pure_ftpd_transfers_without_resuming(stock: StockServer) -> None:
    """PURE_REUSE: files round-trip although no data connection resumes the session."""
    result = run_check("transfers", stock.targets["ftps"], {"files": 2, "size": 65536})
    assert result.status.value == "pass", result.describe()
    assert "0 resumed the session" in result.summary, result.summary


def vsftpd_answers_auth_tls_it_does_not_list(stock: StockServer) -> None:
    """VSFTPD_FEAT: FEAT without AUTH TLS, AUTH TLS answered 234 all the same."""
    target = stock.targets["ftps"]
    feat = run_check("feat-auth-tls", target, {})
    assert "does not list AUTH TLS" in feat.summary, feat.describe()
    auth = run_check("auth-tls", target, {})
    assert auth.status.value == "pass", auth.describe()
    assert any("< 234 " in line for line in auth.transcript), auth.transcript


EXTRA_ROWS: dict[str, tuple[tuple[str, str], Callable[[StockServer], None]]] = {
    "evidence-refusal-at-rcpt": (("postfix", "secure"),
                                 postfix_refuses_at_rcpt_and_takes_mail_without_ehlo),
    "evidence-refusal-at-rcpt-exim": (("exim4", "secure"),
                                      exim_refuses_unauthenticated_rcpt_and_relay),
    "evidence-auth-without-ehlo": (("sendmail", "secure"), sendmail_takes_auth_without_ehlo),
    "evidence-no-session-resumption": (("pure-ftpd", "secure"),
                                       pure_ftpd_transfers_without_resuming),
    "evidence-feat-without-auth-tls": (("vsftpd", "secure"),
                                       vsftpd_answers_auth_tls_it_does_not_list),
}
ROWS: dict[str, Callable[[StockServer], None]] = {
    LOOPBACK_ROW: listens_on_loopback_only,
    **{name: row for name, (_, row) in EXTRA_ROWS.items()},
}
PARAMS = _params()


# --- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "service", "check", "verdict"), PARAMS)
def test_stock_server(
    servers: Servers, key: tuple[str, str], service: str, check: str, verdict: Verdict | None
) -> None:
    """One row: a check's verdict, the loopback-only listeners, a piece of evidence
    behind a misjudgement (:data:`EXTRA_ROWS`), or the stop."""
    stock = servers.get(key)
    if check == STOP_ROW:
        servers.stop()
        print(f"{stock.label} {stock.version}: ready in {stock.started_in:.2f} s")
        assert stock.leftovers() == [], (
            f"{stock.label}: processes outlived the stop signal: {stock.leftovers()}")
        return
    if verdict is None:
        ROWS[check](stock)
        return
    result = run_check(check, stock.targets[service], {})
    got = result.status.value
    if got == verdict.want:
        return
    if verdict.now is not None and got == verdict.now:
        raise Misjudged(f"{check}: {got} (known misjudgement)\n{result.describe()}")
    raise AssertionError(f"{stock.label} {service} {check}: {got}, expected {verdict.want}\n"
                         f"{_explain(result, stock)}")


def test_every_configuration_has_a_table() -> None:
    assert set(configs()) == set(EXCEPTIONS)

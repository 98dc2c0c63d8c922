"""The harness's FTPS checks against a REAL vsftpd, the server whose strict settings the
lab imitates (``force_local_logins_ssl``, ``force_local_data_ssl``, ``require_ssl_reuse``).

vsftpd is started by the test (:mod:`vsftpd_lab`), in the foreground, on 127.0.0.1 and a
free port, with a generated configuration and the lab PKI's certificate. It logs in real
local accounts through PAM, so a throw-away system user is created for the module (only
as root) and removed afterwards; its home lives in a fresh directory under /tmp. If a
check disagrees with real vsftpd, either the check or the lab's idea of vsftpd is wrong:
both matter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ftplib
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vsftpd_lab
from vsftpd_lab import (
    SystemUser,
    Vsftpd,
    VsftpdUnavailable,
    running_vsftpd,
    start_vsftpd,
    stop_vsftpd,
)

from harness.certs import LabPKI, lab_pki
from harness.checks import run_check
from harness.protocols.ftps_client import FTPClosed, FTPSClient
from harness.protocols.tls import Trust, client_context
from harness.results import CheckResult, Status
from harness.targets import Target

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

CURL = shutil.which("curl") or "/usr/bin/curl"
TIMEOUT = 5.0
TIMEOUT = 5.0
REUSE_REFUSAL = "522 SSL connection failed: session reuse required"


@pytest.fixture(scope="module")
def system_user() -> Iterator[SystemUser]:
    """A real local account for vsftpd's PAM login, with a random password."""
    try:
        with vsftpd_lab.system_user() as user:
            yield user
    except VsftpdUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def vsftpd(
    system_user: SystemUser, pki: LabPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Vsftpd]:
    with running_vsftpd(tmp_path_factory.mktemp("vsftpd"), pki) as server:
        yield server


@pytest.fixture(scope="module")
def target(vsftpd: Vsftpd, system_user: SystemUser, pki: LabPKI) -> Target:
    return Target(
        name="vsftpd", protocol="ftps", host="127.0.0.1", port=vsftpd.port,
        trust=Trust(ca_file=pki.ca_file), server_name="localhost",
        user=system_user.name, password=system_user.password, timeout=TIMEOUT,
        policy="require", passive_address="127.0.0.1", passive_ports=vsftpd.passive_ports,
        session_reuse_required=True,
    )  # fmt: skip


def run(name: str, target: Target, **params: Any) -> CheckResult:
    result = run_check(name, target, params)
    assert target.password is not None
    assert target.password not in json.dumps(result.to_dict(), default=str)
    return result


# --- the harness's checks ----------------------------------------------------------------

# check -> words its summary must contain against this vsftpd (the verdict's reasoning,
# not only its status: a pass for the wrong reason would hide a misjudgement).
PASSING = {
    "banner": "vsFTPd",
    "auth-tls": "TLS established",
    "certificate-trust": "trusted (ca)",
    "certificate-lint": "lint clean",
    # vsftpd 3.0.3 itself only switches off TLS 1.0 (ssl_tlsv1=NO; it has no ssl_tlsv1_1):
    # TLS 1.1 is refused by OpenSSL 3, whose default security level rules it out.
    "legacy-tls-refused": "refuses TLS 1.0, TLS 1.1",
    "pbsz-before-auth-refused": "refused with 503",
    "pbsz-prot-p": "accepted (200)",
    "login": "logged in over TLS",
    "plaintext-login-refused": "refused with 530",  # force_local_logins_ssl, before PASS
    # vsftpd answers PROT C with 200 and refuses the clear-text transfer itself (522):
    # the check accepts either place for the refusal.
    "prot-c-refused": "refused with 522",
    "pasv-address": "PASV announces 127.0.0.1:",
    "epsv": "LIST over it works",
    "data-session-reuse": f"server requires session reuse: yes (without reuse: {REUSE_REFUSAL})",
    "quit": "QUIT -> 221",
}


@pytest.mark.parametrize("name", sorted(PASSING))
def test_check_passes_against_vsftpd(target: Target, name: str) -> None:
    result = run(name, target)
    assert result.status is Status.PASS, result.describe()
    assert PASSING[name] in result.summary, result.summary


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_transfers_pass_against_vsftpd(target: Target, system_user: SystemUser, tls: str) -> None:
    result = run("transfers", target, files=3, size=200 * 1024, tls=tls)
    assert result.status is Status.PASS, result.describe()
    assert f"round-tripped intact over TLSv{tls}" in result.summary
    assert "3 files" in result.summary
    assert list(system_user.home.iterdir()) == []  # the check deleted what it stored


def test_feat_auth_tls_depends_on_ssl_tlsv1(
    target: Target, vsftpd: Vsftpd, pki: LabPKI, tmp_path: Path
) -> None:
    """vsftpd 3.0.3 (features.c) lists ``AUTH TLS`` in FEAT only when ``ssl_tlsv1=YES``,
    although it accepts AUTH TLS either way: with TLS 1.0 switched off, as here, FEAT
    misses it but ``AUTH TLS`` gets ``234 Proceed with negotiation.`` and TLS comes up.
    Clients are served and nothing is weaker: a warning (it was a fail), whose advice
    names vsftpd's ssl_tlsv1 and nothing of IIS or ProFTPD. The same vsftpd with
    ``ssl_tlsv1=YES`` passes it."""
    result = run("feat-auth-tls", target)
    if vsftpd.version <= (3, 0, 3):
        assert result.status is Status.WARN, result.describe()
        assert result.summary.startswith("FEAT does not list AUTH TLS, but AUTH TLS works "
                                         "(234, TLSv1.3)")
        assert any(" PBSZ" in line for line in result.transcript)  # FEAT was answered
        assert "234 Proceed with negotiation." in result.replies
        assert result.evidence["server_software"]["name"] == "vsftpd"
        assert result.evidence["server_software"]["version"] == "3.0.3"
        assert result.advice.startswith("AUTH TLS works but FEAT does not list it: vsftpd: "
                                        "3.0.x lists AUTH TLS in FEAT only when ssl_tlsv1=YES")
        assert "IIS" not in result.advice and "ProFTPD" not in result.advice
    else:  # assumed, not verified here: releases after 3.0.3 list it for TLS 1.2+ setups
        assert result.status is Status.PASS, result.describe()
    assert run("auth-tls", target).status is Status.PASS

    tlsv1 = start_vsftpd(tmp_path, pki, ssl_tlsv1="YES")
    try:
        listed = run("feat-auth-tls", dataclasses.replace(target, port=tlsv1.port))
    finally:
        stop_vsftpd(tlsv1.process)
    assert listed.status is Status.PASS, listed.describe()
    assert "lists AUTH TLS" in listed.summary


# --- the 522 failure mode -------------------------------------------------------------------


def _client(target: Target, tls: str, *, reuse: bool) -> FTPSClient:
    """A logged-in, protected session of the harness's own client."""
    assert target.user and target.password
    context = client_context(target.trust, max_version=tls)
    client = FTPSClient(target.host, target.port, context=context, server_name="localhost",
                        timeout=TIMEOUT, reuse_session=reuse)
    try:
        assert client.connect().code == 220
        assert client.auth_tls().code == 234
        _, password_reply = client.login(target.user, target.password)
        assert password_reply is not None and password_reply.code == 230
        assert client.pbsz(0).code == 200
        assert client.prot("P").code == 200
    except BaseException:
        client.close()
        raise
    return client


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_harness_client_without_session_reuse_gets_522(
    target: Target, system_user: SystemUser, tls: str
) -> None:
    listed = system_user.home / "listed-522.txt"
    listed.write_text("a listing vsftpd must not send before its 522\n")
    try:
        # Control: the same steps with reuse work, so reuse is the only difference.
        with _client(target, tls, reuse=True) as client:
            listing = client.list()
            assert listing.ok, listing.describe()
            assert listing.reuse_offered and listing.session_reused
            assert b"listed-522.txt" in listing.data
            client.quit_quietly()

        with _client(target, tls, reuse=False) as client:
            refused = client.list()
            assert not refused.reuse_offered
            assert refused.preliminary is not None and refused.preliminary.code == 150
            assert refused.final is not None, refused.describe()
            assert refused.final.first == REUSE_REFUSAL  # the lab says "...failed; session..."
            assert refused.size == 0  # nothing listed to a connection that did not resume
            # vsftpd ends the whole session after the 522: nothing more comes, the control
            # connection is closed (the lab keeps it open; docs/ftps.md compares the two).
            with pytest.raises(FTPClosed, match="closed by server"):
                client.read_reply(timeout=TIMEOUT)
    finally:
        listed.unlink()


def test_vsftpd_cannot_handshake_a_data_connection_before_the_command(target: Target) -> None:
    """vsftpd accepts a passive data connection only when the transfer command arrives, so
    a client that waits for the data handshake before sending the command waits in vain
    (the lab judges such a handshake at once; docs/ftps.md compares the two)."""
    with _client(target, "1.3", reuse=True) as client:
        reply, endpoint = client.passive("PASV")
        assert endpoint is not None, reply
        assert client.context is not None and isinstance(client.sock, ssl.SSLSocket)
        raw = socket.create_connection((endpoint.connect_host, endpoint.port), timeout=TIMEOUT)
        data = client.context.wrap_socket(raw, server_hostname="localhost",
                                          session=client.sock.session,
                                          do_handshake_on_connect=False)
        data.settimeout(1.0)
        with data, pytest.raises(TimeoutError):
            data.do_handshake()
        client.quit_quietly()


# What vsftpd does when a data connection resumes ANOTHER control connection's session:
# each session runs in a process forked after the SSL context was made, so the session-id
# cache is per session but the ticket keys are shared. docs/ftps.md quotes this table; the
# lab refuses all three (tests/lab/test_ftps_data_refusal.py).
VSFTPD_FOREIGN_SESSION = {
    "tls1.2-session-id": ("1.2", False, "522"),
    "tls1.2-ticket": ("1.2", True, "226"),
    "tls1.3-ticket": ("1.3", True, "226"),
}


@pytest.mark.parametrize("kind", sorted(VSFTPD_FOREIGN_SESSION))
def test_vsftpd_and_another_control_connections_session(target: Target, kind: str) -> None:
    tls, tickets, answer = VSFTPD_FOREIGN_SESSION[kind]
    assert target.user and target.password
    context = client_context(target.trust, min_version=tls, max_version=tls)
    if not tickets:
        context.options |= ssl.OP_NO_TICKET
    clients = [FTPSClient(target.host, target.port, context=context, server_name="localhost",
                          timeout=TIMEOUT) for _ in range(2)]
    try:
        for client in clients:
            assert client.connect().code == 220
            assert client.auth_tls().code == 234
            client.login(target.user, target.password)
            assert client.pbsz(0).code == 200 and client.prot("P").code == 200
        owner, thief = clients
        assert isinstance(owner.sock, ssl.SSLSocket) and owner.sock.session is not None
        foreign = owner.sock.session
        assert foreign.has_ticket is tickets
        reply, endpoint = thief.passive("PASV")
        assert endpoint is not None, reply
        raw = socket.create_connection((endpoint.connect_host, endpoint.port), timeout=TIMEOUT)
        thief.send_line("LIST")
        assert thief.read_reply().code == 150
        with context.wrap_socket(raw, server_hostname="localhost", session=foreign) as data:
            data.settimeout(TIMEOUT)
            with contextlib.suppress(OSError):
                while data.recv(65536):
                    pass
            reused = data.session_reused
        final = thief.read_reply()
        assert (final.first[:3], reused) == (answer, answer == "226"), final.first
    finally:
        for client in clients:
            client.close()


def test_stock_ftplib_gets_522(target: Target, system_user: SystemUser) -> None:
    """``ftplib.FTP_TLS`` does not resume the session on data connections (CPython
    #63699), so with ``require_ssl_reuse=YES`` every transfer fails."""
    assert target.password is not None
    ftp = ftplib.FTP_TLS(context=client_context(target.trust), timeout=TIMEOUT)
    try:
        ftp.connect(target.host, target.port)
        ftp.login(system_user.name, target.password)  # AUTH TLS first, then USER/PASS
        ftp.prot_p()
        lines: list[str] = []
        with pytest.raises(ftplib.error_perm) as refused:
            try:
                ftp.retrlines("LIST", lines.append)
            except (OSError, EOFError):  # the TLS layer broke first: read the reply
                ftp.getresp()
        assert str(refused.value) == REUSE_REFUSAL
        assert lines == []
    finally:
        ftp.close()


# --- curl against vsftpd ------------------------------------------------------------------


def _curl(
    system_user: SystemUser, pki: LabPKI, tmp_path: Path, url: str, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    if not os.access(CURL, os.X_OK):
        pytest.skip("curl is not installed (Debian package curl)")
    netrc = tmp_path / "netrc"
    if not netrc.exists():
        descriptor = os.open(netrc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"machine 127.0.0.1 login {system_user.name} "
                         f"password {system_user.password}\n")
    completed = subprocess.run(
        [CURL, "--show-error", "--no-progress-meter", "--verbose", "--ssl-reqd",
         "--cacert", str(pki.ca_file), "--netrc-file", str(netrc),
         "--connect-timeout", "5", "--max-time", "10", *map(str, args), url],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    completed.stderr = completed.stderr.replace(system_user.password, "********")
    return completed


def test_curl_round_trip_and_no_data_without_reuse(
    vsftpd: Vsftpd, system_user: SystemUser, pki: LabPKI, tmp_path: Path
) -> None:
    payload = os.urandom(1024 * 1024 + 7)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    url = f"ftp://127.0.0.1:{vsftpd.port}/curl.bin"
    # TLS 1.2 for the upload: curl (7.88) may reset a TLS 1.3 upload's data connection
    # with the session ticket unread, and vsftpd then rightly answers 426 (curl#6149).
    stored = _curl(system_user, pki, tmp_path, url, "--tls-max", "1.2", "--upload-file", upload)
    assert stored.returncode == 0, stored.stderr
    assert (system_user.home / "curl.bin").read_bytes() == payload
    download = tmp_path / "download.bin"
    fetched = _curl(system_user, pki, tmp_path, url, "--output", download)
    assert fetched.returncode == 0, fetched.stderr
    assert hashlib.sha256(download.read_bytes()).digest() == hashlib.sha256(payload).digest()

    # Without session reuse vsftpd drops the data connection before sending a byte (and
    # then ends the session with 522, which curl does not wait to read): curl sees the
    # whole announced size missing and fails with 18.
    leaked = tmp_path / "leaked.bin"
    refused = _curl(system_user, pki, tmp_path, url, "--no-sessionid", "--output", leaked)
    assert refused.returncode == 18, refused.stderr
    assert "< 150 " in refused.stderr
    assert f"transfer closed with {len(payload)} bytes remaining" in refused.stderr
    assert not leaked.exists() or leaked.stat().st_size == 0
    (system_user.home / "curl.bin").unlink()

"""The harness's FTPS checks against a REAL vsftpd, the server whose strict settings the
lab imitates (``force_local_logins_ssl``, ``force_local_data_ssl``, ``require_ssl_reuse``).

vsftpd is started by the test, in the foreground, on 127.0.0.1 and a free port, with a
generated configuration and the lab PKI's certificate. It logs in real local accounts
through PAM, so a throw-away system user is created for the module (only as root) and
removed afterwards; its home lives in a fresh directory under /tmp. If a check disagrees
with real vsftpd, either the check or the lab's idea of vsftpd is wrong: both matter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ftplib
import hashlib
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.certs import LabPKI, lab_pki
from harness.checks import run_check
from harness.protocols.ftps_client import FTPClosed, FTPSClient
from harness.protocols.tls import Trust, client_context
from harness.results import CheckResult, Status
from harness.targets import Target

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
CURL = shutil.which("curl") or "/usr/bin/curl"
PAM_SERVICE = Path("/etc/pam.d/vsftpd")
USER_MARKER = "ftps-lab vsftpd interop user"  # GECOS prefix: only such users are ever removed
HOME_PREFIX = "ftps-lab-vsftpd-"
START_TIMEOUT = 5.0
TIMEOUT = 5.0
REUSE_REFUSAL = "522 SSL connection failed: session reuse required"


# --- the local user ---------------------------------------------------------------------


@dataclass(frozen=True)
class SystemUser:
    name: str
    password: str
    home: Path


def _login_shell() -> str:
    """A shell listed in /etc/shells: Debian's PAM service for vsftpd (pam_shells)
    refuses accounts whose shell is not, e.g. /usr/sbin/nologin."""
    try:
        listed = [line.strip() for line in Path("/etc/shells").read_text().splitlines()]
    except OSError:
        listed = []
    shells = [shell for shell in listed if shell.startswith("/") and os.access(shell, os.X_OK)]
    if not shells:
        pytest.skip("/etc/shells lists no usable shell; vsftpd's PAM service would refuse login")
    return "/bin/sh" if "/bin/sh" in shells else shells[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_user(name: str) -> None:
    for command in (["userdel", name], ["userdel", "--force", name]):
        if subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0:
            return
    raise RuntimeError(f"could not remove the test user {name!r}")


def _remove_stale_users() -> None:
    """Users this module left behind in a killed run (the pid in GECOS is gone)."""
    for entry in pwd.getpwall():
        match = re.fullmatch(re.escape(USER_MARKER) + r" pid (\d+)", entry.pw_gecos)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _remove_user(entry.pw_name)
        base = Path(entry.pw_dir).parent
        if base.name.startswith(HOME_PREFIX):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def system_user() -> Iterator[SystemUser]:
    """A real local account for vsftpd's PAM login, with a random password."""
    if not os.access(VSFTPD, os.X_OK):
        pytest.skip("vsftpd is not installed (Debian package vsftpd)")
    if os.geteuid() != 0:
        pytest.skip("needs root: vsftpd logs in real local users, so the test creates one")
    missing = [tool for tool in ("useradd", "userdel", "chpasswd") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot create a local user: {', '.join(missing)} not found")
    if not PAM_SERVICE.is_file():
        pytest.skip(f"{PAM_SERVICE} is missing (it ships with Debian's vsftpd package)")
    _remove_stale_users()
    # Unique per run, so concurrent runs never share (or delete) each other's account.
    name = f"ftpslab-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    base = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
    base.chmod(0o711)  # the user must be able to reach its home, nothing else
    home = base / "home"
    expires = (dt.date.today() + dt.timedelta(days=2)).isoformat()  # a leftover dies anyway
    created = subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", _login_shell(),
         "--comment", f"{USER_MARKER} pid {os.getpid()}", "--expiredate", expires, name],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if created.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"useradd failed: {created.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        home.mkdir(mode=0o700)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        # chpasswd reads "name:password" on stdin: never on a command line.
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True,
                       capture_output=True, timeout=30, check=True)
        yield SystemUser(name, password, home)
    finally:
        _remove_user(name)
        shutil.rmtree(base, ignore_errors=True)


# --- vsftpd -------------------------------------------------------------------------------


@cache
def _knows_option(option: str) -> bool:
    """Whether this vsftpd build has a config option (it refuses to start on unknown ones:
    Debian 12's 3.0.3 has no ssl_tlsv1_1/ssl_tlsv1_2, later releases do)."""
    return option.encode() + b"\0" in Path(VSFTPD).read_bytes()


def _free_port_range(width: int) -> tuple[int, int]:
    """``width`` consecutive free loopback ports below the ephemeral range."""
    for _ in range(200):
        low = random.randint(20000, 32000 - width)
        sockets: list[socket.socket] = []
        try:
            for port in range(low, low + width):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return low, low + width - 1
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {width} consecutive free ports found")


def vsftpd_config(
    port: int, passive: tuple[int, int], empty_dir: Path, pki: LabPKI, **overrides: str
) -> str:
    """A vsftpd.conf as strict as the lab's policy 'require' with session reuse."""
    files = pki.files("lab")
    options = {
        "listen": "YES",
        "listen_ipv6": "NO",
        "listen_address": "127.0.0.1",
        "listen_port": str(port),
        "background": "NO",
        "anonymous_enable": "NO",
        "local_enable": "YES",
        "write_enable": "YES",
        "local_umask": "077",
        "chroot_local_user": "YES",
        "allow_writeable_chroot": "YES",  # the home is the chroot and must take uploads
        "pam_service_name": "vsftpd",
        "secure_chroot_dir": str(empty_dir),
        "port_enable": "NO",  # passive only: no active-mode connections out of the test
        "pasv_enable": "YES",
        "pasv_min_port": str(passive[0]),
        "pasv_max_port": str(passive[1]),
        "pasv_address": "127.0.0.1",
        "pasv_addr_resolve": "NO",
        "ssl_enable": "YES",
        "force_local_logins_ssl": "YES",
        "force_local_data_ssl": "YES",
        "require_ssl_reuse": "YES",
        "ssl_sslv2": "NO",
        "ssl_sslv3": "NO",
        "ssl_tlsv1": "NO",
        "ssl_request_cert": "NO",
        "ssl_ciphers": "ECDHE+AESGCM:ECDHE+CHACHA20",
        "rsa_cert_file": str(files.cert),
        "rsa_private_key_file": str(files.key),
        "xferlog_enable": "NO",
        "syslog_enable": "NO",
        "idle_session_timeout": "30",
        "data_connection_timeout": "30",
    }
    if _knows_option("ssl_tlsv1_1"):
        options["ssl_tlsv1_1"] = "NO"
    if _knows_option("ssl_tlsv1_2"):
        options["ssl_tlsv1_2"] = "YES"
    options.update(overrides)
    return "".join(f"{key}={value}\n" for key, value in options.items())


@dataclass
class Vsftpd:
    process: subprocess.Popen[bytes]
    port: int
    passive_ports: tuple[int, int]
    banner: str
    log: Path

    @property
    def version(self) -> tuple[int, ...]:
        match = re.search(r"vsFTPd (\d+(?:\.\d+)*)", self.banner)
        return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (vsftpd's per-session processes call setsid, so they are
    not in its process group); read from /proc before the parent goes away."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate vsftpd and its session processes (by pid), wait, kill what remains."""
    children = _descendants(process.pid)
    for pid in [process.pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    deadline = time.monotonic() + 5
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if _pid_alive(pid) and not _is_zombie(pid)]
        if children:
            time.sleep(0.02)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _wait_for_banner(process: subprocess.Popen[bytes], port: int, log: Path) -> str:
    """Connect until vsftpd answers with its 220 banner; fail fast if it exited."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"vsftpd exited with {process.returncode}: "
                               f"{log.read_text(errors='replace').strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                with sock.makefile("rb") as reader:
                    line = reader.readline(512).decode(errors="replace").rstrip()
                    if not line.startswith("220"):
                        raise RuntimeError(f"vsftpd greeted with {line!r}, not 220")
                    sock.sendall(b"QUIT\r\n")
                    return line
        except (ConnectionRefusedError, ConnectionResetError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"vsftpd did not greet within {START_TIMEOUT:g} s") from None
            time.sleep(0.02)  # poll interval while the listener comes up, not a fixed wait


def start_vsftpd(directory: Path, pki: LabPKI, **overrides: str) -> Vsftpd:
    """Start vsftpd on free ports; retry if another process took a port meanwhile."""
    directory.mkdir(parents=True, exist_ok=True)
    empty = directory / "empty"
    empty.mkdir(mode=0o755, exist_ok=True)
    last_error = ""
    for attempt in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        passive = _free_port_range(4)
        conf = directory / f"vsftpd-{attempt}.conf"
        conf.write_text(vsftpd_config(port, passive, empty, pki, **overrides))
        conf.chmod(0o600)
        log = directory / f"vsftpd-{attempt}.log"
        # vsftpd writes its "500 OOPS" start-up errors to fd 0, so stdin is the log too.
        with log.open("w+b") as stdio:
            process = subprocess.Popen(
                [VSFTPD, str(conf)], stdin=stdio, stdout=stdio, stderr=stdio,
                start_new_session=True,
            )
        try:
            banner = _wait_for_banner(process, port, log)
        except RuntimeError as exc:
            _stop(process)
            last_error = str(exc)
            if "bind" in last_error:
                continue
            raise
        return Vsftpd(process, port, passive, banner, log)
    raise RuntimeError(f"vsftpd could not start: {last_error}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def vsftpd(
    system_user: SystemUser, pki: LabPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Vsftpd]:
    server = start_vsftpd(tmp_path_factory.mktemp("vsftpd"), pki)
    try:
        yield server
    finally:
        _stop(server.process)


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
    although it accepts AUTH TLS either way: with TLS 1.0 switched off, as here, the
    check rightly reports the missing feature (RFC 4217 clients may rely on FEAT).
    The same vsftpd with ``ssl_tlsv1=YES`` passes it."""
    result = run("feat-auth-tls", target)
    if vsftpd.version <= (3, 0, 3):
        assert result.status is Status.FAIL, result.describe()
        assert "does not list AUTH TLS" in result.summary
        assert any(" PBSZ" in line for line in result.transcript)  # FEAT was answered
    else:  # assumed, not verified here: releases after 3.0.3 list it for TLS 1.2+ setups
        assert result.status is Status.PASS, result.describe()
    assert run("auth-tls", target).status is Status.PASS

    tlsv1 = start_vsftpd(tmp_path, pki, ssl_tlsv1="YES")
    try:
        listed = run("feat-auth-tls", dataclasses.replace(target, port=tlsv1.port))
    finally:
        _stop(tlsv1.process)
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
def test_harness_client_without_session_reuse_gets_522(target: Target, tls: str) -> None:
    # Control: the same steps with reuse work, so reuse is the only difference.
    with _client(target, tls, reuse=True) as client:
        listing = client.list()
        assert listing.ok, listing.describe()
        assert listing.reuse_offered and listing.session_reused
        client.quit_quietly()

    with _client(target, tls, reuse=False) as client:
        refused = client.list()
        assert not refused.reuse_offered
        assert refused.preliminary is not None and refused.preliminary.code == 150
        assert refused.final is not None and refused.final.code == 522, refused.describe()
        assert "session reuse required" in refused.final.text
        assert refused.size == 0  # nothing listed to a connection that did not resume
        # vsftpd ends the whole session after a 522.
        with pytest.raises(FTPClosed):
            client.command("NOOP")


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

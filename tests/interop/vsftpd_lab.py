"""A real vsftpd on loopback, with a throw-away system user, for interoperability tests.

vsftpd is the server whose strict settings the embedded lab imitates
(``force_local_logins_ssl``, ``force_local_data_ssl``, ``require_ssl_reuse``), so tests
run the harness against the real thing too. It is started in the foreground on
127.0.0.1 and free ports, with a generated configuration and the lab PKI's certificate.
It logs in real local accounts through PAM, so :func:`system_user` creates one (root
only) with a random password and a home in a fresh directory under /tmp, and removes
both afterwards; accounts left behind by a killed run are recognised by their GECOS
marker and removed the next time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness.certs import LabPKI
from harness.lab.pool import free_port_range

VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
PAM_SERVICE = Path("/etc/pam.d/vsftpd")
USER_MARKER = "ftps-lab vsftpd interop user"  # GECOS prefix: only such users are ever removed
HOME_PREFIX = "ftps-lab-vsftpd-"
START_TIMEOUT = 5.0


class VsftpdUnavailable(RuntimeError):
    """This machine cannot run the vsftpd lab; the message says why (a skip reason)."""


# --- the local user ---------------------------------------------------------------------


@dataclass(frozen=True)
class SystemUser:
    name: str
    password: str = field(repr=False)
    home: Path


def missing_prerequisites() -> str | None:
    """Why vsftpd with a real local user cannot run here, or None when it can."""
    if not os.access(VSFTPD, os.X_OK):
        return "vsftpd is not installed (Debian package vsftpd)"
    if os.geteuid() != 0:
        return "needs root: vsftpd logs in real local users, so the test creates one"
    missing = [tool for tool in ("useradd", "userdel", "chpasswd") if shutil.which(tool) is None]
    if missing:
        return f"cannot create a local user: {', '.join(missing)} not found"
    if not PAM_SERVICE.is_file():
        return f"{PAM_SERVICE} is missing (it ships with Debian's vsftpd package)"
    return None


def _login_shell() -> str:
    """A shell listed in /etc/shells: Debian's PAM service for vsftpd (pam_shells)
    refuses accounts whose shell is not, e.g. /usr/sbin/nologin."""
    try:
        listed = [line.strip() for line in Path("/etc/shells").read_text().splitlines()]
    except OSError:
        listed = []
    shells = [shell for shell in listed if shell.startswith("/") and os.access(shell, os.X_OK)]
    if not shells:
        raise VsftpdUnavailable(
            "/etc/shells lists no usable shell; vsftpd's PAM service would refuse login"
        )
    return "/bin/sh" if "/bin/sh" in shells else shells[0]


def pid_alive(pid: int) -> bool:
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
    """Users a killed run left behind (the pid in GECOS is gone)."""
    for entry in pwd.getpwall():
        match = re.fullmatch(re.escape(USER_MARKER) + r" pid (\d+)", entry.pw_gecos)
        if match is None or pid_alive(int(match.group(1))):
            continue
        _remove_user(entry.pw_name)
        base = Path(entry.pw_dir).parent
        if base.name.startswith(HOME_PREFIX):
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def system_user() -> Iterator[SystemUser]:
    """A real local account for vsftpd's PAM login, with a random password.

    Raises :class:`VsftpdUnavailable` when the machine cannot provide one.
    """
    reason = missing_prerequisites()
    if reason is not None:
        raise VsftpdUnavailable(reason)
    shell = _login_shell()
    _remove_stale_users()
    # Unique per run, so concurrent runs never share (or delete) each other's account.
    name = f"ftpslab-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    base = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
    base.chmod(0o711)  # the user must be able to reach its home, nothing else
    home = base / "home"
    expires = (dt.date.today() + dt.timedelta(days=2)).isoformat()  # a leftover dies anyway
    created = subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", shell,
         "--comment", f"{USER_MARKER} pid {os.getpid()}", "--expiredate", expires, name],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if created.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise VsftpdUnavailable(f"useradd failed: {created.stderr.strip()}")
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
def knows_option(option: str) -> bool:
    """Whether this vsftpd build has a config option (it refuses to start on unknown ones:
    Debian 12's 3.0.3 has no ssl_tlsv1_1/ssl_tlsv1_2, later releases do)."""
    return option.encode() + b"\0" in Path(VSFTPD).read_bytes()


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
    if knows_option("ssl_tlsv1_1"):
        options["ssl_tlsv1_1"] = "NO"
    if knows_option("ssl_tlsv1_2"):
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


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def stop_vsftpd(process: subprocess.Popen[bytes]) -> None:
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
        children = [pid for pid in children if pid_alive(pid) and not _is_zombie(pid)]
        if children:
            time.sleep(0.02)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for_banner(process: subprocess.Popen[bytes], port: int, log: Path) -> str:
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
        passive = free_port_range(4, ("127.0.0.1",))
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
            banner = wait_for_banner(process, port, log)
        except RuntimeError as exc:
            stop_vsftpd(process)
            last_error = str(exc)
            if "bind" in last_error:
                continue
            raise
        return Vsftpd(process, port, passive, banner, log)
    raise RuntimeError(f"vsftpd could not start: {last_error}")


@contextlib.contextmanager
def running_vsftpd(directory: Path, pki: LabPKI, **overrides: str) -> Iterator[Vsftpd]:
    """:func:`start_vsftpd`, stopped again however the block ends."""
    server = start_vsftpd(directory, pki, **overrides)
    try:
        yield server
    finally:
        stop_vsftpd(server.process)

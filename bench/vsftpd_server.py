"""A real vsftpd on 127.0.0.1 for the transfer figure (optional: root and vsftpd needed).

vsftpd logs in real local accounts through PAM, so a throw-away system user with a random
password is created for the run and removed afterwards (its GECOS names this bench and
the pid, so a user left by a killed run can be recognised). vsftpd runs in the
foreground on a free port with passive ports in a free range, TLS required on control
and data, session reuse required, and the lab's certificate.
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
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import LOOPBACK, BenchError, free_port, stop_process

from harness.lab.pool import free_port_range

VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
PAM_SERVICE = Path("/etc/pam.d/vsftpd")
USER_MARKER = "ftps-lab bench user"


def unavailable() -> str | None:
    """Why vsftpd cannot be used here, or None."""
    if not os.access(VSFTPD, os.X_OK):
        return "vsftpd is not installed (Debian package vsftpd)"
    if os.geteuid() != 0:
        return "needs root: vsftpd logs in a real local user, which the bench creates"
    missing = [tool for tool in ("useradd", "userdel", "chpasswd") if shutil.which(tool) is None]
    if missing:
        return f"cannot create a local user: {', '.join(missing)} not found"
    if not PAM_SERVICE.is_file():
        return f"{PAM_SERVICE} is missing"
    return None


def _knows_option(option: str) -> bool:
    """vsftpd refuses to start on options its build lacks (3.0.3 has no ssl_tlsv1_2)."""
    return option.encode() + b"\0" in Path(VSFTPD).read_bytes()


def _shell() -> str:
    """Debian's PAM service for vsftpd (pam_shells) wants a shell from /etc/shells."""
    with contextlib.suppress(OSError):
        shells = [line.strip() for line in Path("/etc/shells").read_text().splitlines()]
        if "/bin/sh" in shells:
            return "/bin/sh"
        for shell in shells:
            if shell.startswith("/") and os.access(shell, os.X_OK):
                return shell
    return "/bin/sh"


def _traversable(path: Path) -> bool:
    """Whether any user may pass through ``path`` and all its parents (o+x)."""
    try:
        return all(part.stat().st_mode & stat.S_IXOTH for part in (path, *path.parents))
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: an existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _descendants(pid: int) -> list[int]:
    """vsftpd's session processes call setsid: find them through /proc by parent pid."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
            parents[int(entry.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


class Vsftpd:
    """vsftpd plus its local user; a context manager that removes both."""

    def __init__(self, cert: Path, key: Path, parent: str | None = None) -> None:
        self.cert, self.key = cert, key
        self.user = f"ftpsbench-{secrets.token_hex(3)}"
        self.password = secrets.token_urlsafe(24)
        if parent is not None and not _traversable(Path(parent)):
            parent = None  # the local user must reach its home: fall back to the temp dir
        self.base = Path(tempfile.mkdtemp(prefix="ftps-lab-bench-vsftpd-", dir=parent))
        self.home = self.base / "home"
        self.port = 0
        self.banner = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._user_created = False

    @property
    def uid_gid(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.user)
        return entry.pw_uid, entry.pw_gid

    def start(self) -> Vsftpd:
        try:
            self._remove_stale_users()
            self._create_user()
            self._start_server()
        except BaseException:
            self.close()
            raise
        return self

    def _remove_stale_users(self) -> None:
        for entry in pwd.getpwall():
            match = re.fullmatch(re.escape(USER_MARKER) + r" pid (\d+)", entry.pw_gecos)
            if match and not _pid_alive(int(match.group(1))):
                subprocess.run(["userdel", entry.pw_name], capture_output=True, timeout=30,
                               check=False)  # fmt: skip

    def _create_user(self) -> None:
        self.base.chmod(0o711)
        expires = (dt.date.today() + dt.timedelta(days=2)).isoformat()
        done = subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(self.home), "--shell", _shell(),
             "--comment", f"{USER_MARKER} pid {os.getpid()}", "--expiredate", expires,
             self.user],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"useradd failed: {done.stderr.strip()}")
        self._user_created = True
        self.home.mkdir(mode=0o700)
        os.chown(self.home, *self.uid_gid)
        # chpasswd reads "name:password" on stdin: never on a command line.
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}\n", text=True,
                       capture_output=True, timeout=30, check=True)  # fmt: skip

    def config(self, port: int, passive: tuple[int, int]) -> str:
        empty = self.base / "empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        options = {
            "listen": "YES", "listen_ipv6": "NO", "listen_address": LOOPBACK,
            "listen_port": str(port), "background": "NO",
            "anonymous_enable": "NO", "local_enable": "YES", "write_enable": "YES",
            "local_umask": "077", "chroot_local_user": "YES", "allow_writeable_chroot": "YES",
            "pam_service_name": "vsftpd", "secure_chroot_dir": str(empty),
            "port_enable": "NO", "pasv_enable": "YES", "pasv_min_port": str(passive[0]),
            "pasv_max_port": str(passive[1]), "pasv_address": LOOPBACK,
            "ssl_enable": "YES", "force_local_logins_ssl": "YES", "force_local_data_ssl": "YES",
            "require_ssl_reuse": "YES", "ssl_sslv2": "NO", "ssl_sslv3": "NO", "ssl_tlsv1": "NO",
            "ssl_request_cert": "NO", "ssl_ciphers": "ECDHE+AESGCM:ECDHE+CHACHA20",
            "rsa_cert_file": str(self.cert), "rsa_private_key_file": str(self.key),
            "xferlog_enable": "NO", "syslog_enable": "NO",
            "idle_session_timeout": "60", "data_connection_timeout": "60",
        }  # fmt: skip
        if _knows_option("ssl_tlsv1_1"):
            options["ssl_tlsv1_1"] = "NO"
        if _knows_option("ssl_tlsv1_2"):
            options["ssl_tlsv1_2"] = "YES"
        return "".join(f"{key}={value}\n" for key, value in options.items())

    def _start_server(self) -> None:
        last = ""
        for attempt in range(3):
            self.port = free_port()
            conf = self.base / f"vsftpd-{attempt}.conf"
            conf.write_text(self.config(self.port, free_port_range(8, (LOOPBACK,))))
            conf.chmod(0o600)
            log = self.base / f"vsftpd-{attempt}.log"
            # vsftpd writes its "500 OOPS" start-up errors to fd 0, so stdin is the log too.
            with log.open("w+b") as stdio:
                self.process = subprocess.Popen(
                    [VSFTPD, str(conf)], stdin=stdio, stdout=stdio, stderr=stdio,
                    start_new_session=True,
                )  # fmt: skip
            try:
                self.banner = self._wait_for_banner(log)
                return
            except BenchError as exc:
                self._stop_server()
                last = str(exc)
                if "bind" not in last:
                    raise
        raise BenchError(f"vsftpd could not start: {last}")

    def _wait_for_banner(self, log: Path) -> str:
        assert self.process is not None
        deadline = time.monotonic() + 5.0
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"vsftpd exited: {log.read_text(errors='replace').strip()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as sock:
                    sock.settimeout(2.0)
                    line = sock.recv(512).decode(errors="replace").strip()
                    sock.sendall(b"QUIT\r\n")
                    if not line.startswith("220"):
                        raise BenchError(f"vsftpd greeted with {line!r}")
                    return line
            except (ConnectionRefusedError, ConnectionResetError, TimeoutError):
                if time.monotonic() > deadline:
                    raise BenchError("vsftpd did not greet within 5 s") from None
                time.sleep(0.02)

    def put(self, name: str, source: Path) -> Path:
        """Copy ``source`` into the user's home, owned by the user."""
        target = self.home / name
        shutil.copyfile(source, target)
        os.chown(target, *self.uid_gid)
        return target

    def _stop_server(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        children = _descendants(process.pid)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stop_process(process)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self._stop_server()
        if self._user_created:
            for command in (["userdel", self.user], ["userdel", "--force", self.user]):
                done = subprocess.run(command, capture_output=True, timeout=30, check=False)
                if done.returncode == 0:
                    break
            self._user_created = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Vsftpd:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

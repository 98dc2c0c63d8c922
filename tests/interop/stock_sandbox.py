"""Run a third-party daemon in private PID and mount namespaces, for the stock-server tests.

Why namespaces: the stock-server tests run six real servers with their distribution
configurations, and those configurations name system accounts (``proftpd``,
``Debian-exim``), PAM services (``/etc/pam.d/proftpd``) and paths that only exist once
a package is installed, which four of them cannot be (they conflict). Instead of
creating accounts and files on the machine, each daemon sees private copies of
``/etc/passwd``, ``/etc/group``, ``/etc/shadow`` and ``/etc/pam.d`` bind-mounted over the
real ones, in a mount namespace that ends with it: nothing on the machine changes, and a
test user (with a password) exists only for the daemon.

The PID namespace makes the leftover check exact: every process the daemon forks, even
one that calls ``setsid`` or double-forks, stays in the namespace. A shell is the
namespace's init and the daemon its child; when the daemon exits the shell does, and the
kernel kills the rest. :meth:`Isolated.stop` sends the stop signal, waits (bounded),
records whatever had not exited by then as a leftover, kills it, and confirms the
namespace is empty. A killed test run takes its daemons with it (PR_SET_PDEATHSIG).

Host names come from a private /etc/hosts only (``hosts: files``), and the resolver
points at loopback: no daemon sends a DNS query off the machine.

The network namespace is shared on purpose: the tests reach the daemon on 127.0.0.1,
and :meth:`Isolated.listening` reports every address its processes listen on so the
tests can assert that nothing listens beyond loopback.

Needs root, ``unshare``, ``mount``, ``hostname`` (util-linux, mount, hostname: all in a
base Debian) and ``openssl`` (password hashes).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from postfix_lab import free_ports  # noqa: F401 (re-exported to the stock launchers)

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL = 0.02  # seconds between polls; every poll loop is bounded by a deadline


class SandboxUnavailable(RuntimeError):
    """This machine cannot isolate a daemon; the message is the skip reason."""


class DaemonFailed(RuntimeError):
    """The daemon did not come up; the message carries its log tail."""


@cache
def missing_prerequisites() -> str | None:
    """Why daemons cannot be isolated here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: the stock servers run in private mount and PID namespaces"
    if not os.access(UNSHARE, os.X_OK):
        return "unshare is not installed (Debian package util-linux)"
    if shutil.which("mount") is None:
        return "mount is not installed (Debian package mount)"
    if shutil.which("hostname") is None:
        return "hostname is not installed (Debian package hostname)"
    if not os.access(OPENSSL, os.X_OK):
        return "openssl is not installed (Debian package openssl)"
    probe = subprocess.run(
        [UNSHARE, "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
         "--", "mount", "--bind", "/etc/passwd", "/etc/passwd"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"cannot create mount/PID namespaces here: {probe.stderr.strip()}"
    return None


# --- accounts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A user that exists only inside the sandbox (private passwd/group/shadow)."""

    name: str
    uid: int
    gid: int
    home: Path
    shell: str = "/usr/sbin/nologin"
    password: str | None = field(default=None, repr=False)
    gecos: str = "ftps-lab sandbox account"


def sha512_crypt(password: str) -> str:
    """A ``$6$`` crypt(3) hash (what /etc/shadow and Exim's crypteq take); the password
    goes to openssl on stdin, never on a command line."""
    done = subprocess.run([OPENSSL, "passwd", "-6", "-stdin"], input=password + "\n",
                          capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


def _ids_in_use() -> set[int]:
    used: set[int] = set()
    for table in ("/etc/passwd", "/etc/group"):
        for line in Path(table).read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[2].isdigit():
                used.add(int(parts[2]))
    return used


def free_ids(count: int, low: int, high: int) -> list[int]:
    """``count`` ids unused as uid and gid on this machine, so files the sandbox's users
    own are never mistaken for a real user's."""
    used = _ids_in_use()
    free = [i for i in range(low, high) if i not in used]
    if len(free) < count:
        raise SandboxUnavailable(f"no {count} free ids in {low}-{high}")
    start = secrets.randbelow(len(free) - count + 1)
    return free[start : start + count]


def login_shell() -> str:
    """A shell listed in /etc/shells: PAM's pam_shells (vsftpd, pure-ftpd) and ProFTPD's
    RequireValidShell refuse users whose shell is not, e.g. /usr/sbin/nologin."""
    try:
        listed = [line.strip() for line in Path("/etc/shells").read_text().splitlines()]
    except OSError:
        listed = []
    shells = [s for s in listed if s.startswith("/") and os.access(s, os.X_OK)]
    if not shells:
        raise SandboxUnavailable("/etc/shells lists no usable shell")
    return "/bin/sh" if "/bin/sh" in shells else shells[0]


# --- the namespace --------------------------------------------------------------------------


def pid_namespace(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/pid")
    return None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _namespace_pid(pid: int) -> int | None:
    """A process's pid as its own (innermost) PID namespace numbers it."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def namespace_members(namespace: str) -> list[int]:
    """Live (non-zombie) processes, by host pid, whose PID namespace is ``namespace``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid_namespace(pid) != namespace:
            continue
        fields = _proc_stat(pid)
        if fields is not None and fields[0] != "Z":
            members.append(pid)
    return sorted(members)


def _socket_inodes(pids: Iterable[int]) -> set[str]:
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    return inodes


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_sockets(pids: Iterable[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP listener held by ``pids``."""
    inodes = _socket_inodes(pids)
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                address, port = fields[1].rsplit(":", 1)
                found.add((_decode_address(address), int(port, 16)))
    return found


@dataclass
class Isolated:
    """One daemon in its own PID namespace, below a shell as init (module docstring)."""

    name: str
    process: subprocess.Popen[bytes]  # the unshare process on the host side
    log: Path
    init_pid: int = 0  # host pid of the namespace's init (the shell, pid 1 inside)
    daemon_pid: int = 0  # host pid of the daemon (the init's child)
    namespace: str = ""
    stop_signal: int = signal.SIGTERM
    # Which process the stop signal goes to, when not the init's child (Postfix: the
    # master, not the postfix-script shell that waits for it).
    stop_target: Callable[[Isolated], int | None] | None = None
    leftovers: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        """The unshare process lives exactly as long as the daemon (its only child)."""
        return self.process.poll() is None

    def members(self) -> list[int]:
        return namespace_members(self.namespace) if self.namespace else []

    def member_named(self, comm: str) -> int | None:
        """The first process of the namespace whose command name is ``comm``."""
        for pid in self.members():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                    return pid
        return None

    def listening(self) -> set[tuple[str, int]]:
        return listening_sockets(self.members())

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"--- {self.log.name}: none"
        return f"--- {self.log.name}\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[int]:
        """Stop politely; whatever is still running ``timeout`` s later is a leftover
        (recorded, then killed). Returns the leftovers."""
        target = self.stop_target(self) if self.stop_target else self.daemon_pid
        if self.process.poll() is None and target:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, self.stop_signal)
        deadline = time.monotonic() + timeout
        while self.members() and time.monotonic() < deadline:
            time.sleep(POLL)
        self.leftovers = self.members()
        if self.leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)  # ends the whole namespace
            for pid in self.leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        deadline = time.monotonic() + 5
        while self.members() and time.monotonic() < deadline:
            time.sleep(POLL)
        still = self.members()
        if still:
            raise RuntimeError(f"{self.name}: processes survived SIGKILL: {still}")
        return self.leftovers


@dataclass
class Sandbox:
    """Private /etc account files and PAM services for one daemon, under ``root``."""

    root: Path
    accounts: list[Account] = field(default_factory=list)
    groups: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    pam_services: dict[str, str] = field(default_factory=dict)
    binds: list[tuple[Path, Path]] = field(default_factory=list)
    # The host name inside the sandbox (a UTS namespace); /etc/hosts names it, so a
    # daemon qualifying its own name (sendmail) never asks DNS.
    hostname: str | None = None

    def add_account(self, account: Account, *, group: bool = True) -> Account:
        self.accounts.append(account)
        if group:
            self.groups.append((account.name, account.gid, ()))
        return account

    def _write_etc(self) -> None:
        etc = self.root / "etc"
        etc.mkdir(mode=0o755, exist_ok=True)
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        shadow = Path("/etc/shadow").read_text() if Path("/etc/shadow").exists() else ""
        today = (dt.date.today() - dt.date(1970, 1, 1)).days
        for account in self.accounts:
            passwd += (f"{account.name}:x:{account.uid}:{account.gid}:{account.gecos}:"
                       f"{account.home}:{account.shell}\n")
            hashed = sha512_crypt(account.password) if account.password else "!"
            shadow += f"{account.name}:{hashed}:{today}:0:99999:7:::\n"
        for name, gid, members in self.groups:
            group += f"{name}:x:{gid}:{','.join(members)}\n"
        for name, text, mode in (("passwd", passwd, 0o644), ("group", group, 0o644),
                                 ("shadow", shadow, 0o640)):
            path = etc / name
            path.write_text(text)
            path.chmod(mode)
            self.binds.append((path, Path("/etc") / name))
        # No DNS: host names come from a private /etc/hosts only, and the resolver (for
        # daemons that query DNS themselves) points at loopback, where nothing answers.
        hostname = self.hostname or socket.gethostname()  # some daemons resolve their own
        names = " ".join(dict.fromkeys((hostname, hostname.split(".")[0])))
        private = {
            "hosts": f"127.0.0.1\tlocalhost {names}\n::1\tlocalhost ip6-localhost {names}\n",
            "nsswitch.conf": re.sub(r"(?m)^hosts:.*$", "hosts: files",
                                    Path("/etc/nsswitch.conf").read_text()),
            "resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        }
        for name, text in private.items():
            path = etc / name
            path.write_text(text)
            path.chmod(0o644)
            self.binds.append((path, Path("/etc") / name))
        if self.pam_services:
            pam = etc / "pam.d"
            shutil.copytree("/etc/pam.d", pam, symlinks=True, dirs_exist_ok=True)
            for service, text in self.pam_services.items():
                (pam / service).write_text(text)
            self.binds.append((pam, Path("/etc/pam.d")))

    def command(self, argv: Sequence[str], *, init: bool = False,
                pid_file: Path | None = None) -> list[str]:
        """``argv`` wrapped in unshare with this sandbox's bind mounts.

        With ``init``, a shell stays as the namespace's init and runs ``argv`` as its
        child: daemons are not written to be pid 1 (pid 1 ignores signals it has no
        handler for, and inherits every orphan: vsftpd 3.0.3 crashes reaping a pid it
        does not know). The shell reaps orphans while it waits and exits with the daemon.
        """
        mounts = "".join(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))} && "
                         for src, dst in self.binds)
        if self.hostname:
            mounts += f"hostname {shlex.quote(self.hostname)} && "
        # An asynchronous command's stdin would be /dev/null: hand it the real one (fd 3).
        # $! (the daemon's pid inside the namespace) goes to pid_file for Isolated.
        record = f"echo $! > {shlex.quote(str(pid_file))}; " if pid_file else ""
        body = f'exec 3<&0; "$@" <&3 3<&- & {record}wait $!' if init else 'exec "$@"'
        return [UNSHARE, "--pid", "--fork", "--kill-child", "--mount", "--uts",
                "--propagation", "private", "--", "/bin/sh", "-c",
                mounts + "{ " + body + "; }", "sh", *argv]

    def prepare(self) -> None:
        """Write the private files; call once before :meth:`run` or :meth:`spawn`."""
        reason = missing_prerequisites()
        if reason is not None:
            raise SandboxUnavailable(reason)
        self._write_etc()

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            timeout: float = 60.0, cwd: Path | None = None,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a helper (a config generator) with the sandbox's view of /etc."""
        return subprocess.run(self.command(argv), env=_environment(env), cwd=cwd,
                              input=input_text, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def spawn(self, name: str, argv: Sequence[str], log: Path, *,
              env: Mapping[str, str] | None = None,
              stop_signal: int = signal.SIGTERM,
              stop_target: Callable[[Isolated], int | None] | None = None) -> Isolated:
        """Start ``argv`` (a daemon in its foreground mode) as init of a new namespace.

        Its stdin, stdout and stderr all go to ``log`` (vsftpd reports start-up errors
        on fd 0).
        """
        pid_file = self.root / f".{name}.nspid"
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        with log.open("w+b") as stdio:
            process = subprocess.Popen(self.command(argv, init=True, pid_file=pid_file),
                                       stdin=stdio,
                                       stdout=stdio, stderr=stdio, env=_environment(env),
                                       start_new_session=True, preexec_fn=_die_with_parent)
        daemon = Isolated(name, process, log, stop_signal=stop_signal, stop_target=stop_target)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process.poll() is None:
            inits = _children(process.pid)
            namespace = pid_namespace(inits[0]) if inits else None
            if inits and namespace and namespace != pid_namespace(os.getpid()):
                daemon.init_pid, daemon.namespace = inits[0], namespace
                # The init's first children are the mount commands; the shell writes
                # the daemon's pid (as the namespace numbers it) once it has started it.
                with contextlib.suppress(OSError, ValueError):
                    inner = int(pid_file.read_text().strip())
                    for child in _children(inits[0]):
                        if _namespace_pid(child) == inner:
                            daemon.daemon_pid = child
                            return daemon
            time.sleep(POLL)
        daemon.stop()
        raise DaemonFailed(f"{name}: no namespace came up\n{daemon.log_tail()}")


def _die_with_parent() -> None:
    """In the forked child before exec: SIGKILL it when the test process dies (a killed
    pytest run must not leave servers behind; unshare's --kill-child then ends the whole
    namespace). Linux prctl(PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    """A small, predictable environment: daemons must not depend on the test runner's."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"}
    env.update(extra or {})
    return env


def wait_until(ready: Callable[[], object], daemon: Isolated, timeout: float,
               what: str) -> object:
    """Poll ``ready()`` until it returns a truthy value; fail fast if the daemon died."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise DaemonFailed(f"{daemon.name} exited while waiting for {what}\n"
                               f"{daemon.log_tail()}")
        try:
            value = ready()
        except OSError as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(POLL)
    raise DaemonFailed(f"{daemon.name}: {what} not ready within {timeout:g} s ({last})\n"
                       f"{daemon.log_tail()}")


def greeting(port: int, host: str = "127.0.0.1") -> str | None:
    """The first line a server sends on ``port`` if it is a 220 greeting, else None."""
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.settimeout(3.0)
        line = sock.makefile("rb").readline(512).decode("ascii", "replace").strip()
        if line.startswith("220"):
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
            return line
    return None


# --- configuration edits ---------------------------------------------------------------------


def set_option(text: str, key: str, value: str, *, sep: str = "=") -> str:
    """Set ``key`` the way a deployment guide says to: replace the first line that sets
    it, commented out or not, else append it. ``sep`` is ``=`` (vsftpd) or ``" "``
    (ProFTPD directives)."""
    tail = r"\s*=" if sep == "=" else r"(\s|$)"
    pattern = re.compile(rf"^[ \t]*#?[ \t]*{re.escape(key)}{tail}.*$", re.M)
    line = f"{key}{sep}{value}"
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    return text.rstrip("\n") + "\n" + line + "\n"


def private_copy(source: Path, destination: Path, owner: tuple[int, int] | None = None,
                 mode: int = 0o600) -> Path:
    """A copy of a certificate or key the daemon may read after dropping privileges."""
    destination.write_bytes(Path(source).read_bytes())
    destination.chmod(mode)
    if owner is not None:
        os.chown(destination, *owner)
    return destination

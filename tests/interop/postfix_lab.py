"""A private Postfix instance with Dovecot SASL, on loopback, for interoperability tests.

Why a real MTA: the embedded lab is ours, so it can share our misreadings of the RFCs;
Postfix is what the harness meets in the field. One throw-away directory holds
everything: Postfix's config, queue and data directories, the Maildir it delivers to,
Dovecot's config, runtime directory and password file. Nothing listens beyond
127.0.0.1, nothing leaves the lab (mail for other domains goes to ``discard``, local
delivery to ``error``; the lab domain is delivered to a Maildir in the directory), and
no daemon needs DNS (``smtpd_peername_lookup = no``).

The directory is made under the system temporary directory, not pytest's ``tmp_path``:
Postfix and Dovecot drop to unprivileged users (postfix, dovecot, nobody) that must
traverse to their files, and pytest keeps its base directory 0700 for root.

Five smtpd services share one master:

``submission``
    587-style, as the harness's advice has it: TLS required, AUTH only inside TLS,
    relaying only for authenticated clients, MAIL refused before AUTH with 530
    (``smtpd_delay_reject = no``, sender restrictions, ``reject_code = 530``), EHLO
    required, no ETRN (RFC 6409 sec. 7).
``submission-template``
    Debian's master.cf submission template as shipped: refuses unauthenticated clients
    only at RCPT (``smtpd_delay_reject`` keeps its default), does not require EHLO and
    offers ETRN (Postfix's default).
``mta``
    Port-25 role: STARTTLS optional, no AUTH, mail accepted only for the lab domain.
``mta-helo-optional``
    The same without ``smtpd_helo_required`` (Postfix's default): MAIL needs no EHLO.
``open-relay``
    The port-25 role misconfigured the classic way: it trusts 127.0.0.0/8 in
    ``mynetworks``, so from loopback it relays anywhere. It proves the relay check can
    fail against a real server; ``discard`` makes sure nothing it accepts goes anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.protocols.tls import Trust
from harness.targets import Target

LAB_DOMAIN = "ftps-lab.test"
MAIL_HOSTNAME = f"mail.{LAB_DOMAIN}"
RECIPIENT = f"postmaster@{LAB_DOMAIN}"
USER = "labuser"
SERVICES = ("submission", "submission-template", "mta", "mta-helo-optional", "open-relay")
MTA_SERVICES = ("mta", "mta-helo-optional", "open-relay")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
DOVECOT = "/usr/sbin/dovecot"
SKIP_REASON = "needs root and Debian postfix + dovecot-core; .ci/run installs them"
PACKAGES = {POSTFIX: "postfix", POSTCONF: "postfix", DOVECOT: "dovecot-core"}


class LabStartError(RuntimeError):
    """The instance did not come up; the message carries the daemons' log tails."""


def missing_prerequisites() -> str | None:
    """Why this machine cannot run the lab, or None when it can."""
    if os.geteuid() != 0:
        return f"{SKIP_REASON} (not root)"
    for program in (POSTFIX, POSTCONF, DOVECOT):
        if not os.access(program, os.X_OK):
            return f"{program} is not installed (Debian package {PACKAGES[program]})"
    try:
        for user in ("postfix", "dovecot", "dovenull", "nobody"):
            pwd.getpwnam(user)
        grp.getgrnam("postdrop")
    except KeyError as exc:
        return f"{SKIP_REASON} (no system account {exc})"
    return None


def dovecot_version() -> tuple[int, int]:
    """Major and minor version of the installed Dovecot (2.3 and 2.4 differ in syntax)."""
    output = subprocess.run(
        [DOVECOT, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    match = re.match(r"\s*(\d+)\.(\d+)", output)
    if match is None:
        raise LabStartError(f"cannot parse dovecot --version: {output!r}")
    return int(match.group(1)), int(match.group(2))


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now, all held open together so they differ."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def ssha512(password: str) -> str:
    """Dovecot's salted SHA-512 scheme, so no clear password is stored on disk."""
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode("ascii")


def wait_for_greeting(port: int, deadline: float, alive: Callable[[], bool]) -> str:
    """Connect until the server sends its 220 line; ``alive()`` False aborts early."""
    last = "nothing tried"
    while time.monotonic() < deadline:
        if not alive():
            raise LabStartError(f"a daemon failed while waiting for port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(max(0.2, min(2.0, deadline - time.monotonic())))
                line = sock.makefile("rb").readline(512).decode("ascii", "replace")
                if line.startswith("220"):
                    with contextlib.suppress(OSError):
                        sock.sendall(b"QUIT\r\n")
                    return line.strip()
                last = f"greeting {line!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)  # retry interval, bounded by the deadline
    raise LabStartError(f"port {port} did not greet within the deadline ({last})")


def wait_for_auth_socket(path: Path, deadline: float, alive: Callable[[], bool]) -> None:
    """Connect until Dovecot's auth server sends its VERSION handshake."""
    last = "nothing tried"
    while time.monotonic() < deadline:
        if not alive():
            raise LabStartError("a daemon failed before dovecot's auth socket was ready")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(path))
                first = sock.makefile("rb").readline(512)
                if first.startswith(b"VERSION\t"):
                    return
                last = f"handshake {first[:40]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    raise LabStartError(f"dovecot auth socket {path} not ready ({last})")


def session_members(sid: int) -> list[int]:
    """Processes whose session id is ``sid`` (a daemon and everything it forked)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path.name}: none)"
    return f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class PostfixLab:
    """Paths, ports and credentials of one running instance; see :func:`postfix_lab`."""

    root: Path
    ports: dict[str, int]
    ca_file: Path
    password: str = field(repr=False)
    user: str = USER
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    sessions: list[int] = field(default_factory=list)
    leftovers: list[int] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.root / "postfix"

    @property
    def queue_dir(self) -> Path:
        return self.root / "spool"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "lab"

    @property
    def auth_socket(self) -> Path:
        return self.queue_dir / "private" / "auth"

    def target(self, service: str = "submission") -> Target:
        """A harness target for one smtpd service (see the module docstring)."""
        mta = service in MTA_SERVICES
        return Target(
            name=f"postfix-{service}",
            protocol="smtp" if mta else "submission",
            host="127.0.0.1",
            port=self.ports[service],
            trust=Trust(ca_file=self.ca_file),
            server_name="localhost",
            user=None if mta else self.user,
            password=None if mta else self.password,
            rcpt_to=RECIPIENT,
            timeout=10.0,
        )

    def delivered(self, message_id: str, timeout: float = 5.0) -> bytes | None:
        """The Maildir file holding ``message_id``, once Postfix has delivered it."""
        needle = f"Message-ID: {message_id}".encode()
        deadline = time.monotonic() + timeout
        while True:
            for path in sorted((self.maildir / "new").glob("*")):
                with contextlib.suppress(OSError):
                    data = path.read_bytes()
                    if needle in data:
                        return data
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)  # poll interval, bounded by the deadline

    def logs(self) -> str:
        """The end of every daemon log, for assertion messages."""
        return "\n".join(
            _tail(path)
            for path in (
                self.root / "log" / "postfix.log",
                self.root / "log" / "postfix-start.log",
                self.root / "log" / "dovecot.log",
                self.root / "log" / "dovecot-start.log",
            )
        )

    # -- lifecycle ---------------------------------------------------------------------

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )

    def _alive(self) -> bool:
        """False once a daemon has exited or Postfix has logged a fatal error."""
        if any(process.poll() is not None for process in self.processes.values()):
            return False
        try:
            log = (self.root / "log" / "postfix.log").read_text(errors="replace")
        except OSError:
            return True
        return " fatal: " not in log

    def start(self, cert_file: Path, key_file: Path) -> None:
        _write_postfix_config(self, cert_file, key_file)
        _write_dovecot_config(self)
        deadline = time.monotonic() + START_TIMEOUT
        # Postfix first: its start-up check creates the queue directories (owned by
        # postfix) in which Dovecot then places the auth socket.
        self.processes["postfix"] = _spawn(
            [POSTFIX, "-c", str(self.config_dir), "start-fg"],
            self.root / "log" / "postfix-start.log",
        )
        self.sessions.append(self.processes["postfix"].pid)
        for service in SERVICES:
            wait_for_greeting(self.ports[service], deadline, self._alive)
        self.processes["dovecot"] = _spawn(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot" / "dovecot.conf")],
            self.root / "log" / "dovecot-start.log",
        )
        self.sessions.append(self.processes["dovecot"].pid)
        wait_for_auth_socket(self.auth_socket, deadline, self._alive)

    def _master_session(self) -> None:
        """The master makes itself a session leader; track it for the leftover check."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
            if pid not in self.sessions:
                self.sessions.append(pid)

    def stop(self) -> None:
        """Stop Postfix, then Dovecot; kill whatever outlives the timeout."""
        postfix = self.processes.pop("postfix", None)
        if postfix is not None:
            self._master_session()
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._run("stop")
            _reap(postfix)
        dovecot = self.processes.pop("dovecot", None)
        if dovecot is not None:
            if dovecot.poll() is None:
                dovecot.terminate()
            _reap(dovecot)
        deadline = time.monotonic() + STOP_TIMEOUT
        remaining = self._session_processes()
        while remaining and time.monotonic() < deadline:
            time.sleep(0.05)  # children exit shortly after their master
            remaining = self._session_processes()
        self.leftovers = remaining
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _session_processes(self) -> list[int]:
        return sorted({pid for sid in self.sessions for pid in session_members(sid)})


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as output:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _write(path: Path, text: str, mode: int = 0o644, group: str | None = None) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    if group is not None:
        os.chown(path, 0, grp.getgrnam(group).gr_gid)


def _write_postfix_config(lab: PostfixLab, cert_file: Path, key_file: Path) -> None:
    root = lab.root
    nobody = pwd.getpwnam("nobody")
    for directory in ("postfix", "spool", "log", "dovecot"):
        (root / directory).mkdir(mode=0o755)
    mail = root / "mail"
    mail.mkdir(mode=0o700)
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    # Root reads the key before smtpd drops privileges; keep private copies at 0600.
    tls = root / "tls"
    tls.mkdir(mode=0o700)
    shutil.copyfile(cert_file, tls / "cert.pem")
    _write(tls / "key.pem", Path(key_file).read_text(), mode=0o600)
    # Mail for other domains is accepted only by a misconfigured service (open-relay);
    # discard(8) drops it, so a relay test never sends anything anywhere.
    outside = "discard:the ftps-lab Postfix never delivers outside " + LAB_DOMAIN
    refuse = "error:5.1.1 the ftps-lab Postfix has no local mailboxes"
    main_cf = f"""\
# ftps-lab private Postfix: loopback only, never delivers outside {LAB_DOMAIN}.
compatibility_level = 3.6
queue_directory = {lab.queue_dir}
data_directory = {root / "data"}
mail_owner = postfix
setgid_group = postdrop
myhostname = {MAIL_HOSTNAME}
mydomain = {LAB_DOMAIN}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks =
relayhost =
relay_domains =
default_transport = {outside}
relay_transport = {outside}
local_transport = {refuse}
virtual_mailbox_domains = {LAB_DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = inline:{{ {RECIPIENT}=lab/, {USER}@{LAB_DOMAIN}=lab/ }}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
alias_maps =
alias_database =
biff = no
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP Postfix (ftps-lab)
smtpd_helo_required = yes
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_tls_chain_files = {tls / "key.pem"}, {tls / "cert.pem"}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
maillog_file = {root / "log" / "postfix.log"}
maillog_file_prefixes = {root}
"""
    submission = [
        "-o smtpd_tls_security_level=encrypt",
        "-o smtpd_sasl_auth_enable=yes",
        "-o smtpd_tls_auth_only=yes",
        "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
    ]
    strict = [
        "-o syslog_name=postfix/submission",
        *submission,
        "-o smtpd_delay_reject=no",
        "-o smtpd_sender_restrictions=permit_sasl_authenticated,reject",
        # RFC 4954 sec. 6's code for "authentication required" (Postfix rejects with 554).
        "-o reject_code=530",
        # RFC 6409 sec. 7: no ETRN on submission.
        "-o smtpd_discard_ehlo_keywords=etrn",
        "-o smtpd_etrn_restrictions=reject",
    ]
    template = [
        "-o syslog_name=postfix/submission-template",
        *submission,
        "-o smtpd_helo_required=no",
    ]

    def smtpd(service: str, options: list[str]) -> str:
        lines = [f"127.0.0.1:{lab.ports[service]} inet n - n - - smtpd"]
        return "\n".join(lines + [f"  {option}" for option in options])

    master_cf = "\n".join([
        "# service type private unpriv chroot wakeup maxproc command",
        smtpd("submission", strict),
        smtpd("submission-template", template),
        smtpd("mta", ["-o syslog_name=postfix/mta"]),
        smtpd("mta-helo-optional", ["-o syslog_name=postfix/mta-helo-optional",
                                    "-o smtpd_helo_required=no"]),
        smtpd("open-relay", [
            "-o syslog_name=postfix/open-relay",
            "-o mynetworks=127.0.0.0/8",
            "-o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination",
        ]),
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "virtual unix - n n - - virtual",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
        "",
    ])
    _write(lab.config_dir / "main.cf", main_cf)
    _write(lab.config_dir / "master.cf", master_cf)


def _write_dovecot_config(lab: PostfixLab) -> None:
    """Dovecot as Postfix's SASL server only: no protocols, one passwd-file user.

    2.4 changed the syntax (version header, named passdb/userdb, ``passwd_file_path``)
    and has no protocols by default; 2.3 needs ``protocols =`` to start none.
    """
    directory = lab.root / "dovecot"
    users = directory / "users"
    _write(users, f"{lab.user}:{ssha512(lab.password)}::::::\n", mode=0o640, group="dovecot")
    settings = f"""\
# ftps-lab: Dovecot as the SASL server of a private Postfix, nothing else
base_dir = {lab.root / "dovecot-run"}
state_dir = {lab.root / "dovecot-state"}
instance_name = {lab.root.name}
log_path = {lab.root / "log" / "dovecot.log"}
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
"""
    listener = f"""\
service auth {{
  unix_listener {lab.auth_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""
    if dovecot_version() >= (2, 4):
        text = f"""\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{settings}passdb users {{
  driver = passwd-file
  passwd_file_path = {users}
}}
userdb users {{
  driver = passwd-file
  passwd_file_path = {users}
}}
{listener}"""
    else:
        text = f"""\
{settings}protocols =
passdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
{listener}"""
    _write(directory / "dovecot.conf", text)


@contextlib.contextmanager
def postfix_lab(cert_file: Path, key_file: Path, ca_file: Path) -> Iterator[PostfixLab]:
    """Start the instance, yield it, and always stop it and remove its directory."""
    root = Path(tempfile.mkdtemp(prefix="ftps-lab-postfix-"))
    root.chmod(0o755)  # the daemons' unprivileged users must reach their files
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    lab = PostfixLab(root=root, ports=ports, ca_file=ca_file,
                     password="Lab-" + secrets.token_urlsafe(18))
    try:
        try:
            lab.start(cert_file, key_file)
        except (LabStartError, OSError, subprocess.SubprocessError) as exc:
            lab.stop()
            raise LabStartError(f"{exc}\n{lab.logs()}") from exc
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)

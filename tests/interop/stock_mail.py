"""Postfix, Exim and sendmail from Debian's packages, in shipped configurations.

Every instance accepts mail for the lab domain only and never delivers anywhere:
Postfix delivers the lab domain to a Maildir in its directory and discards the rest,
Exim and sendmail are started queue-only (``-odq``), so what they accept stays in their
private spool. Nothing listens beyond 127.0.0.1 and no daemon needs DNS.

Loopback and relaying: the test client connects from 127.0.0.1, which Debian's
configurations trust to relay without AUTH (Exim: update-exim4.conf adds 127.0.0.1 and
::1 to ``relay_from_hosts``; sendmail: ``Connect:127.0.0.1 RELAY`` in the access
database). A real submission client is not on the server's loopback, so for Exim and
sendmail that trust is removed (the one change made for the test's vantage point, not
to the server's policy); Postfix's submission service overrides ``mynetworks`` itself.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import debian_cache
import postfix_lab
from stock_launch import Launcher, StockServer
from stock_sandbox import (
    START_TIMEOUT,
    Account,
    DaemonFailed,
    Isolated,
    Sandbox,
    free_ids,
    free_ports,
    greeting,
    private_copy,
    sha512_crypt,
    wait_until,
)

from harness.certs import LabPKI
from harness.checks import run_check
from harness.protocols.tls import Trust
from harness.results import Status
from harness.targets import Target

LAB_DOMAIN = "ftps-lab.test"
MAIL_HOSTNAME = f"mail.{LAB_DOMAIN}"
RECIPIENT = f"postmaster@{LAB_DOMAIN}"
MAIL_USER = "labuser"
TIMEOUT = 10.0


def _target(stock: StockServer, protocol: str, port: int, user: str, password: str,
            pki: LabPKI) -> Target:
    return Target(
        name=f"{stock.label}-{protocol}", protocol=protocol, host="127.0.0.1", port=port,
        trust=Trust(ca_file=pki.ca_file), server_name="localhost", user=user,
        password=password, rcpt_to=RECIPIENT, timeout=TIMEOUT,
    )  # fmt: skip


def _wait_greeting(stock: StockServer, daemon: Isolated, port: int, timeout: float) -> str:
    line = str(wait_until(lambda: greeting(port), daemon, timeout,
                          f"the 220 greeting on port {port}"))
    stock.notes.setdefault("greeting", line)
    return line


def _wait_implicit_tls(target: Target, daemon: Isolated) -> None:
    """The 465 service greets only inside TLS: the harness's own wait check does that."""
    result = run_check("wait-listening", target, {"timeout": START_TIMEOUT})
    if result.status is not Status.PASS:
        raise DaemonFailed(f"{target.id}: {result.summary}\n{daemon.log_tail()}")


# --- Postfix + Dovecot SASL ----------------------------------------------------------------

MASTER_DIST = Path("/usr/share/postfix/master.cf.dist")


def shipped_submission_blocks(master_dist: str, port: int, submissions_port: int) -> str:
    """Debian's submission and submissions blocks, uncommented, as the template's
    "loopback clients only" lines (``127.0.0.1:submission``) with our ports.

    Every ``-o`` line of the two blocks is kept exactly; the explanatory comment lines
    inside them stay comments.
    """
    out: list[str] = []
    service: str | None = None
    for line in master_dist.splitlines():
        head = re.match(r"#(127\.0\.0\.1:(submissions?))\s+inet\s", line)
        if head:
            service = head.group(2)
            number = port if service == "submission" else submissions_port
            out.append(line[1:].replace(head.group(1), f"127.0.0.1:{number}", 1))
            continue
        if service is None:
            continue
        if re.match(r"#(submissions?)\s+inet\s", line):
            continue  # the "any client" alternative of the same block
        if line.startswith("#  -o "):
            out.append(line[1:])
        elif line.startswith("#     "):
            out.append(line)
        else:
            service = None
    return "\n".join(out) + "\n"


def shipped_services(master_dist: str) -> str:
    """The template's other active services, minus ``smtp inet`` (port 25 is not ours to
    bind) and the pipe transports for software that is not installed."""
    keep: list[str] = []
    skipping = False
    for line in master_dist.splitlines():
        if not line or line.startswith("#"):
            continue
        if line[0].isspace():
            if not skipping:
                keep.append(line)
            continue
        name, kind = line.split()[:2]
        skipping = (name == "smtp" and kind == "inet") or line.split()[7:8] == ["pipe"]
        if not skipping:
            keep.append(line)
    return "\n".join(keep) + "\n"


def postfix_main_cf(lab: postfix_lab.PostfixLab, weak: bool) -> str:
    """main.cf as Debian's postinst writes it (main.cf.debian plus the debconf answers
    for an "Internet Site"), with the lab's private paths and Dovecot SASL.

    The weak variant is not here: it is in master.cf (the submission block).
    """
    del weak
    root = lab.root
    nobody = pwd.getpwnam("nobody")
    tls = root / "tls"
    return f"""\
# Debian /usr/share/postfix/main.cf.debian
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
# Debian postinst (Internet Site) and its TLS defaults; the lab certificate
smtpd_tls_cert_file = {tls / "cert.pem"}
smtpd_tls_key_file = {tls / "key.pem"}
smtpd_tls_security_level = may
smtp_tls_CApath = /etc/ssl/certs
smtp_tls_security_level = may
smtp_tls_session_cache_database = btree:${{data_directory}}/smtp_scache
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = {MAIL_HOSTNAME}
mydomain = {LAB_DOMAIN}
myorigin = $myhostname
mydestination =
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
# Dovecot SASL, as Postfix's SASL_README and Debian's wiki set it up
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
# ftps-lab private instance: own queue and data, loopback only, the lab domain is
# delivered to a Maildir here, everything else is discarded, no DNS
queue_directory = {lab.queue_dir}
data_directory = {root / "data"}
mail_owner = postfix
setgid_group = postdrop
smtpd_peername_lookup = no
default_transport = discard:the ftps-lab Postfix never delivers outside {LAB_DOMAIN}
relay_transport = $default_transport
local_transport = error:5.1.1 the ftps-lab Postfix has no local mailboxes
virtual_mailbox_domains = {LAB_DOMAIN}
virtual_mailbox_base = {root / "mail"}
virtual_mailbox_maps = inline:{{ {RECIPIENT}=lab/, {MAIL_USER}@{LAB_DOMAIN}=lab/ }}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
maillog_file = {root / "log" / "postfix.log"}
maillog_file_prefixes = {root}
"""


def postfix_master_cf(port: int, submissions_port: int, weak: bool) -> str:
    """Debian's master.cf.dist: its submission and submissions blocks uncommented, its
    other services as shipped (chroot included). Weak: in the submission block, TLS
    optional and AUTH allowed without it (``smtpd_tls_security_level=may``,
    ``smtpd_tls_auth_only=no``)."""
    dist = MASTER_DIST.read_text()
    blocks = shipped_submission_blocks(dist, port, submissions_port)
    if weak:
        blocks = blocks.replace("-o smtpd_tls_security_level=encrypt",
                                "-o smtpd_tls_security_level=may", 1)
        blocks = blocks.replace("-o smtpd_tls_auth_only=yes", "-o smtpd_tls_auth_only=no", 1)
    return blocks + shipped_services(dist)


def _postfix(stock: StockServer, pki: LabPKI, weak: bool) -> None:
    reason = postfix_lab.missing_prerequisites()
    if reason is not None:
        raise debian_cache.PackageUnavailable(reason)
    if not MASTER_DIST.is_file():
        raise debian_cache.PackageUnavailable(f"{MASTER_DIST} is missing (Debian package postfix)")
    stock.version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "postfix"],
        capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    root = stock.root
    port, submissions_port = free_ports(2)
    files = pki.files("lab")
    lab = postfix_lab.PostfixLab(
        root=root, ports={"submission": port, "submissions": submissions_port},
        ca_file=pki.ca_file, password="Lab-" + secrets.token_urlsafe(18))
    for directory in ("postfix", "spool", "log", "dovecot"):  # data: Postfix makes it
        (root / directory).mkdir(mode=0o755)
    mail = root / "mail"
    mail.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    (root / "tls").mkdir(mode=0o700)
    private_copy(files.cert, root / "tls" / "cert.pem", mode=0o644)
    private_copy(files.key, root / "tls" / "key.pem")
    (lab.config_dir / "main.cf").write_text(postfix_main_cf(lab, weak))
    (lab.config_dir / "master.cf").write_text(postfix_master_cf(port, submissions_port, weak))
    postfix_lab._write_dovecot_config(lab)  # Dovecot as Postfix's SASL server, nothing else
    sandbox = Sandbox(root, hostname=MAIL_HOSTNAME)
    sandbox.prepare()
    # Postfix first: its start-up creates the queue directories in which Dovecot then
    # places the auth socket (private/auth); smtpd needs that socket before it greets
    # when AUTH is offered in clear text (weak). The stop signal goes to the master,
    # which stops its children; postfix-script only waits for it.
    postfix = sandbox.spawn(
        "postfix", [postfix_lab.POSTFIX, "-c", str(lab.config_dir), "start-fg"],
        root / "log" / "postfix-start.log",
        stop_target=lambda daemon: daemon.member_named("master"))
    stock.daemons.append(postfix)
    wait_until(lambda: (lab.queue_dir / "pid" / "master.pid").exists(), postfix,
               START_TIMEOUT, "the Postfix master")
    dovecot = sandbox.spawn(
        "dovecot", [postfix_lab.DOVECOT, "-F", "-c", str(root / "dovecot" / "dovecot.conf")],
        root / "log" / "dovecot-start.log")
    stock.daemons.append(dovecot)
    wait_until(lambda: lab.auth_socket.exists(), dovecot, START_TIMEOUT, "dovecot auth socket")
    _wait_greeting(stock, postfix, port, START_TIMEOUT)
    stock.targets["submission"] = _target(stock, "submission", port, lab.user, lab.password,
                                          pki)
    stock.targets["submissions"] = _target(stock, "submissions", submissions_port, lab.user,
                                           lab.password, pki)
    _wait_implicit_tls(stock.targets["submissions"], postfix)
    stock.notes["config"] = (lab.config_dir / "master.cf").read_text()


# --- Exim 4 -------------------------------------------------------------------------------

EXIM_ACCOUNT = "Debian-exim"  # the account exim4-base's postinst creates


def uncomment_auth_examples(template: str, names: tuple[str, ...]) -> str:
    """Uncomment the template's ``plain_server``/``login_server`` examples, as Debian's
    README.Debian (2.3.2) says: "examples ... which just need to be uncommented"."""
    lines = template.splitlines()
    out: list[str] = []
    active = False
    for line in lines:
        if any(line.strip() == f"# {name}:" for name in names):
            active = True
        elif active and not line.startswith("#   ") and not line.startswith("#  "):
            active = False
        out.append(line[2:] if active and line.startswith("# ") else line)
    return "\n".join(out) + "\n"


def exim_update_conf_conf(port: int) -> str:
    """/etc/exim4/update-exim4.conf.conf as debconf writes it for an "internet site"
    that receives mail for the lab domain, listening on 127.0.0.1 and our port."""
    return f"""\
dc_eximconfig_configtype='internet'
dc_other_hostnames='{LAB_DOMAIN}'
dc_local_interfaces='127.0.0.1.{port}'
dc_readhost=''
dc_relay_domains=''
dc_minimaldns='false'
dc_relay_nets=''
dc_smarthost=''
CFILEMODE='644'
dc_use_split_config='false'
dc_hide_mailname=''
dc_mailname_in_oh='true'
dc_localdelivery='mail_spool'
"""


def exim_submission_acl(port: int) -> str:
    """The submission rule the Exim specification gives (chapter "Message submission"):
    on the submission port nothing is accepted from an unauthenticated client. Debian's
    template has one RCPT ACL for every port and a hook for exactly this,
    ``CHECK_RCPT_LOCAL_ACL_FILE``, included after its ``accept authenticated = *``."""
    return (
        "# ftps-lab: the submission port takes mail only after AUTH (RFC 6409 4.3)\n"
        "deny\n"
        "  message = Authentication required\n"
        f"  condition = ${{if eq{{$received_port}}{{{port}}}}}\n"
        "  !authenticated = *\n"
    )


def exim_localmacros(root: Path, confdir: Path, weak: bool) -> str:
    """exim4.conf.localmacros: the Debian way to set macros (README.Debian 2.1.3)."""
    lines = [
        "# ftps-lab: Debian's macros pointed at private directories",
        f"CONFDIR = {confdir}",
        f"SPOOLDIR = {root / 'spool'}",
        "# README.Debian 2.2.2: TLS with an installed certificate",
        "MAIN_TLS_ENABLE = yes",
        f"MAIN_TLS_CERTIFICATE = {confdir / 'exim.crt'}",
        f"MAIN_TLS_PRIVATEKEY = {confdir / 'exim.key'}",
        "# the test client is on loopback, which update-exim4.conf adds to relay_from_hosts;",
        "# judge the server as a remote submission client sees it",
        "MAIN_RELAY_NETS =",
        "# the deployment guide's submission rule (exim_submission_acl)",
        f"CHECK_RCPT_LOCAL_ACL_FILE = {confdir / 'submission.acl'}",
        f"log_file_path = {root / 'log'}/%slog",
    ]
    if weak:
        lines += ["# README.Debian 2.3.2: AUTH PLAIN/LOGIN without TLS",
                  "AUTH_SERVER_ALLOW_NOTLS_PASSWORDS = 1"]
    return "\n".join(lines) + "\n"


def _exim(stock: StockServer, pki: LabPKI, weak: bool) -> None:
    tree = debian_cache.unpacked("exim4")
    stock.version = debian_cache.version_of(tree, "exim4-daemon-light")
    root = stock.root
    sandbox = Sandbox(root, hostname=MAIL_HOSTNAME)
    exim_id = free_ids(1, 900, 1000)[0]
    sandbox.add_account(Account(EXIM_ACCOUNT, exim_id, exim_id, root / "spool"))
    sandbox.prepare()
    confdir = root / "exim4"
    shutil.copytree(tree / "etc/exim4", confdir, symlinks=True)
    for directory in ("spool", "log", "run"):
        (root / directory).mkdir(mode=0o750)
        os.chown(root / directory, exim_id, exim_id)
    port = free_ports(1)[0]
    template = confdir / "exim4.conf.template"
    template.write_text(uncomment_auth_examples(template.read_text(),
                                                ("plain_server", "login_server")))
    (confdir / "update-exim4.conf.conf").write_text(exim_update_conf_conf(port))
    (confdir / "exim4.conf.localmacros").write_text(exim_localmacros(root, confdir, weak))
    (confdir / "submission.acl").write_text(exim_submission_acl(port))
    (confdir / "mailname").write_text(LAB_DOMAIN + "\n")
    files = pki.files("lab")
    private_copy(files.cert, confdir / "exim.crt", owner=(0, exim_id), mode=0o640)
    private_copy(files.key, confdir / "exim.key", owner=(0, exim_id), mode=0o640)
    password = "Lab-" + secrets.token_urlsafe(18)
    (confdir / "passwd").write_text(f"{MAIL_USER}:{sha512_crypt(password)}\n")
    os.chown(confdir / "passwd", 0, exim_id)
    (confdir / "passwd").chmod(0o640)
    # Debian's generator, reading the private directory (/etc/mailname and the
    # localmacros path are absolute in the script).
    script = (tree / "usr/sbin/update-exim4.conf").read_text()
    script = script.replace("/etc/mailname", str(confdir / "mailname"))
    script = script.replace("/etc/exim4/exim4.conf.localmacros",
                            str(confdir / "exim4.conf.localmacros"))
    (root / "update-exim4.conf").write_text(script)
    config = root / "exim4.conf"
    generated = sandbox.run(["/bin/sh", str(root / "update-exim4.conf"), "-d", str(confdir),
                             "-o", str(config)])
    if generated.returncode != 0 or not config.exists():
        raise DaemonFailed(f"update-exim4.conf: {generated.stdout}{generated.stderr}")
    exim = str(tree / "usr/sbin/exim4")
    env = {"LD_LIBRARY_PATH": debian_cache.library_path(tree)}
    checked = sandbox.run([exim, "-C", str(config), "-bV"], env=env)
    if checked.returncode != 0:
        raise DaemonFailed(f"exim4 -bV: {checked.stdout}{checked.stderr}")
    stock.notes["exim_bV"] = checked.stdout.splitlines()[0] if checked.stdout else ""
    # -bdf: the daemon in the foreground; -odq: accepted messages stay in the spool.
    daemon = sandbox.spawn(
        "exim4", [exim, "-C", str(config), "-bdf", "-odq", "-oP", str(root / "run/exim.pid")],
        root / "log" / "exim-start.log", env=env)
    stock.daemons.append(daemon)
    _wait_greeting(stock, daemon, port, START_TIMEOUT)
    stock.targets["submission"] = _target(stock, "submission", port, MAIL_USER, password, pki)
    stock.notes["config"] = config.read_text()


# --- sendmail --------------------------------------------------------------------------------

SASL_PLUGINS = Path(f"/usr/lib/{debian_cache.MULTIARCH}/sasl2")


def sendmail_paths(root: Path) -> dict[str, str]:
    """Debian's absolute paths and the private directories that stand in for them."""
    return {
        "/usr/share/sendmail/cf": str(root / "cf"),
        "/etc/mail": str(root / "etc-mail"),
        "/var/lib/sendmail": str(root / "lib"),
        "/var/run/sendmail": str(root / "run"),
        "/run/sendmail": str(root / "run"),
        "/var/spool/mqueue": str(root / "mqueue"),
    }


def _relocate(text: str, paths: dict[str, str]) -> str:
    for old, new in paths.items():
        text = text.replace(old, new)
    return text


def sendmail_mc(shipped: str, port: int, mta_port: int, weak: bool) -> str:
    """Debian's sendmail.mc with what ``sendmailconfig`` adds when TLS and SMTP AUTH are
    enabled (the starttls.m4 and sasl.m4 includes), the daemons on our ports.

    Secure: ``confAUTH_OPTIONS`` with ``p`` (no PLAIN/LOGIN before TLS), the line Debian's
    sasl.m4 points to ("if this bothers you, you allow them only in conjunction w/
    STARTTLS"). Weak: as shipped, where Cyrus SASL offers PLAIN and LOGIN in clear text.
    """
    text = shipped.replace("Port=smtp, Addr=127.0.0.1", f"Port={mta_port}, Addr=127.0.0.1")
    text = text.replace("Port=submission, M=Ea, Addr=127.0.0.1",
                        f"Port={port}, M=Ea, Addr=127.0.0.1")
    extra = [
        "dnl # sendmailconfig: STARTTLS and SMTP AUTH",
        "include(`/etc/mail/tls/starttls.m4')dnl",
        "include(`/etc/mail/sasl/sasl.m4')dnl",
        f"define(`confDOMAIN_NAME', `{MAIL_HOSTNAME}')dnl",
        "dnl # ftps-lab: no DNS (Debian's service.switch-nodns); loopback needs none",
        "define(`confSERVICE_SWITCH_FILE', `/etc/mail/service.switch')dnl",
    ]
    if not weak:
        extra.append("define(`confAUTH_OPTIONS', `A p')dnl")
    marker = "dnl # Default Mailer setup"
    return text.replace(marker, "\n".join(extra) + "\n" + marker, 1)


def _sendmail(stock: StockServer, pki: LabPKI, weak: bool) -> None:
    tree = debian_cache.unpacked("sendmail")
    stock.version = debian_cache.version_of(tree, "sendmail-bin")
    if not (SASL_PLUGINS / "libsasldb.so").exists():
        raise debian_cache.PackageUnavailable(
            f"no sasldb plugin in {SASL_PLUGINS} (Debian package libsasl2-modules-db)")
    root = stock.root
    paths = sendmail_paths(root)
    sandbox = Sandbox(root, hostname=MAIL_HOSTNAME)
    smmta, smmsp = free_ids(2, 900, 1000)
    # The accounts sendmail-base's postinst creates.
    sandbox.add_account(Account("smmta", smmta, smmta, root / "lib"))
    sandbox.add_account(Account("smmsp", smmsp, smmsp, root / "lib"))
    etc = root / "etc-mail"
    for directory in ("etc-mail", "etc-mail/m4", "etc-mail/tls", "etc-mail/sasl", "lib",
                      "run", "run/mta", "mqueue", "log"):
        (root / directory).mkdir(mode=0o755)
    (root / "mqueue").chmod(0o700)
    # Debian's m4 files, relocated.
    shutil.copytree(tree / "usr/share/sendmail/cf", root / "cf", symlinks=True)
    for path in (root / "cf").rglob("*.m4"):
        path.write_text(_relocate(path.read_text(), paths))
    for name in ("dialup.m4", "provider.m4"):
        (etc / "m4" / name).write_text("")
    examples = tree / "usr/share/sendmail/examples"
    files = pki.files("lab")
    cert = private_copy(files.cert, etc / "tls" / "sendmail-server.crt", mode=0o644)
    private_copy(files.key, etc / "tls" / "sendmail-common.key")
    private_copy(pki.ca_file, etc / "tls" / "ca.crt", mode=0o644)
    starttls = (examples / "tls" / "starttls.m4").read_text()
    starttls = starttls.replace("/etc/mail/tls/sendmail-server.crt')dnl\ndnl # Server",
                                "/etc/mail/tls/ca.crt')dnl\ndnl # Server")
    starttls = starttls.replace("/etc/mail/tls/sendmail-client.crt", str(cert))
    (etc / "tls" / "starttls.m4").write_text(_relocate(starttls, paths))
    (etc / "sasl" / "sasl.m4").write_text(
        _relocate((examples / "sasl" / "sasl.m4").read_text(), paths))
    port, mta_port = free_ports(2)
    mc = sendmail_mc((tree / "usr/share/sendmail/cf/debian/sendmail.mc").read_text(),
                     port, mta_port, weak)
    mc_path = etc / "sendmail.mc"
    mc_path.write_text(_relocate(mc, paths))
    m4 = subprocess.run([str(tree / "usr/bin/m4"), str(mc_path)], capture_output=True,
                        text=True, timeout=60, check=False, cwd=etc)
    if m4.returncode != 0:
        raise DaemonFailed(f"m4 sendmail.mc: {m4.stderr}")
    cf = etc / "sendmail.cf"
    cf.write_text(_relocate(m4.stdout, paths))
    # The databases Debian's update_db builds: access (minus the loopback RELAY lines,
    # see the module docstring), local-host-names, aliases.
    access = [line for line in (examples / "db" / "access").read_text().splitlines()
              if not re.match(r"Connect:(127|IPv6:::1)\s+RELAY", line)]
    (etc / "access").write_text("\n".join(access) + "\n")
    (etc / "local-host-names").write_text(f"{LAB_DOMAIN}\n{MAIL_HOSTNAME}\nlocalhost\n")
    (etc / "aliases").write_text(f"postmaster: root\n{MAIL_USER}: root\n")
    for name in ("relay-domains", "trusted-users"):
        (etc / name).write_text("")
    shutil.copyfile(tree / "etc/mail/service.switch-nodns", etc / "service.switch")
    makemap = str(tree / "usr/libexec/sendmail/makemap")
    with (etc / "access").open() as source:
        made = subprocess.run([makemap, "-C", str(cf), "hash", str(etc / "access")],
                              stdin=source,
                              capture_output=True, text=True, timeout=30, check=False)
    if made.returncode != 0:
        raise DaemonFailed(f"makemap access: {made.stderr}")
    # SMTP AUTH: Cyrus SASL with the sasldb auxprop (no saslauthd daemon); the plugin
    # directory is replaced, inside the sandbox, by a copy holding Sendmail.conf.
    # PLAIN and LOGIN come from the unpacked libsasl2-modules, sasldb from the system's
    # libsasl2-modules-db (a dependency of libsasl2-2).
    sasl_dir = root / "sasl2"
    shutil.copytree(tree / SASL_PLUGINS.relative_to("/"), sasl_dir, symlinks=True)
    for plugin in SASL_PLUGINS.iterdir():
        if not (sasl_dir / plugin.name).exists():
            shutil.copy2(plugin, sasl_dir / plugin.name, follow_symlinks=False)
    conf = (examples / "sasl" / "Sendmail.conf.2").read_text()
    conf = conf.replace("pwcheck_method: saslauthd",
                        f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                        f"sasldb_path: {etc / 'sasldb2'}")
    (sasl_dir / "Sendmail.conf").write_text(conf)
    sandbox.binds.append((sasl_dir, SASL_PLUGINS))
    sandbox.prepare()
    password = "Lab-" + secrets.token_urlsafe(18)
    made = sandbox.run([str(tree / "usr/sbin/saslpasswd2"), "-f", str(etc / "sasldb2"), "-c",
                        "-p", "-u", MAIL_HOSTNAME, MAIL_USER], input_text=password)
    if made.returncode != 0:
        raise DaemonFailed(f"saslpasswd2: {made.stderr}")
    sendmail = str(tree / "usr/libexec/sendmail/sendmail")
    aliases = sandbox.run([sendmail, "-C", str(cf), "-bi"])
    if aliases.returncode != 0:
        raise DaemonFailed(f"sendmail -bi: {aliases.stdout}{aliases.stderr}")
    # -bD: the daemon in the foreground; -odq: accepted mail stays in the queue.
    daemon = sandbox.spawn("sendmail", [sendmail, "-C", str(cf), "-bD", "-odq"],
                           root / "log" / "sendmail.log")
    stock.daemons.append(daemon)
    _wait_greeting(stock, daemon, port, START_TIMEOUT)
    stock.targets["submission"] = _target(stock, "submission", port, MAIL_USER, password, pki)
    stock.notes["config"] = mc_path.read_text()


LAUNCHERS: dict[tuple[str, str], Launcher] = {
    ("postfix", "secure"): lambda stock, pki: _postfix(stock, pki, weak=False),
    ("postfix", "weak"): lambda stock, pki: _postfix(stock, pki, weak=True),
    ("exim4", "secure"): lambda stock, pki: _exim(stock, pki, weak=False),
    ("exim4", "weak"): lambda stock, pki: _exim(stock, pki, weak=True),
    ("sendmail", "secure"): lambda stock, pki: _sendmail(stock, pki, weak=False),
    ("sendmail", "weak"): lambda stock, pki: _sendmail(stock, pki, weak=True),
}


"""vsftpd, ProFTPD and Pure-FTPd from Debian's packages, in shipped configurations.

Every server logs in a test user through its shipped authentication (PAM for vsftpd,
ProFTPD and Pure-FTPd): the user exists only in the sandbox's private passwd/shadow,
and the packages' own PAM service files are placed in the sandbox's private
/etc/pam.d. The lab certificate is ECDSA P-256, issued by the lab CA for localhost and
127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import debian_cache
from stock_launch import Launcher, StockServer
from stock_sandbox import (
    START_TIMEOUT,
    Account,
    DaemonFailed,
    Sandbox,
    free_ids,
    free_ports,
    greeting,
    login_shell,
    private_copy,
    set_option,
    wait_until,
)

from harness.certs import LabPKI
from harness.protocols.tls import Trust
from harness.targets import Target

FTP_USER = "ftpslab"
TIMEOUT = 5.0


def _ftp_account(sandbox: Sandbox) -> Account:
    """The test user: a random password, a home only it can enter, a listed shell."""
    uid = free_ids(1, 20000, 30000)[0]
    home = sandbox.root / "home" / FTP_USER
    home.mkdir(parents=True, mode=0o700)
    os.chown(home, uid, uid)
    (sandbox.root / "home").chmod(0o755)
    account = Account(FTP_USER, uid, uid, home, shell=login_shell(),
                      password="Ftp-" + secrets.token_urlsafe(18),
                      gecos="ftps-lab stock-server test user")
    return sandbox.add_account(account)


def _pam_services(tree: Path, *names: str) -> dict[str, str]:
    return {name: (tree / "etc" / "pam.d" / name).read_text() for name in names}


def _target(stock: StockServer, port: int, account: Account, pki: LabPKI) -> Target:
    return Target(
        name=stock.label, protocol="ftps", host="127.0.0.1", port=port,
        trust=Trust(ca_file=pki.ca_file), server_name="localhost",
        user=account.name, password=account.password, timeout=TIMEOUT,
        policy="require", passive_address="127.0.0.1",
    )  # fmt: skip


def _wait_greeting(stock: StockServer, port: int) -> str:
    line = wait_until(lambda: greeting(port), stock.daemons[-1], START_TIMEOUT,
                      f"the 220 greeting on port {port}")
    stock.notes["greeting"] = str(line)
    return str(line)


# --- vsftpd ----------------------------------------------------------------------------------


def vsftpd_config(shipped: str, root: Path, port: int, cert: Path, key: Path,
                  weak: bool) -> str:
    """Debian's /etc/vsftpd.conf with the lines an FTPS deployment guide changes.

    Secure: TLS on with TLS 1.0 off (``ssl_tlsv1=NO``); ``force_local_logins_ssl``,
    ``force_local_data_ssl`` and ``require_ssl_reuse`` keep their defaults (YES).
    Weak: the same with TLS optional (both ``force_local_*=NO``).
    """
    text = shipped
    for option, value in (
        ("listen", "YES"),  # standalone, as Debian's systemd unit runs it
        ("listen_ipv6", "NO"),
        ("write_enable", "YES"),  # shipped commented out; uploads need it
        ("secure_chroot_dir", str(root / "empty")),  # Debian's lives under /run
        ("rsa_cert_file", str(cert)),
        ("rsa_private_key_file", str(key)),
        ("ssl_enable", "YES"),
        ("listen_address", "127.0.0.1"),
        ("listen_port", str(port)),
        ("xferlog_file", str(root / "log" / "xferlog")),
        ("vsftpd_log_file", str(root / "log" / "vsftpd.log")),
        ("ssl_tlsv1", "NO"),
    ):
        text = set_option(text, option, value)
    if weak:
        text = set_option(text, "force_local_logins_ssl", "NO")
        text = set_option(text, "force_local_data_ssl", "NO")
    return text


def _vsftpd(stock: StockServer, pki: LabPKI, weak: bool) -> None:
    tree = debian_cache.unpacked("vsftpd")
    stock.version = debian_cache.version_of(tree, "vsftpd")
    root = stock.root
    sandbox = Sandbox(root, pam_services=_pam_services(tree, "vsftpd"))
    account = _ftp_account(sandbox)
    sandbox.prepare()
    (root / "empty").mkdir(mode=0o755)
    (root / "log").mkdir(mode=0o755)
    files = pki.files("lab")
    cert = private_copy(files.cert, root / "cert.pem", mode=0o644)
    key = private_copy(files.key, root / "key.pem")
    port = free_ports(1)[0]
    conf = root / "vsftpd.conf"
    conf.write_text(vsftpd_config((tree / "etc/vsftpd.conf").read_text(), root, port,
                                  cert, key, weak))
    conf.chmod(0o600)
    stock.daemons.append(sandbox.spawn("vsftpd", [str(tree / "usr/sbin/vsftpd"), str(conf)],
                                       root / "log" / "vsftpd-start.log"))
    _wait_greeting(stock, port)
    stock.targets["ftps"] = _target(stock, port, account, pki)
    stock.notes["config"] = conf.read_text()


# --- ProFTPD -------------------------------------------------------------------------------


def proftpd_config(templates: Path, tree: Path, root: Path, port: int, cert: Path,
                   key: Path, weak: bool) -> dict[str, str]:
    """Debian's proftpd.conf, modules.conf and tls.conf with the deployment-guide lines.

    Secure: ``Include tls.conf`` uncommented, ``LoadModule mod_tls.c`` uncommented,
    ``TLSEngine on``, the certificate, ``TLSRequired on``. Weak: ``TLSRequired off``.
    Private paths replace /etc/proftpd, /var/log/proftpd and /run; ``SocketBindTight``
    with ``DefaultAddress 127.0.0.1`` keeps every socket on loopback (without it
    ProFTPD binds the wildcard address).
    """
    conf = (templates / "proftpd.conf").read_text()
    conf = conf.replace("Include /etc/proftpd/modules.conf", f"Include {root}/modules.conf")
    conf = conf.replace("#Include /etc/proftpd/tls.conf", f"Include {root}/tls.conf")
    conf = conf.replace("Include /etc/proftpd/conf.d/", f"Include {root}/conf.d/")
    for name, value in (
        ("Port", str(port)),
        ("TransferLog", f"{root}/log/xferlog"),
        ("SystemLog", f"{root}/log/proftpd.log"),
        ("ControlsLog", f"{root}/log/controls.log"),
        ("ControlsSocket", f"{root}/run/proftpd.sock"),
    ):
        conf = set_option(conf, name, value, sep=" ")
    conf += (
        "\n# ftps-lab: loopback only, private run files\n"
        "DefaultAddress 127.0.0.1\nSocketBindTight on\n"
        f"PidFile {root}/run/proftpd.pid\nScoreboardFile {root}/run/proftpd.scoreboard\n"
        f"DelayTable {root}/run/proftpd.delay\n"
    )
    modules = (templates / "modules.conf").read_text()
    modules = modules.replace("ModulePath /usr/lib/proftpd",
                              f"ModulePath {tree}/usr/lib/proftpd")
    modules = modules.replace("#LoadModule mod_tls.c", "LoadModule mod_tls.c")
    tls = (templates / "tls.conf").read_text()
    tls = set_option(tls, "TLSEngine", "on", sep=" ")
    tls = set_option(tls, "TLSLog", f"{root}/log/tls.log", sep=" ")
    # The lab certificate is ECDSA: the EC directives in place of the RSA examples.
    tls = tls.replace("#TLSRSACertificateFile                   /etc/ssl/certs/proftpd.crt",
                      f"TLSECCertificateFile {cert}")
    tls = tls.replace("#TLSRSACertificateKeyFile                /etc/ssl/private/proftpd.key",
                      f"TLSECCertificateKeyFile {key}")
    tls = set_option(tls, "TLSRequired", "off" if weak else "on", sep=" ")
    return {"proftpd.conf": conf, "modules.conf": modules, "tls.conf": tls}


def _proftpd(stock: StockServer, pki: LabPKI, weak: bool) -> None:
    tree = debian_cache.unpacked("proftpd")
    stock.version = debian_cache.version_of(tree, "proftpd-core")
    root = stock.root
    sandbox = Sandbox(root, pam_services=_pam_services(tree, "proftpd"))
    account = _ftp_account(sandbox)
    # Debian's postinst creates the system user the shipped "User proftpd" names.
    uid = free_ids(1, 900, 1000)[0]
    sandbox.add_account(Account("proftpd", uid, 65534, Path("/run/proftpd")), group=False)
    sandbox.prepare()
    for directory in ("log", "run", "conf.d"):
        (root / directory).mkdir(mode=0o755)
    files = pki.files("lab")
    cert = private_copy(files.cert, root / "cert.pem", mode=0o644)
    key = private_copy(files.key, root / "key.pem")
    port = free_ports(1)[0]
    written = proftpd_config(tree / "usr/share/proftpd/templates", tree, root, port, cert, key,
                             weak)
    for name, text in written.items():
        (root / name).write_text(text)
    env = {"LD_LIBRARY_PATH": debian_cache.library_path(tree)}
    check = sandbox.run([str(tree / "usr/sbin/proftpd"), "-t", "-c", str(root / "proftpd.conf")],
                        env=env)
    if check.returncode != 0:
        raise DaemonFailed(f"proftpd -t: {check.stdout}{check.stderr}")
    stock.daemons.append(sandbox.spawn(
        "proftpd", [str(tree / "usr/sbin/proftpd"), "-n", "-c", str(root / "proftpd.conf")],
        root / "log" / "proftpd-start.log", env=env))
    _wait_greeting(stock, port)
    stock.targets["ftps"] = _target(stock, port, account, pki)
    stock.notes["config"] = "\n".join(f"### {n}\n{t}" for n, t in written.items())


# --- Pure-FTPd -----------------------------------------------------------------------------


PURE_TLS = {"secure": "3", "control-only": "2", "weak": "1"}


def _pure_ftpd_options(tree: Path, root: Path, conf_settings: dict[str, str]) -> list[str]:
    """Debian's pure-ftpd-wrapper, pointed at a private copy of /etc/pure-ftpd, turns the
    one-file-per-option directory into command-line flags exactly as on a real system."""
    etc = root / "etc-pure-ftpd"
    subprocess.run(["cp", "-a", str(tree / "etc/pure-ftpd"), str(etc)], check=True, timeout=30)
    for name, value in conf_settings.items():
        (etc / "conf" / name).write_text(value + "\n")
    wrapper = (tree / "usr/sbin/pure-ftpd-wrapper").read_text()
    wrapper = wrapper.replace("/etc/pure-ftpd", str(etc))
    wrapper = wrapper.replace("'/usr/sbin/pure-ftpd'", f"'{tree}/usr/sbin/pure-ftpd'")
    wrapper = wrapper.replace("/var/run/pure-ftpd/pure-ftpd.pid", str(root / "run/pure-ftpd.pid"))
    (root / "pure-ftpd-wrapper").write_text(wrapper)
    shown = subprocess.run(["perl", str(root / "pure-ftpd-wrapper"), "--show-options"],
                           capture_output=True, text=True, timeout=30, check=False)
    if shown.returncode != 0:
        raise DaemonFailed(f"pure-ftpd-wrapper --show-options: {shown.stderr}")
    return shown.stdout.split()


def _pure_ftpd(stock: StockServer, pki: LabPKI, level: str) -> None:
    tree = debian_cache.unpacked("pure-ftpd")
    stock.version = debian_cache.version_of(tree, "pure-ftpd")
    root = stock.root
    sandbox = Sandbox(root, pam_services=_pam_services(tree, "pure-ftpd"))
    account = _ftp_account(sandbox)
    sandbox.prepare()
    for directory in ("log", "run"):
        (root / directory).mkdir(mode=0o755)
    files = pki.files("lab")
    cert = private_copy(files.cert, root / "cert.pem", mode=0o644)
    key = private_copy(files.key, root / "key.pem")
    port = free_ports(1)[0]
    options = _pure_ftpd_options(tree, root, {
        "TLS": level,
        "Bind": f"127.0.0.1,{port}",
        "AltLog": f"clf:{root}/log/transfer.log",
    })
    # The certificate: Debian's build reads /etc/ssl/private/pure-ftpd.pem; the wrapper
    # has no option for another file, so --certfile is added to what it produced.
    argv = [str(tree / "usr/sbin/pure-ftpd"), *options, "-2", f"{cert},{key}"]
    stock.notes["config"] = " ".join(argv)
    stock.daemons.append(sandbox.spawn("pure-ftpd", argv, root / "log" / "pure-ftpd.log"))
    _wait_greeting(stock, port)
    stock.targets["ftps"] = _target(stock, port, account, pki)


LAUNCHERS: dict[tuple[str, str], Launcher] = {
    ("vsftpd", "secure"): lambda stock, pki: _vsftpd(stock, pki, weak=False),
    ("vsftpd", "weak"): lambda stock, pki: _vsftpd(stock, pki, weak=True),
    ("proftpd", "secure"): lambda stock, pki: _proftpd(stock, pki, weak=False),
    ("proftpd", "weak"): lambda stock, pki: _proftpd(stock, pki, weak=True),
    **{("pure-ftpd", config): (lambda stock, pki, level=level: _pure_ftpd(stock, pki, level))
       for config, level in PURE_TLS.items()},
}

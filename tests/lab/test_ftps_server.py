"""The embedded FTPS lab server, driven by stock clients: ftplib, ssl, raw sockets and curl."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from harness.lab.ftps import (
    FTPSLabServer,
    FTPSServerConfig,
    FTPUser,
    LabServerError,
    LabStartError,
)
from harness.lab.ftps_handlers import REUSE_REQUIRED_REPLY, LabTLSHandler
from harness.protocols.tls import (
    Trust,
    client_context,
    is_protocol_alert,
    legacy_client_context,
    sha256_fingerprint,
)

USER = "lab"
PASSWORD = "ftps-Lab-7731"
TIMEOUT = 5.0
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


# --- clients -------------------------------------------------------------------------


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS that resumes the control session on data connections (CPython #63699)."""

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


class ImplicitFTP_TLS(ReusingFTP_TLS):
    """Implicit FTPS: TLS from the first byte, then FTP as if AUTH TLS had been done."""

    def connect(self, host: str = "", port: int = 0, timeout: float = TIMEOUT, **_: Any) -> str:
        self.host, self.port, self.timeout = host, port, timeout
        raw = socket.create_connection((host, port), timeout=timeout)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


@pytest.fixture
def ca_context(tls_files: dict[str, Path]) -> Callable[..., ssl.SSLContext]:
    def make(tls: str | None = None) -> ssl.SSLContext:
        context = client_context(Trust(ca_file=tls_files["ca"]))
        if tls is not None:
            context.maximum_version = VERSIONS[tls]
        return context

    return make


@pytest.fixture
def lab(tls_files: dict[str, Path]) -> Callable[..., Any]:
    """Factory: ``with lab(**options) as server``; asserts the server saw no errors."""

    @contextmanager
    def make(**options: Any) -> Iterator[FTPSLabServer]:
        options.setdefault("certfile", tls_files["cert"])
        options.setdefault("keyfile", tls_files["key"])
        options.setdefault("users", [(USER, PASSWORD)])
        with FTPSLabServer(FTPSServerConfig(**options)) as server:
            yield server
            assert server.errors == []

    return make


def _login(
    server: FTPSLabServer, context: ssl.SSLContext, cls: type[ftplib.FTP_TLS] = ReusingFTP_TLS
) -> ftplib.FTP_TLS:
    ftp = cls(context=context, timeout=TIMEOUT)
    ftp.connect(server.host, server.port)
    ftp.login(USER, PASSWORD)
    ftp.prot_p()
    return ftp


class _Raw:
    """A line-oriented control connection for replies ftplib would hide or reject."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.reader = self.sock.makefile("rb")

    def reply(self) -> str:
        first = line = self.reader.readline(4096).decode()
        while first[3:4] == "-" and not (line[:3] == first[:3] and line[3:4] == " "):
            line = self.reader.readline(4096).decode()
            if not line:
                break
        return first.rstrip("\r\n") if first[3:4] == " " else first[:3] + line[3:].rstrip()

    def cmd(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _roundtrips(ftp: ftplib.FTP, count: int) -> None:
    """STOR, RETR and LIST ``count`` times, checking every byte with SHA-256."""
    for index in range(count):
        payload = os.urandom(64 * 1024 + index)
        ftp.storbinary(f"STOR file{index}.bin", io.BytesIO(payload))
        digest = hashlib.sha256()
        ftp.retrbinary(f"RETR file{index}.bin", digest.update)
        assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
        names: list[str] = []
        ftp.retrlines("LIST", names.append)
        assert any(line.endswith(f"file{index}.bin") for line in names)


def _refusal_of(ftp: ftplib.FTP, action: Callable[[], Any]) -> str:
    """The error reply a data transfer ends with (the TLS layer may break first)."""
    try:
        action()
    except ftplib.error_perm as exc:
        return str(exc)
    except OSError:
        try:
            ftp.getresp()
        except ftplib.error_perm as exc:
            return str(exc)
    raise AssertionError("the transfer was not refused")


def _leaf_fingerprint(cert_pem: Path) -> str:
    leaf = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    return sha256_fingerprint(leaf.public_bytes(Encoding.DER))


def _bind_when_free(port: int) -> socket.socket:
    """Bind ``port`` once the server has let go of it (it closes asynchronously)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"policy": "sometimes"}, "policy"),
        ({"min_tls": "1.0"}, "legacy_tls_version"),
        ({"min_tls": "1.3", "max_tls": "1.2"}, "below"),
        ({"legacy_tls_version": "0.9"}, "legacy_tls_version"),
        ({"certfile": None}, "certfile"),
        ({"tls": False, "implicit": True}, "tls=True"),
        ({"passive_ports": (2000, 1999)}, "passive_ports"),
        ({"users": []}, "anonymous"),
        ({"users": [("anonymous", "x")]}, "anonymous"),
        ({"users": [("FTP", "x")]}, "anonymous"),
        ({"users": [("a", "")]}, "empty password"),
        ({"users": [("a", "x"), ("a", "y")]}, "unique"),
    ],
)
def test_invalid_configurations_are_refused(
    tls_files: dict[str, Path], options: dict[str, Any], message: str
) -> None:
    base: dict[str, Any] = {"certfile": tls_files["cert"], "users": [(USER, PASSWORD)]}
    with pytest.raises(ValueError, match=message):
        FTPSServerConfig(**{**base, **options}).validate()


def test_users_accept_tuples_and_hide_passwords(tmp_path: Path) -> None:
    config = FTPSServerConfig(users=[("a", "secret-1", tmp_path, "elr"), ("b", "secret-2")])
    assert config.users[0] == FTPUser("a", "secret-1", tmp_path, "elr")
    assert config.users[1].home is None
    assert "secret" not in repr(config)


# --- policy: IIS "Require SSL" vs "Allow SSL" ------------------------------------------


def test_require_policy_refuses_plaintext_login(lab: Any) -> None:
    with lab(policy="require") as server:
        raw = _Raw(server.address)
        try:
            assert raw.reply().startswith("220 ")
            assert raw.cmd(f"USER {USER}").startswith("550 ")
            assert raw.cmd(f"PASS {PASSWORD}").startswith("550 ")
            assert raw.cmd("FEAT").startswith("211")  # multi-line, lists AUTH TLS
        finally:
            raw.close()


def test_allow_policy_accepts_plaintext_login_and_prot_c(lab: Any) -> None:
    with lab(policy="allow") as server:
        raw = _Raw(server.address)
        try:
            assert raw.reply().startswith("220 ")
            assert raw.cmd(f"USER {USER}").startswith("331 ")
            assert raw.cmd(f"PASS {PASSWORD}").startswith("230 ")
        finally:
            raw.close()
        plain = ftplib.FTP(timeout=TIMEOUT)
        plain.connect(server.host, server.port)
        plain.login(USER, PASSWORD)
        _roundtrips(plain, 1)  # cleartext data connections
        plain.quit()


def test_require_policy_refuses_prot_c_data(lab: Any, ca_context: Any) -> None:
    with lab(policy="require") as server:
        ftp = _login(server, ca_context())
        ftp.prot_c()
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftp.retrlines("LIST", lambda line: None)
        # A data connection opened under PROT P cannot be used after PROT C either.
        ftp.prot_p()
        ftp.makepasv()
        ftp.prot_c()
        with pytest.raises(ftplib.error_perm, match=r"^521"):
            ftp.sendcmd("LIST")
        ftp.prot_p()
        _roundtrips(ftp, 1)
        ftp.quit()


def test_no_anonymous_login(lab: Any, ca_context: Any) -> None:
    with lab() as server:
        ftp = ReusingFTP_TLS(context=ca_context(), timeout=TIMEOUT)
        ftp.connect(server.host, server.port)
        for name in ("anonymous", "ftp"):
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                ftp.login(name, "guest@example.invalid")
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftp.login(USER, PASSWORD + "-wrong")
        ftp.close()


# --- required TLS session reuse (vsftpd require_ssl_reuse=YES) --------------------------


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_stock_ftplib_is_refused_when_reuse_is_required(
    lab: Any, ca_context: Any, tls: str
) -> None:
    with lab(require_session_reuse=True) as server:
        ftp = _login(server, ca_context(tls), cls=ftplib.FTP_TLS)
        reply = _refusal_of(ftp, lambda: ftp.retrlines("LIST", lambda line: None))
        assert reply == REUSE_REQUIRED_REPLY
        assert ftp.voidcmd("NOOP").startswith("200")  # the control connection survives
        ftp.close()
        assert server.data_handshakes
        last = server.data_handshakes[-1]
        assert (last.session_reused, last.refused) == (False, True)
        assert last.tls_version == f"TLSv{tls}"


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_reusing_client_is_accepted_for_six_transfers(lab: Any, ca_context: Any, tls: str) -> None:
    with lab(require_session_reuse=True) as server:
        ftp = _login(server, ca_context(tls))
        assert ftp.sock.version() == f"TLSv{tls}"
        _roundtrips(ftp, 6)
        ftp.quit()
        assert len(server.data_handshakes) == 18
        assert all(h.session_reused and not h.refused for h in server.data_handshakes)
        assert {h.tls_version for h in server.data_handshakes} == {f"TLSv{tls}"}


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_stock_ftplib_is_accepted_when_reuse_is_not_required(
    lab: Any, ca_context: Any, tls: str
) -> None:
    with lab(require_session_reuse=False) as server:
        ftp = _login(server, ca_context(tls), cls=ftplib.FTP_TLS)
        _roundtrips(ftp, 1)
        ftp.quit()
        assert not any(h.session_reused or h.refused for h in server.data_handshakes)


def test_session_resumption_can_be_switched_off(lab: Any, ca_context: Any) -> None:
    """The fault switch: the server cannot resume, so a reusing client gets full handshakes."""
    with lab(session_resumption=False) as server:
        ftp = _login(server, ca_context())
        _roundtrips(ftp, 1)
        ftp.quit()
        assert server.data_handshakes
        assert not any(h.session_reused for h in server.data_handshakes)


# --- implicit FTPS (IIS port 990 mode) -----------------------------------------------


def test_implicit_ftps_with_python_client(lab: Any, ca_context: Any) -> None:
    with lab(implicit=True, require_session_reuse=True) as server:
        ftp = ImplicitFTP_TLS(context=ca_context(), timeout=TIMEOUT)
        assert ftp.connect(server.host, server.port).startswith("220 ")
        assert isinstance(ftp.sock, ssl.SSLSocket)
        with pytest.raises(ftplib.error_perm, match=r"^503"):
            ftp.sendcmd("AUTH TLS")
        ftp.login(USER, PASSWORD)  # no AUTH: the socket is already TLS
        ftp.prot_p()
        _roundtrips(ftp, 2)
        ftp.quit()
        assert all(h.session_reused for h in server.data_handshakes)


def test_implicit_ftps_sends_no_plaintext_banner(lab: Any) -> None:
    with lab(implicit=True) as server:
        with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
            raw.sendall(b"USER lab\r\n")
            try:
                first = raw.recv(64)
            except ConnectionResetError:
                first = b""
        assert not first.startswith(b"220")
        deadline = time.monotonic() + TIMEOUT
        while not server.tls_failures and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.tls_failures and "implicit TLS" in server.tls_failures[0]


@pytest.mark.interop
@pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl is not installed (Debian package curl)"
)
def test_implicit_ftps_with_curl(lab: Any, tls_files: dict[str, Path]) -> None:
    with lab(implicit=True, require_session_reuse=True) as server:
        (server.home(USER) / "listed-by-curl.txt").write_text("hello\n")
        result = subprocess.run(
            [
                "curl", "--silent", "--show-error", "--ssl-reqd",
                "--cacert", str(tls_files["ca"]), "--max-time", "10",
                "--config", "-", f"ftps://localhost:{server.port}/",
            ],
            input=f'user = "{USER}:{PASSWORD}"\n',  # keeps the password off the command line
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "listed-by-curl.txt" in result.stdout
        assert server.data_handshakes and server.data_handshakes[-1].session_reused


# --- passive ports, masquerading -------------------------------------------------------


def test_passive_range_is_used_and_exhaustion_is_an_error(lab: Any, ca_context: Any) -> None:
    port = _free_port()
    with lab(passive_ports=(port, port)) as server:
        first = _login(server, ca_context())
        second = _login(server, ca_context())
        assert first.makepasv()[1] == port  # held open: the only port is now busy
        with pytest.raises(ftplib.error_temp, match=r"^425"):
            second.makepasv()
        first.quit()
        # Also busy when someone else holds the port.
        with _bind_when_free(port) as squatter:
            squatter.listen()
            with pytest.raises(ftplib.error_temp, match=r"^425"):
                second.makepasv()
        _roundtrips(second, 1)  # free again: transfers use the range
        second.quit()
        assert len(server.errors) == 2
        assert all("passive range" in error for error in server.errors)
        with pytest.raises(LabServerError, match="passive range"):
            server.raise_errors()
        server.errors.clear()


def test_masquerade_address_is_announced_in_227(lab: Any, ca_context: Any) -> None:
    with lab(masquerade_address="127.0.0.2") as server:
        ftp = _login(server, ca_context())
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        assert host == "127.0.0.2"
        assert port > 0
        ftp.quit()


# --- TLS versions and ciphers ----------------------------------------------------------


def _explicit_handshake(server: FTPSLabServer, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = _Raw(server.address)
    assert raw.reply().startswith("220 ")
    assert raw.cmd("AUTH TLS").startswith("234 ")
    raw.reader.close()
    try:
        return context.wrap_socket(raw.sock, server_hostname="localhost")
    except BaseException:
        raw.sock.close()
        raise


def test_tls_version_bounds_and_forward_secret_ciphers(lab: Any, ca_context: Any) -> None:
    with lab(max_tls="1.2") as server:
        with _explicit_handshake(server, ca_context()) as tls:
            assert tls.version() == "TLSv1.2"
            assert tls.cipher()[0].startswith("ECDHE-")
            assert "GCM" in tls.cipher()[0] or "CHACHA20" in tls.cipher()[0]
        for ciphers in ("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256"):
            weak = ca_context("1.2")
            weak.set_ciphers(ciphers)  # CBC, or RSA key exchange: both refused
            with pytest.raises(ssl.SSLError) as refused:
                _explicit_handshake(server, weak).close()
            assert is_protocol_alert(refused.value)
    with lab(min_tls="1.3") as server:
        with pytest.raises(ssl.SSLError) as refused:
            _explicit_handshake(server, ca_context("1.2")).close()
        assert is_protocol_alert(refused.value)
        with _explicit_handshake(server, ca_context()) as tls:
            assert tls.version() == "TLSv1.3"


@pytest.mark.parametrize("legacy", [None, "1.0"])
def test_legacy_tls_only_when_asked_for(lab: Any, legacy: str | None) -> None:
    with lab(legacy_tls_version=legacy) as server:
        if legacy is None:
            with pytest.raises(ssl.SSLError) as refused:
                _explicit_handshake(server, legacy_client_context("1.0")).close()
            assert is_protocol_alert(refused.value)
        else:
            with _explicit_handshake(server, legacy_client_context("1.0")) as tls:
                assert tls.version() == "TLSv1"


# --- isolation, lifecycle, errors ------------------------------------------------------


@pytest.fixture
def other_tls_files(tmp_path: Path) -> dict[str, Path]:
    import trustme

    ca = trustme.CA(organization_name="Other lab CA")
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    leaf.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    paths["key"].chmod(0o600)
    return paths


def test_two_servers_with_different_certificates_run_at_once(
    lab: Any, tls_files: dict[str, Path], other_tls_files: dict[str, Path]
) -> None:
    expected = {
        "one": _leaf_fingerprint(tls_files["cert"]),
        "two": _leaf_fingerprint(other_tls_files["cert"]),
    }
    assert expected["one"] != expected["two"]
    with (
        lab() as one,
        lab(certfile=other_tls_files["cert"], keyfile=other_tls_files["key"], implicit=True) as two,
    ):
        assert one.handler_class is not two.handler_class
        assert one.handler_class.ssl_context is not two.handler_class.ssl_context
        assert "ssl_context" not in vars(LabTLSHandler)  # nothing leaked into shared classes
        contexts = {
            "one": client_context(Trust(ca_file=tls_files["ca"])),
            "two": client_context(Trust(ca_file=other_tls_files["ca"])),
        }
        clients = {
            "one": _login(one, contexts["one"]),
            "two": ImplicitFTP_TLS(context=contexts["two"], timeout=TIMEOUT),
        }
        clients["two"].connect(two.host, two.port)
        clients["two"].login(USER, PASSWORD)
        clients["two"].prot_p()
        for name, ftp in clients.items():
            der = ftp.sock.getpeercert(binary_form=True)
            assert sha256_fingerprint(der) == expected[name]
        for ftp in clients.values():  # interleaved: both loops serve at the same time
            _roundtrips(ftp, 1)
        for ftp in clients.values():
            ftp.quit()
        assert one.home(USER) != two.home(USER)
        assert one.thread is not two.thread


def test_stop_is_fast_idempotent_and_leaves_nothing(lab: Any, ca_context: Any) -> None:
    with lab() as server:
        ftp = _login(server, ca_context())
        ftp.makepasv()  # a listening data socket is open too
        thread = server.thread
        home = server.home(USER)
        assert thread is not None and thread.is_alive() and home.is_dir()
        started = time.perf_counter()
        server.stop()
        elapsed = time.perf_counter() - started
        print(f"FTPS lab server stop took {elapsed * 1000:.1f} ms")
        assert elapsed < 1.0
        assert not thread.is_alive()
        assert thread not in threading.enumerate()
        assert not server.running
        assert not home.exists()
        with pytest.raises((EOFError, OSError)):
            ftp.voidcmd("NOOP")  # the client was disconnected
        ftp.close()
        server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(server.address, timeout=TIMEOUT).close()


def test_start_failures_are_reported_and_cleaned_up(tmp_path: Path, lab: Any) -> None:
    config = FTPSServerConfig(certfile=tmp_path / "missing.pem", users=[(USER, PASSWORD)])
    server = FTPSLabServer(config)
    with pytest.raises(LabStartError, match="did not start"):
        server.start()
    assert not server.running
    with lab() as running, pytest.raises(LabStartError, match="did not start"):
        FTPSLabServer(
            FTPSServerConfig(tls=False, port=running.port, users=[(USER, PASSWORD)])
        ).start()


class _BrokenOnLogin(LabTLSHandler):
    def on_login(self, username: str) -> None:
        raise RuntimeError("deliberately broken on_login hook")


class _BrokenServer(FTPSLabServer):
    tls_control_handler = _BrokenOnLogin


def test_errors_inside_the_server_thread_reach_the_test(
    tls_files: dict[str, Path], ca_context: Any
) -> None:
    config = FTPSServerConfig(
        certfile=tls_files["cert"], keyfile=tls_files["key"], users=[(USER, PASSWORD)]
    )
    server = _BrokenServer(config)
    with pytest.raises(LabServerError, match="deliberately broken on_login hook"), server:
        ftp = ReusingFTP_TLS(context=ca_context(), timeout=TIMEOUT)
        ftp.connect(server.host, server.port)
        ftp.login(USER, PASSWORD)
        with pytest.raises((EOFError, OSError, ftplib.Error)):
            ftp.voidcmd("NOOP")  # pyftpdlib closed the session after the exception
        ftp.close()
        assert any("RuntimeError" in error for error in server.errors)
        assert PASSWORD not in "\n".join(server.errors)
    assert not server.running


def test_plain_ftp_mode_for_baselines(lab: Any) -> None:
    with lab(tls=False, certfile=None, keyfile=None, dtp_out_buffer_size=128 * 1024) as server:
        assert server.handler_class.dtp_handler.ac_out_buffer_size == 128 * 1024
        ftp = ftplib.FTP(timeout=TIMEOUT)
        ftp.connect(server.host, server.port)
        with pytest.raises(ftplib.error_perm, match=r"^500"):
            ftp.sendcmd("AUTH TLS")
        ftp.login(USER, PASSWORD)
        _roundtrips(ftp, 2)
        ftp.quit()


def test_banner_and_multiline_banner(lab: Any) -> None:
    long_banner = "IIS-like lab " + "x" * 80
    with lab(banner=long_banner, policy="allow") as server:
        plain = ftplib.FTP(timeout=TIMEOUT)
        welcome = plain.connect(server.host, server.port)
        assert long_banner in welcome
        plain.close()


# --- nothing leaks before a refusal; nothing truncated is reported complete -------------


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_refused_data_connection_carries_no_byte_even_after_a_finished_handshake(
    lab: Any, ca_context: Any, tls: str
) -> None:
    """The data handshake completes before RETR arrives; still, not one byte goes out."""
    with lab(require_session_reuse=True, passive_ports=None) as server:
        ftp = _login(server, ca_context(tls), cls=ftplib.FTP_TLS)
        (server.home(USER) / "big.bin").write_bytes(os.urandom(1024 * 1024))
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        data = ftp.context.wrap_socket(raw, server_hostname=ftp.host)  # a fresh session
        deadline = time.monotonic() + TIMEOUT
        while not server.data_handshakes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.data_handshakes and server.data_handshakes[-1].refused
        ftp.putcmd("RETR big.bin")
        received = b""
        try:
            while chunk := data.recv(65536):
                received += chunk
        except (ssl.SSLError, OSError):
            pass
        data.close()
        replies = [ftp.getline()]
        if replies[0].startswith(("150", "125")):
            replies.append(ftp.getline())
        assert received == b""
        assert replies[-1] == REUSE_REQUIRED_REPLY
        ftp.close()


def test_upload_cut_without_close_notify_is_answered_426_not_226(lab: Any, ca_context: Any) -> None:
    with lab() as server:
        ftp = _login(server, ca_context("1.2"))
        data, _ = ftp.ntransfercmd("STOR cut.bin")
        data.sendall(os.urandom(256 * 1024))
        # Close the TCP connection without TLS close_notify, as a crashing client would.
        data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        data.close()
        reply = ftp.getline()
        assert reply.startswith("426"), reply
        assert "close_notify" in reply
        assert ftp.voidcmd("NOOP").startswith("200")
        ftp.close()


def test_upload_with_close_notify_is_complete(lab: Any, ca_context: Any) -> None:
    with lab() as server:
        ftp = _login(server, ca_context("1.3"))
        payload = os.urandom(256 * 1024)
        assert ftp.storbinary("STOR whole.bin", io.BytesIO(payload)).startswith("226")
        assert (server.home(USER) / "whole.bin").read_bytes() == payload
        ftp.quit()

"""The FTPS driver against the embedded lab server and against scripted hostile servers.

Every server here listens on 127.0.0.1. The scripted servers send exactly the bytes a
broken or hostile FTP server would (an endless line, an endless reply, silence, a
PASV reply pointing elsewhere), so the limits and the PASV rule are proven on the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.protocols.ftp import FTPProtocolError, pasv_argument
from harness.protocols.ftps_client import (
    MAX_LISTING,
    FTPClosed,
    FTPSClient,
    FTPTimeout,
    is_loopback,
    random_chunks,
)
from harness.protocols.tls import PinMismatch, Trust, client_context, sha256_fingerprint
from harness.transcript import Transcript

USER = "lab"
PASSWORD = "Drv-secret-4417"
TIMEOUT = 5.0

# --- lab servers --------------------------------------------------------------------------


@pytest.fixture
def lab(tls_files: dict[str, Path]) -> Callable[..., Any]:
    @contextmanager
    def make(**options: Any) -> Iterator[FTPSLabServer]:
        options.setdefault("certfile", tls_files["cert"])
        options.setdefault("keyfile", tls_files["key"])
        options.setdefault("users", [(USER, PASSWORD)])
        with FTPSLabServer(FTPSServerConfig(**options)) as server:
            yield server

    return make


def _client(
    server: FTPSLabServer, tls_files: dict[str, Path], tls: str | None = None, **kwargs: Any
) -> FTPSClient:
    context = client_context(Trust(ca_file=tls_files["ca"]), min_version=tls or "1.2",
                             max_version=tls)
    kwargs.setdefault("timeout", TIMEOUT)
    return FTPSClient(server.host, server.port, context=context, server_name="localhost",
                      implicit=server.config.implicit, **kwargs)


def _secure_login(client: FTPSClient, protect: bool = True) -> None:
    assert client.connect().code == 220
    if not client.implicit:
        assert client.auth_tls().code == 234
    user, password = client.login(USER, PASSWORD)
    assert user.code == 331 and password is not None and password.code == 230
    if protect:
        assert client.pbsz(0).code == 200
        assert client.prot("P").code == 200
    assert client.type_binary().code == 200


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_round_trip_with_session_reuse(lab: Any, tls_files: dict[str, Path], tls: str) -> None:
    with lab(require_session_reuse=True) as server:
        client = _client(server, tls_files, tls)
        _secure_login(client)
        assert client.tls is not None and client.tls.version == f"TLSv{tls}"
        size = 1024 * 1024 + 3
        stored = client.stor("big.bin", random_chunks(size))
        seen: list[int] = []
        fetched = client.retr("big.bin", sink=lambda chunk: seen.append(len(chunk)))
        listing = client.list()
        for transfer in (stored, fetched, listing):
            assert transfer.ok, transfer.describe()
            assert transfer.reuse_offered and transfer.session_reused is True
            assert transfer.tls is not None and transfer.tls.version == f"TLSv{tls}"
            assert transfer.tls_shutdown == "clean"
            assert transfer.final is not None and transfer.final.code == 226
        assert stored.size == fetched.size == sum(seen) == size
        assert stored.sha256 == fetched.sha256
        assert fetched.data == b""  # downloads are streamed, never kept
        on_disk = (server.home(USER) / "big.bin").read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == stored.sha256
        assert b"big.bin" in listing.data
        assert client.dele("big.bin").code == 250
        assert client.quit().code == 221
        assert client.shutdown_tls() == "clean"
        # The server agrees: every data handshake resumed the control session.
        assert server.data_handshakes and all(h.session_reused for h in server.data_handshakes)


def test_without_reuse_the_strict_server_answer_is_kept(
    lab: Any, tls_files: dict[str, Path]
) -> None:
    with lab(require_session_reuse=True) as server:
        client = _client(server, tls_files, reuse_session=False)
        _secure_login(client)
        transfer = client.list()
        assert not transfer.ok
        assert transfer.reuse_offered is False and transfer.session_reused is False
        assert transfer.final is not None and transfer.final.code == 522
        assert transfer.refusal is transfer.final
        assert "session reuse required" in transfer.describe()
        assert server.data_handshakes[-1].refused
        # The session survives: the next command is answered normally.
        assert client.command("NOOP").code == 200
        client.quit_quietly()
        client.close()


def test_implicit_tls_banner_comes_after_the_handshake(
    lab: Any, tls_files: dict[str, Path]
) -> None:
    with lab(implicit=True) as server:
        client = _client(server, tls_files)
        _secure_login(client)
        assert client.secure and client.tls is not None
        missing = client.retr("missing.bin")
        assert missing.final is not None and missing.final.code == 550
        assert missing.refusal is missing.final and not missing.ok and not missing.started
        assert client.quit().code == 221


def test_pin_is_checked_on_the_control_handshake(lab: Any, tls_files: dict[str, Path]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(tls_files["cert"].read_bytes())[0]
    pin = sha256_fingerprint(leaf.public_bytes(Encoding.DER))
    with lab() as server:
        good = FTPSClient(server.host, server.port, context=client_context(Trust(pin_sha256=pin)),
                          trust=Trust(pin_sha256=pin), timeout=TIMEOUT)
        good.connect()
        assert good.auth_tls().code == 234
        good.quit_quietly()
        good.close()
        wrong = Trust(pin_sha256="00" * 32)
        bad = FTPSClient(server.host, server.port, context=client_context(wrong), trust=wrong,
                         timeout=TIMEOUT)
        bad.connect()
        with pytest.raises(PinMismatch, match="does not match the pin"):
            bad.auth_tls()
        bad.close()


def test_password_is_never_recorded(lab: Any, tls_files: dict[str, Path]) -> None:
    transcript = Transcript()
    with lab() as server:
        client = _client(server, tls_files, transcript=transcript)
        client.connect()
        client.auth_tls()
        user, password = client.login(USER, "Wrong-" + PASSWORD)
        assert user.code == 331 and password is not None and password.code == 530
        user, password = client.login(USER, PASSWORD)
        assert password is not None and password.code == 230
        client.quit_quietly()
        client.close()
    text = "\n".join(transcript.lines)
    assert PASSWORD not in text and "PASS ********" in text


def test_prot_c_data_is_plaintext_and_refusals_are_kept(
    lab: Any, tls_files: dict[str, Path]
) -> None:
    with lab(policy="allow") as server:
        client = _client(server, tls_files)
        _secure_login(client, protect=False)
        assert client.pbsz(0).code == 200 and client.prot("C").code == 200
        assert not client.protected
        transfer = client.list()
        assert transfer.ok and transfer.tls is None and transfer.protected is False
        client.quit_quietly()
        client.close()
    with lab(policy="require") as server:
        client = _client(server, tls_files)
        _secure_login(client, protect=False)
        client.pbsz(0)
        client.prot("C")
        refused = client.list()
        assert refused.setup is not None and refused.setup.code == 550
        assert refused.passive is None and refused.preliminary is None
        assert refused.refusal is refused.setup and not refused.ok
        client.quit_quietly()
        client.close()


def test_listing_is_kept_only_up_to_the_limit(lab: Any, tls_files: dict[str, Path]) -> None:
    with lab() as server:
        (server.home(USER) / "data.bin").write_bytes(os.urandom(5000))
        client = _client(server, tls_files)
        _secure_login(client)
        transfer = client.transfer("RETR data.bin", keep=100)
        assert transfer.ok and transfer.size == 5000
        assert len(transfer.data) == 100 and transfer.truncated
        assert MAX_LISTING >= 64 * 1024
        client.quit_quietly()
        client.close()


# --- scripted servers ---------------------------------------------------------------------


class Scripted:
    """One-connection TCP server on loopback that runs ``script(conn, server)``."""

    def __init__(self, script: Callable[[socket.socket, Scripted], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.received: list[str] = []
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            self.conn = conn
            with conn:
                conn.settimeout(TIMEOUT)
                self.script(conn, self)
        except OSError:
            pass  # the client hung up: expected in the hostile scripts
        except BaseException as exc:  # a broken script must fail the test
            self.errors.append(exc)

    def readline(self, reader: BinaryIO) -> str:
        line = reader.readline(1024).decode().strip()
        self.received.append(line)
        return line

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        if self.conn is not None:  # unblock a script waiting for a line that never comes
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


@contextmanager
def scripted(script: Callable[[socket.socket, Scripted], None]) -> Iterator[Scripted]:
    server = Scripted(script)
    try:
        yield server
    finally:
        server.close()


def _plain_client(port: int, **kwargs: Any) -> FTPSClient:
    kwargs.setdefault("timeout", 2.0)
    return FTPSClient("127.0.0.1", port, **kwargs)


def test_endless_line_is_an_error_not_memory_growth() -> None:
    def script(conn: socket.socket, server: Scripted) -> None:
        conn.sendall(b"220-")
        while not server.stop.is_set():
            conn.sendall(b"x" * 65536)

    with scripted(script) as server:
        client = _plain_client(server.port, max_line=8192)
        start = time.monotonic()
        with pytest.raises(FTPProtocolError, match="longer than 8192 octets"):
            client.connect()
        assert time.monotonic() - start < 2
        assert len(client._buffer) == 0
        assert "no end" in client.transcript.lines[-1]
        client.close()


def test_endless_multi_line_reply_is_cut_at_the_line_limit() -> None:
    def script(conn: socket.socket, server: Scripted) -> None:
        while not server.stop.is_set():
            conn.sendall(b"220-more and more\r\n" * 100)

    with scripted(script) as server:
        client = _plain_client(server.port, max_lines=50)
        with pytest.raises(FTPProtocolError, match="longer than 50 lines"):
            client.connect()
        client.close()


def test_silent_server_times_out_and_closing_server_is_reported() -> None:
    def silent(conn: socket.socket, server: Scripted) -> None:
        server.stop.wait(TIMEOUT)

    with scripted(silent) as server:
        client = _plain_client(server.port, timeout=0.3)
        start = time.monotonic()
        with pytest.raises(FTPTimeout):
            client.connect()
        assert time.monotonic() - start < 1.5
        client.close()

    def rude(conn: socket.socket, server: Scripted) -> None:
        conn.sendall(b"220 hello\r\n")
        conn.makefile("rb").readline(1024)

    with scripted(rude) as server:
        client = _plain_client(server.port)
        assert client.connect().code == 220
        with pytest.raises(FTPClosed, match="closed by server"):
            client.command("NOOP")
        client.close()


def test_pasv_address_elsewhere_is_recorded_but_never_connected_to() -> None:
    """The 227 names 10.99.99.99; the data connection must still go to 127.0.0.1."""

    def script(conn: socket.socket, server: Scripted) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted\r\n")
        assert server.readline(reader) == "PASV"
        with socket.create_server(("127.0.0.1", 0)) as data_listener:
            data_listener.settimeout(TIMEOUT)
            port = data_listener.getsockname()[1]
            conn.sendall(f"227 Entering Passive Mode ({pasv_argument('10.99.99.99', port)})"
                         "\r\n".encode())
            data, peer = data_listener.accept()
            server.received.append(f"data from {peer[0]}")
            assert server.readline(reader) == "LIST"
            conn.sendall(b"150 Here it comes.\r\n")
            data.sendall(b"-rw-r--r-- 1 ftp ftp 5 file.txt\r\n")
            data.close()
            conn.sendall(b"226 Directory send OK.\r\n")
        assert server.readline(reader) == "QUIT"
        conn.sendall(b"221 Goodbye.\r\n")

    with scripted(script) as server:
        client = _plain_client(server.port)
        client.connect()
        transfer = client.list()
        assert transfer.ok, transfer.describe()
        assert transfer.passive is not None
        assert transfer.passive.announced_host == "10.99.99.99"
        assert transfer.passive.connect_host == "127.0.0.1"
        assert not transfer.passive.announced_matches
        assert transfer.data.endswith(b"file.txt\r\n")
        assert any("instead" in line for line in client.transcript.lines)
        assert client.quit().code == 221
        client.close()
    assert "data from 127.0.0.1" in server.received


def test_transfer_deadline_and_the_final_reply_after_it() -> None:
    """A server trickling bytes forever hits the overall deadline; its 426 is still read."""

    def script(conn: socket.socket, server: Scripted) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted\r\n")
        server.readline(reader)
        with socket.create_server(("127.0.0.1", 0)) as data_listener:
            data_listener.settimeout(TIMEOUT)
            port = data_listener.getsockname()[1]
            conn.sendall(f"229 Entering Extended Passive Mode (|||{port}|)\r\n".encode())
            data, _ = data_listener.accept()
            server.readline(reader)
            conn.sendall(b"150 Opening BINARY mode data connection.\r\n")
            try:
                while not server.stop.is_set():
                    data.sendall(b"x")
                    time.sleep(0.05)
            except OSError:
                conn.sendall(b"426 Connection closed; transfer aborted.\r\n")
            data.close()
        server.readline(reader)

    with scripted(script) as server:
        client = _plain_client(server.port, timeout=1.0, transfer_timeout=0.6)
        client.connect()
        start = time.monotonic()
        transfer = client.retr("slow.bin", mode="EPSV")
        assert 0.5 < time.monotonic() - start < 3
        assert transfer.error is not None and "deadline" in transfer.error
        assert 0 < transfer.size < 100
        assert transfer.final is not None and transfer.final.code == 426
        client.quit_quietly(timeout=0.2)
        client.close()


def test_garbled_pasv_reply_is_reported_on_the_transfer() -> None:
    def script(conn: socket.socket, server: Scripted) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted\r\n")
        server.readline(reader)
        conn.sendall(b"227 Entering Passive Mode (999,1,1,1,1,1)\r\n")
        server.readline(reader)

    with scripted(script) as server:
        client = _plain_client(server.port)
        client.connect()
        transfer = client.list()
        assert transfer.passive is None and not transfer.ok
        assert transfer.error is not None and "without a usable port" in transfer.error
        client.quit_quietly(timeout=0.2)
        client.close()


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1")
    assert is_loopback("LOCALHOST")
    assert not is_loopback("10.0.0.1") and not is_loopback("ftp.example.com")

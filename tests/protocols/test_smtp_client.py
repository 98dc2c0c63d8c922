"""The socket driver against the real lab server and against scripted misbehaving peers."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.protocols.smtp import SMTPProtocolError
from harness.protocols.smtp_client import SMTPClient, SMTPClosed, SMTPTimeout
from harness.protocols.tls import PinMismatch, Trust, client_context, explain_tls_failure
from harness.transcript import REDACTED, Transcript

PASSWORD = "drv-Pass-7331"
USERS = {"alice": PASSWORD}

Handler = Callable[[socket.socket, threading.Event], None]


@contextmanager
def scripted(handler: Handler) -> Iterator[int]:
    """A one-connection TCP peer on loopback that runs ``handler``; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    stop = threading.Event()

    def run() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            with suppress(OSError):
                handler(conn, stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(6)


@pytest.fixture
def submission(tls_files: dict[str, Path]) -> Iterator[SMTPLabServer]:
    config = SMTPServerConfig(
        users=USERS, cert_file=tls_files["cert"], key_file=tls_files["key"]
    )
    with SMTPLabServer(config) as server:
        yield server


def _ca_context(tls_files: dict[str, Path]) -> ssl.SSLContext:
    return client_context(Trust(ca_file=tls_files["ca"]))


def test_full_submission_session_and_redacted_transcript(
    submission: SMTPLabServer, tls_files: dict[str, Path]
) -> None:
    transcript = Transcript([PASSWORD])
    with SMTPClient("127.0.0.1", submission.port, timeout=3, transcript=transcript) as client:
        assert client.connect().code == 220
        assert client.ehlo().code == 250
        assert client.ehlo_info is not None and client.ehlo_info.has("STARTTLS")
        assert client.starttls(_ca_context(tls_files), "localhost").code == 220
        assert client.tls is not None and client.tls.version.startswith("TLSv1.")
        assert client.ehlo_info is None  # forgotten at STARTTLS
        client.ehlo()
        assert client.auth_plain("alice", PASSWORD).code == 235
        assert client.mail("alice@ftps-lab.test").code == 250
        assert client.rcpt("bob@example.invalid").code == 250
        message = b"Subject: t\r\nMessage-ID: <drv-1@test>\r\n\r\n.dot\r\n..two\r\n"
        assert client.data(message).code == 250
        client.quit()
    stored = submission.mailbox.find("drv-1@test")
    assert stored is not None and stored.data == message
    text = str(transcript)
    blob = base64.b64encode(f"\x00alice\x00{PASSWORD}".encode()).decode()
    assert PASSWORD not in text and blob not in text
    assert f"AUTH PLAIN {REDACTED}" in text
    assert "(message, " in text and "221" in text


def test_auth_login_redacts_password(
    submission: SMTPLabServer, tls_files: dict[str, Path]
) -> None:
    transcript = Transcript()
    with SMTPClient("127.0.0.1", submission.port, timeout=3, transcript=transcript) as client:
        client.connect()
        client.ehlo()
        client.starttls(_ca_context(tls_files), "localhost")
        client.ehlo()
        assert client.auth_login("alice", PASSWORD).code == 235
    text = str(transcript)
    assert PASSWORD not in text
    assert base64.b64encode(PASSWORD.encode()).decode() not in text
    assert "334" in text


def test_implicit_tls_and_pin(tls_files: dict[str, Path]) -> None:
    config = SMTPServerConfig(
        role="submissions", users=USERS, cert_file=tls_files["cert"], key_file=tls_files["key"]
    )
    with SMTPLabServer(config) as server:
        with SMTPClient("127.0.0.1", server.port, timeout=3) as client:
            banner = client.connect(tls_context=_ca_context(tls_files), server_hostname="localhost")
            assert banner.code == 220
            assert client.tls is not None and client.tls.fingerprint
            fingerprint = client.tls.fingerprint
        with SMTPClient("127.0.0.1", server.port, timeout=3) as client:
            right = Trust(pin_sha256=fingerprint)
            assert client.connect(
                tls_context=client_context(right), server_hostname="localhost", trust=right
            ).code == 220
        with SMTPClient("127.0.0.1", server.port, timeout=3) as client:
            wrong = Trust(pin_sha256="00" * 32)
            with pytest.raises(PinMismatch):
                client.connect(tls_context=client_context(wrong), trust=wrong)


def test_silent_server_times_out() -> None:
    def silent(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(5)

    with scripted(silent) as port, SMTPClient("127.0.0.1", port, timeout=0.3) as client:
        start = time.monotonic()
        with pytest.raises(SMTPTimeout):
            client.connect()
        assert time.monotonic() - start < 2


def test_trickling_multi_line_reply_is_bounded_by_one_deadline() -> None:
    def trickle(conn: socket.socket, stop: threading.Event) -> None:
        for _ in range(50):
            conn.sendall(b"250-still talking\r\n")
            if stop.wait(0.1):
                return

    with scripted(trickle) as port, SMTPClient("127.0.0.1", port, timeout=0.5) as client:
        start = time.monotonic()
        with pytest.raises(SMTPTimeout):
            client.connect()
        assert time.monotonic() - start < 1.5


def test_closed_connection() -> None:
    def hang_up(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220-partial\r\n")

    with scripted(hang_up) as port, SMTPClient("127.0.0.1", port, timeout=2) as client:
        with pytest.raises(SMTPClosed):
            client.connect()
        assert "connection closed by server" in str(client.transcript)


@pytest.mark.parametrize(
    "data",
    [b"HTTP/1.1 400 Bad Request\r\n", b"220 " + b"x" * 5000],
)
def test_garbage_and_overlong_lines(data: bytes) -> None:
    def send(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(data)
        stop.wait(5)

    with (
        scripted(send) as port,
        SMTPClient("127.0.0.1", port, timeout=2) as client,
        pytest.raises(SMTPProtocolError),
    ):
        client.connect()


def test_poll_reply_and_plaintext_discarded_at_handshake(tls_files: dict[str, Path]) -> None:
    """A peer that slips a reply in before TLS: the client drops it, reads only TLS data."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(tls_files["cert"]), str(tls_files["key"]))

    def sneaky(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 hi\r\n")
        conn.recv(100)  # STARTTLS
        conn.sendall(b"220 go ahead\r\n250 injected before TLS\r\n")
        tls = server_context.wrap_socket(conn, server_side=True)
        stop.wait(0.3)
        tls.sendall(b"250 inside TLS\r\n")
        stop.wait(5)

    with scripted(sneaky) as port, SMTPClient("127.0.0.1", port, timeout=3) as client:
        client.connect()
        assert client.starttls(_ca_context(tls_files), "localhost").code == 220
        assert client.poll_reply(0.05) is None
        reply = client.poll_reply(2)
        assert reply is not None and reply.first == "inside TLS"
        assert re.search(r"discarding \d+ plaintext bytes before TLS", str(client.transcript))
        assert "injected" not in str(client.transcript)


def test_a_reset_during_the_handshake_is_the_server_closing(tls_files: dict[str, Path]) -> None:
    """220 to STARTTLS, then a reset once the ClientHello arrives: an EOF, never a bare OS
    error, so the diagnosis reads the same whichever way the race between close and
    ClientHello goes."""

    def resets(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 hi\r\n")
        conn.recv(100)  # STARTTLS
        conn.sendall(b"220 go ahead\r\n")
        conn.recv(4096)  # the ClientHello
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with scripted(resets) as port, SMTPClient("127.0.0.1", port, timeout=3) as client:
        client.connect()
        with pytest.raises(ssl.SSLEOFError) as caught:
            client.starttls(_ca_context(tls_files), "localhost")
    assert isinstance(caught.value.__cause__, (ConnectionResetError, BrokenPipeError))
    assert "closed the connection during the TLS handshake" in explain_tls_failure(caught.value)

"""Servers that never stop talking: the clients stop at a documented limit, quickly.

Each server here is a real socket on 127.0.0.1 that writes without end: one endless
line, or an endless multi-line reply, in plaintext and inside TLS. The FTPS and SMTP
clients must stop at the limits their protocol modules document
(``harness.protocols.ftp.MAX_REPLY_LINE``/``MAX_REPLY_LINES``, the same names in
``harness.protocols.smtp``) with their own protocol error, long before their timeout,
and without holding what the server sent. A server that trickles a line byte by byte
must be stopped by the reply deadline instead. The checks built on the clients turn all
of it into an ``error`` result that says "malformed reply" and names the limit.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.checks import run_check
from harness.protocols import ftp, smtp
from harness.protocols.ftp import FTPProtocolError
from harness.protocols.ftps_client import FTPSClient, FTPTimeout
from harness.protocols.smtp import SMTPProtocolError
from harness.protocols.smtp_client import SMTPClient, SMTPTimeout
from harness.protocols.tls import Trust, client_context
from harness.targets import Target

# The clients' timeout: generous, so stopping early proves the LIMIT stopped them.
TIMEOUT = 5.0
# Stopping at a limit takes milliseconds on loopback; this leaves room for a slow CI box.
FAST = 1.5

pytestmark = pytest.mark.timeout(60)

Script = Callable[[socket.socket, threading.Event], None]


class HostileServer:
    """A one-connection server on 127.0.0.1 running ``script``, optionally inside TLS."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = int(self.listener.getsockname()[1])
        self.stop = threading.Event()
        self.sent = 0
        self.errors: list[BaseException] = []
        self._conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(TIMEOUT)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._conn = conn
            with conn:
                self.script(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass  # the client hung up: that is what these scripts wait for
        except BaseException as exc:  # a broken script must fail the test
            self.errors.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "hostile server thread did not end"
        assert not self.errors, self.errors


@contextmanager
def hostile(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[HostileServer]:
    server = HostileServer(script, tls)
    try:
        yield server
    finally:
        server.close()


def endless_line(head: bytes) -> Script:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        while not stop.is_set():
            conn.sendall(b"x" * 65536)

    return script


def endless_lines(first: bytes, line: bytes, reply_head: bytes | None = None) -> Script:
    """``first``, then ``line`` forever; with ``reply_head``, the endless reply answers
    the client's first command instead (``first`` is then a normal greeting)."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(first)
        if reply_head is not None:
            conn.recv(1024)  # the client's command
            conn.sendall(reply_head)
        while not stop.is_set():
            conn.sendall(line * 256)

    return script


def trickle(head: bytes) -> Script:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        while not stop.wait(0.02):
            conn.sendall(b"y")

    return script


@pytest.fixture
def server_tls(tls_files: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_files["cert"]), str(tls_files["key"]))
    return context


def _insecure() -> ssl.SSLContext:
    return client_context(Trust(insecure=True))


def _timed(action: Callable[[], object], error: type[BaseException], match: str) -> float:
    start = time.monotonic()
    with pytest.raises(error, match=match):
        action()
    return time.monotonic() - start


# -- FTPS client -----------------------------------------------------------------------

FTP_LINE = f"reply line longer than {ftp.MAX_REPLY_LINE} octets"
FTP_LINES = f"reply longer than {ftp.MAX_REPLY_LINES} lines"


@pytest.mark.parametrize("head", [b"220-", b"220 ", b""], ids=["continued", "final", "bare"])
def test_ftps_client_stops_an_endless_banner_line(head: bytes) -> None:
    with hostile(endless_line(head)) as server:
        client = FTPSClient("127.0.0.1", server.port, timeout=TIMEOUT)
        assert _timed(client.connect, FTPProtocolError, FTP_LINE) < FAST
        assert len(client._buffer) == 0, "the endless line is not kept"
        assert "octets, no end" in client.transcript.lines[-1]
        assert sum(len(line) for line in client.transcript.lines) < 2 * ftp.MAX_REPLY_LINE
        client.close()


def test_ftps_client_stops_an_endless_multi_line_reply() -> None:
    with hostile(endless_lines(b"220-welcome\r\n", b" and more\r\n")) as server:
        client = FTPSClient("127.0.0.1", server.port, timeout=TIMEOUT)
        assert _timed(client.connect, FTPProtocolError, FTP_LINES) < FAST
        client.close()


def test_ftps_client_stops_an_endless_feat_reply_after_the_banner() -> None:
    script = endless_lines(b"220 ok\r\n", b" MLST size*;modify*;\r\n", b"211-Features:\r\n")
    with hostile(script) as server:
        client = FTPSClient("127.0.0.1", server.port, timeout=TIMEOUT)
        assert client.connect().code == 220
        assert _timed(client.feat, FTPProtocolError, FTP_LINES) < FAST
        client.close()


@pytest.mark.parametrize("endless", ["line", "lines"])
def test_ftps_client_stops_endless_replies_inside_implicit_tls(
    endless: str, server_tls: ssl.SSLContext
) -> None:
    script = endless_line(b"220-") if endless == "line" else endless_lines(b"220-hi\r\n",
                                                                         b" more\r\n")
    with hostile(script, tls=server_tls) as server:
        client = FTPSClient("127.0.0.1", server.port, context=_insecure(), implicit=True,
                            timeout=TIMEOUT)
        match = FTP_LINE if endless == "line" else FTP_LINES
        assert _timed(client.connect, FTPProtocolError, match) < FAST
        assert client.tls is not None, "the limit held inside TLS, after the handshake"
        client.close()


def test_ftps_client_stops_a_trickling_line_at_the_reply_deadline() -> None:
    """Below every size limit, one byte at a time: only the deadline can stop it."""
    with hostile(trickle(b"220-")) as server:
        client = FTPSClient("127.0.0.1", server.port, timeout=1.0)
        elapsed = _timed(client.connect, FTPTimeout, "no complete reply")
        assert 0.9 <= elapsed < 1.0 + FAST
        client.close()


# -- SMTP client -----------------------------------------------------------------------

SMTP_LINE = f"reply line longer than {smtp.MAX_REPLY_LINE} octets"
SMTP_LINES = f"reply longer than {smtp.MAX_REPLY_LINES} lines"


@pytest.mark.parametrize("head", [b"220-", b"220 ", b""], ids=["continued", "final", "bare"])
def test_smtp_client_stops_an_endless_greeting_line(head: bytes) -> None:
    with hostile(endless_line(head)) as server:
        client = SMTPClient("127.0.0.1", server.port, timeout=TIMEOUT)
        assert _timed(client.connect, SMTPProtocolError, SMTP_LINE) < FAST
        assert client.pending_bytes == 0, "the endless line is not kept"
        assert "octets, no end" in client.transcript.lines[-1]
        client.close()


def test_smtp_client_stops_an_endless_multi_line_ehlo_reply() -> None:
    with hostile(endless_lines(b"220 mx ESMTP\r\n", b"250-X-ENDLESS\r\n",
                               b"250-mx hello\r\n")) as server:
        client = SMTPClient("127.0.0.1", server.port, timeout=TIMEOUT)
        assert client.connect().code == 220
        assert _timed(client.ehlo, SMTPProtocolError, SMTP_LINES) < FAST
        client.close()


@pytest.mark.parametrize("endless", ["line", "lines"])
def test_smtp_client_stops_endless_replies_inside_implicit_tls(
    endless: str, server_tls: ssl.SSLContext
) -> None:
    script = endless_line(b"220 ") if endless == "line" else endless_lines(b"220-hi\r\n",
                                                                         b"220-more\r\n")
    with hostile(script, tls=server_tls) as server:
        client = SMTPClient("127.0.0.1", server.port, timeout=TIMEOUT)
        match = SMTP_LINE if endless == "line" else SMTP_LINES
        assert _timed(lambda: client.connect(tls_context=_insecure()), SMTPProtocolError,
                      match) < FAST
        assert client.tls is not None
        client.close()


def test_smtp_client_stops_a_trickling_line_at_the_reply_deadline() -> None:
    with hostile(trickle(b"220 ")) as server:
        client = SMTPClient("127.0.0.1", server.port, timeout=1.0)
        elapsed = _timed(client.connect, SMTPTimeout, "no complete reply")
        assert 0.9 <= elapsed < 1.0 + FAST
        client.close()


# -- what the checks report ------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "check", "script", "words"),
    [
        ("ftps", "banner", endless_line(b"220-"), FTP_LINE),
        ("ftps", "banner", endless_lines(b"220-a\r\n", b" b\r\n"), FTP_LINES),
        ("smtp", "smtp-banner", endless_line(b"220 "), SMTP_LINE),
        ("smtp", "ehlo", endless_lines(b"220 mx\r\n", b"250-X\r\n", b"250-mx\r\n"),
         SMTP_LINES),
    ],
    ids=["ftps-line", "ftps-lines", "smtp-line", "smtp-ehlo-lines"],
)
def test_checks_report_the_limit_as_a_malformed_reply(
    protocol: str, check: str, script: Script, words: str
) -> None:
    with hostile(script) as server:
        target = Target(name="hostile", protocol=protocol, host="127.0.0.1", port=server.port,
                        trust=Trust(insecure=True), timeout=TIMEOUT)
        start = time.monotonic()
        result = run_check(check, target, {})
        assert time.monotonic() - start < FAST + 2.0  # QUIT on a garbled session included
    assert result.status.value == "error", result.describe()
    assert "malformed reply" in result.summary and words in result.summary, result.describe()
    assert "internal error" not in result.summary

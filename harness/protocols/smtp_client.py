"""A small SMTP client over raw sockets that records a redacted transcript.

Own driver instead of ``smtplib`` because the checks need exact control of the bytes
(``STARTTLS`` and ``NOOP`` in one write for the injection test, no automatic EHLO after
STARTTLS for the state-reset test, reading replies nobody asked for) and every line must
pass through :class:`~harness.transcript.Transcript` before anything else sees it.
Every socket operation is bounded by ``timeout``.
"""

from __future__ import annotations

import socket
import ssl
import time

from harness.protocols.linechannel import LineChannel
from harness.protocols.smtp import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    Ehlo,
    Reply,
    ReplyParser,
    SMTPProtocolError,
    auth_login_value,
    auth_plain_response,
    command_line,
    dot_stuff,
    parse_ehlo,
)
from harness.protocols.tls import TLSFacts, Trust
from harness.transcript import Transcript

DEFAULT_HELO = "probe.ftps-lab.test"


class SMTPDriverError(Exception):
    """The session broke before the step finished (closed, timed out, garbled)."""


class SMTPTimeout(SMTPDriverError):
    """No (complete) reply within the timeout."""


class SMTPClosed(SMTPDriverError):
    """The server closed the connection."""


class SMTPClient(LineChannel):
    """One SMTP session: connect, commands, STARTTLS / implicit TLS, AUTH, DATA."""

    timeout_error = SMTPTimeout
    closed_error = SMTPClosed
    protocol_error = SMTPProtocolError

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        transcript: Transcript | None = None,
        helo_name: str = DEFAULT_HELO,
        max_line: int = MAX_REPLY_LINE,
        max_lines: int = MAX_REPLY_LINES,
    ) -> None:
        super().__init__(timeout, transcript, max_line)
        self.host = host
        self.port = port
        self.helo_name = helo_name
        self.max_lines = max_lines
        self.ehlo_info: Ehlo | None = None

    # -- connection ---------------------------------------------------------------

    def connect(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        trust: Trust | None = None,
    ) -> Reply:
        """Open the TCP connection (and the implicit TLS handshake) and read the banner."""
        self.transcript.note(f"connect {self.host}:{self.port}")
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError as exc:
            raise SMTPTimeout(f"connect to {self.host}:{self.port} timed out") from exc
        if tls_context is not None:
            self.handshake(tls_context, server_hostname, trust=trust)
        return self.read_reply()

    def handshake(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        *,
        trust: Trust | None = None,
    ) -> TLSFacts:
        """Run the TLS handshake on the current socket; check a pin when ``trust`` has one.

        Plaintext bytes still buffered at this point came before the handshake: they
        are dropped (and noted), as RFC 3207 requires of a client.
        """
        return self._upgrade_tls(context, server_hostname, trust, "TLS handshake")

    # -- raw I/O ------------------------------------------------------------------

    def send_raw(self, data: bytes, *, record: str | None = None) -> None:
        """Write bytes as they are; ``record`` replaces them in the transcript."""
        if record is not None:
            self.transcript.sent(record)
        else:
            for line in data.decode("utf-8", errors="replace").splitlines() or [""]:
                self.transcript.sent(line)
        self._write(data)

    def send_line(self, line: str, *, secret: bool = False, label: str = "") -> None:
        """Send one command line; a ``secret`` line is recorded only as ``label ********``."""
        data = command_line([line])
        if secret:
            self.transcript.sent_secret(label)
            self._write(data)
            return
        self.send_raw(data, record=line)

    def read_reply(self, timeout: float | None = None) -> Reply:
        """Read one complete reply; the whole reply must arrive within the timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parser = ReplyParser(max_line=self.max_line, max_lines=self.max_lines)
        while True:
            raw = self._readline(deadline)
            self.transcript.received(raw.decode("utf-8", errors="replace"))
            reply = parser.feed(raw)
            if reply is not None:
                return reply

    def poll_reply(self, wait: float) -> Reply | None:
        """A reply that arrives within ``wait`` seconds without being asked for, or None."""
        if not self._buffer:
            try:
                self._fill(time.monotonic() + wait)
            except SMTPTimeout:
                return None
        return self.read_reply()

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet consumed as a reply."""
        return len(self._buffer)

    # -- commands -----------------------------------------------------------------

    def command(self, line: str, *, secret: bool = False, label: str = "") -> Reply:
        self.send_line(line, secret=secret, label=label)
        return self.read_reply()

    def ehlo(self, name: str | None = None) -> Reply:
        """EHLO; a 250 reply is parsed into :attr:`ehlo_info`."""
        reply = self.command(f"EHLO {name or self.helo_name}")
        self.ehlo_info = parse_ehlo(reply) if reply.code == 250 else None
        return reply

    def starttls(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        *,
        trust: Trust | None = None,
    ) -> Reply:
        """STARTTLS; on 220 run the handshake (and forget the pre-TLS EHLO)."""
        reply = self.command("STARTTLS")
        if reply.code == 220:
            self.ehlo_info = None
            self.handshake(context, server_hostname, trust=trust)
        return reply

    def auth_plain(self, user: str, password: str, *, authzid: str = "") -> Reply:
        """AUTH PLAIN with the RFC 4616 initial response (one round trip)."""
        blob = auth_plain_response(user, password, authzid)
        self.transcript.add_secret(password)
        self.transcript.add_secret(blob)
        return self.command(f"AUTH PLAIN {blob}", secret=True, label="AUTH PLAIN")

    def auth_login(self, user: str, password: str) -> Reply:
        """AUTH LOGIN: user name and password each answer a 334 challenge."""
        self.transcript.add_secret(password)
        reply = self.command("AUTH LOGIN")
        if reply.code != 334:
            return reply
        reply = self.command(auth_login_value(user))
        if reply.code != 334:
            return reply
        return self.command(auth_login_value(password), secret=True, label="(password)")

    def mail(self, sender: str, params: str = "") -> Reply:
        return self.command(f"MAIL FROM:<{sender}>{' ' + params if params else ''}")

    def rcpt(self, recipient: str) -> Reply:
        return self.command(f"RCPT TO:<{recipient}>")

    def data(self, message: bytes) -> Reply:
        """DATA: on 354 send the dot-stuffed message and return the final reply."""
        reply = self.command("DATA")
        if reply.code != 354:
            return reply
        payload = dot_stuff(message)
        self.send_raw(payload, record=f"(message, {len(payload)} octets)")
        return self.read_reply()

    def rset(self) -> Reply:
        return self.command("RSET")

    def noop(self) -> Reply:
        return self.command("NOOP")

    def quit(self, timeout: float = 2.0) -> None:
        """QUIT politely if the session still stands; never raises, waits briefly."""
        if self.sock is None:
            return
        try:
            self.send_line("QUIT")
            self.read_reply(timeout=min(self.timeout, timeout))
        except (SMTPDriverError, SMTPProtocolError, OSError):
            pass

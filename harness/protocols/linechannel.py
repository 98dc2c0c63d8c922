"""The control connection FTP and SMTP clients share: CRLF lines, deadlines, TLS in place.

Both protocols read bounded reply lines from one socket, where the whole reply must arrive
before a deadline, and both upgrade that socket to TLS mid-session (AUTH TLS, STARTTLS) or
from the first byte (implicit TLS). This class owns that plumbing; the protocol clients
add their commands, their reply parsers and their own exception types.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from types import TracebackType
from typing import ClassVar, TypeVar

from harness.protocols.tls import TLSFacts, Trust, facts_of
from harness.transcript import Transcript

_Channel = TypeVar("_Channel", bound="LineChannel")


class LineChannel:
    """Socket I/O for a line-based control connection.

    Subclasses set the three exception types and may override the ``*_text`` methods that
    word errors for their transcripts and results.
    """

    timeout_error: ClassVar[type[Exception]] = TimeoutError
    closed_error: ClassVar[type[Exception]] = ConnectionError
    protocol_error: ClassVar[type[Exception]] = ValueError

    def __init__(self, timeout: float, transcript: Transcript | None, max_line: int) -> None:
        self.timeout = timeout
        self.transcript = transcript if transcript is not None else Transcript()
        self.max_line = max_line
        self.sock: socket.socket | None = None
        self.tls: TLSFacts | None = None
        self._buffer = bytearray()

    # -- wording, per protocol ----------------------------------------------------------

    def io_error_text(self, exc: OSError) -> str:
        """How a failed send or receive is described."""
        return str(exc)

    def tls_read_error_text(self, exc: ssl.SSLError) -> str:
        """How a TLS error while reading is described."""
        return str(exc)

    def handshake_failure_text(self, exc: OSError) -> str:
        """How a failed TLS handshake is noted in the transcript."""
        return str(exc)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __enter__(self: _Channel) -> _Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _upgrade_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        trust: Trust | None,
        note: str,
    ) -> TLSFacts:
        """Run the TLS handshake on the current socket; check a pin when ``trust`` has one.

        Plaintext bytes still buffered at this point came before the handshake: they are
        dropped (and noted), as RFC 3207 and RFC 4217 require of a client.
        """
        sock = self._require()
        if self._buffer:
            self.transcript.note(f"discarding {len(self._buffer)} plaintext bytes before TLS")
            self._buffer.clear()
        self.transcript.note(note)
        wrapped = context.wrap_socket(
            sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        self.sock = wrapped
        wrapped.settimeout(self.timeout)
        try:
            wrapped.do_handshake()
        except TimeoutError as exc:
            self.transcript.note("TLS handshake timed out")
            raise self.timeout_error("TLS handshake timed out") from exc
        except OSError as exc:  # ssl.SSLError included
            self.transcript.note(f"TLS handshake failed: {self.handshake_failure_text(exc)}")
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                # A server that closes right after its "go ahead" meets our ClientHello
                # with a reset or an EOF, whichever the race gives: one meaning, one error.
                raise ssl.SSLEOFError(
                    ssl.SSL_ERROR_EOF, "connection reset by peer"
                ) from exc
            raise
        facts = facts_of(wrapped)
        self.tls = facts
        self.transcript.note(
            f"TLS {facts.version} {facts.cipher} certificate sha256 {facts.fingerprint}"
        )
        if trust is not None:
            trust.verify_pin(facts.peer_der)
        return facts

    # -- raw I/O ------------------------------------------------------------------------

    def _require(self) -> socket.socket:
        if self.sock is None:
            raise self.closed_error("not connected")
        return self.sock

    def _write(self, data: bytes) -> None:
        sock = self._require()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(data)
        except TimeoutError as exc:
            raise self.timeout_error("send timed out") from exc
        except OSError as exc:
            raise self.closed_error(f"send failed: {self.io_error_text(exc)}") from exc

    def _fill(self, deadline: float) -> None:
        sock = self._require()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self.timeout_error("no complete reply before the timeout")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError as exc:
            raise self.timeout_error("no complete reply before the timeout") from exc
        except ssl.SSLError as exc:
            raise self.closed_error(
                f"TLS error while reading: {self.tls_read_error_text(exc)}"
            ) from exc
        except OSError as exc:
            raise self.closed_error(f"read failed: {self.io_error_text(exc)}") from exc
        if not chunk:
            self.transcript.note("connection closed by server")
            raise self.closed_error("connection closed by server")
        self._buffer += chunk

    def _readline(self, deadline: float) -> bytes:
        """One line (with its LF), within ``deadline``; an endless line is dropped."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > self.max_line:
                # Drop what we hold: an endless line must not grow memory or the transcript.
                head = bytes(self._buffer[:200]).rstrip(b"\r\n").decode("utf-8", "replace")
                self.transcript.received(f"{head}... ({len(self._buffer)} octets, no end)")
                self._buffer.clear()
                raise self.protocol_error(f"reply line longer than {self.max_line} octets")
            self._fill(deadline)

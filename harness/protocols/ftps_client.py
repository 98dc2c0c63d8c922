"""An FTPS client over raw sockets that records a redacted transcript.

Own driver instead of ``ftplib.FTP_TLS`` because the checks need what ftplib hides or
gets wrong: data connections that resume the control session (ftplib does not,
CPython #63699, so vsftpd answers ``522`` and FileZilla Server ``425``), the address a
PASV reply announced (ftplib connects to it, which is wrong behind NAT and a way for a
hostile server to aim us elsewhere), per-connection TLS facts, bounded replies, and
transfers that stream with a SHA-256 and an overall deadline. Every socket operation
is bounded by ``timeout``; the password is registered with the transcript and is never
part of a log line or an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from harness.protocols.ftp import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    Features,
    FTPProtocolError,
    Reply,
    ReplyParser,
    command_line,
    decode_line,
    parse_epsv,
    parse_feat,
    parse_pasv,
)
from harness.protocols.linechannel import LineChannel
from harness.protocols.tls import TLSFacts, Trust, explain_tls_failure, facts_of
from harness.transcript import Transcript

CHUNK = 256 * 1024
"""Transfer chunk size: large enough for throughput, small enough to never hold a file."""
MAX_LISTING = 1024 * 1024
"""LIST/NLST output kept in memory; the rest is counted and hashed, not stored."""


class FTPDriverError(Exception):
    """The session broke before the step finished (closed, timed out, garbled)."""


class FTPTimeout(FTPDriverError):
    """No (complete) reply, or no progress, within the timeout."""


class FTPConnectTimeout(FTPTimeout):
    """The TCP connection itself was not established in time."""


class FTPClosed(FTPDriverError):
    """The server closed the control connection."""


class FTPControlLost(FTPClosed):
    """The control connection was closed while a data command was under way.

    The message says at which stage (before the reply, mid-transfer after 150); the
    unfinished :class:`Transfer` is attached, so a check can still judge what moved.
    """

    def __init__(self, message: str, transfer: Transfer) -> None:
        super().__init__(message)
        self.transfer = transfer


@dataclass(frozen=True)
class Passive:
    """Where a PASV/EPSV reply told us to connect, and where we actually connect.

    ``announced_host`` is None for EPSV (it carries only a port). The data connection
    always goes to ``connect_host``, the address of the control connection's peer.
    """

    command: str
    reply: Reply
    announced_host: str | None
    port: int
    connect_host: str

    @property
    def announced_matches(self) -> bool:
        return self.announced_host is None or self.announced_host == self.connect_host

    def to_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "announced_host": self.announced_host,
            "port": self.port,
            "connected_to": self.connect_host,
        }


@dataclass
class Transfer:
    """One data-channel command from PASV/EPSV to the final reply."""

    command: str
    setup: Reply | None = None  # the PASV/EPSV reply
    passive: Passive | None = None
    preliminary: Reply | None = None  # 125/150, or the refusal of the command
    final: Reply | None = None  # 226/250 or an error
    size: int = 0
    sha256: str = ""
    data: bytes = field(default=b"", repr=False)
    truncated: bool = False
    protected: bool = False
    tls: TLSFacts | None = None
    reuse_offered: bool = False
    error: str | None = None
    tls_shutdown: str = "not applicable"
    duration: float = 0.0
    stall: str = ""  # set when the data connection was open but nothing moved in time
    control_lost: str = ""  # set when the server closed the control connection meanwhile

    @property
    def session_reused(self) -> bool | None:
        return self.tls.session_reused if self.tls is not None else None

    @property
    def started(self) -> bool:
        """The server accepted the command (125/150) and a data connection was open."""
        return self.preliminary is not None and self.preliminary.preliminary

    @property
    def ok(self) -> bool:
        return self.error is None and self.final is not None and self.final.code in (226, 250)

    @property
    def replies(self) -> list[Reply]:
        found = [self.setup, self.preliminary, self.final]
        out: list[Reply] = []
        for reply in found:
            if reply is not None and (not out or reply is not out[-1]):
                out.append(reply)
        return out

    @property
    def refusal(self) -> Reply | None:
        """The negative reply that ended this transfer, if any."""
        for reply in self.replies:
            if reply.negative:
                return reply
        return None

    @property
    def stalled(self) -> bool:
        return bool(self.stall)

    @property
    def diagnosis(self) -> str:
        """Like :meth:`describe`, but a stall or a lost control connection comes first:
        the 426 a server sends after the client gave up is a consequence, not the fault."""
        if self.control_lost:
            return self.control_lost
        if self.stall:
            after = f"; then the server answered {self.final.first}" if self.final else ""
            return f"{self.command}: {self.stall}{after}"
        return self.describe()

    def describe(self) -> str:
        parts = [self.command]
        if self.refusal is not None:
            parts.append(f"refused: {self.refusal.first}")
        elif self.final is not None:
            parts.append(self.final.first)
        if self.error:
            parts.append(f"error: {self.error}")
        return " -> ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "passive": self.passive.to_dict() if self.passive else None,
            "replies": [line for reply in self.replies for line in reply.wire_lines],
            "bytes": self.size,
            "sha256": self.sha256,
            "protected": self.protected,
            "tls_version": self.tls.version if self.tls else None,
            "session_reuse_offered": self.reuse_offered,
            "session_reused": self.session_reused,
            "tls_shutdown": self.tls_shutdown,
            "error": self.error,
            "stall": self.stall or None,
            "control_lost": self.control_lost or None,
            "seconds": round(self.duration, 3),
        }


def random_chunks(size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """``size`` random bytes in chunks, never all in memory at once."""
    left = size
    while left > 0:
        piece = min(chunk, left)
        yield os.urandom(piece)
        left -= piece


def _no_delay(sock: socket.socket) -> None:
    """Send small writes at once: with Nagle, the close_notify after an upload waits for
    the peer's delayed ACK (40 ms on Linux) on every single transfer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class FTPSClient(LineChannel):
    """One FTP(S) control session and its data connections.

    ``context`` is used for the control connection and every data connection (a TLS
    session can only be resumed through the context that made it). ``trust`` is only
    consulted for its SHA-256 pin, which is checked after each control handshake.
    """

    timeout_error = FTPTimeout
    closed_error = FTPClosed
    protocol_error = FTPProtocolError

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        trust: Trust | None = None,
        implicit: bool = False,
        timeout: float = 10.0,
        transfer_timeout: float | None = None,
        reuse_session: bool = True,
        transcript: Transcript | None = None,
        max_line: int = MAX_REPLY_LINE,
        max_lines: int = MAX_REPLY_LINES,
    ) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.server_name = server_name or host
        self.trust = trust
        self.implicit = implicit
        super().__init__(timeout, transcript, max_line)
        self.transfer_timeout = transfer_timeout or max(60.0, timeout * 6)
        self.reuse_session = reuse_session
        self.max_lines = max_lines
        self.features: Features | None = None
        self.protected = False  # PROT P in force
        self.peer_ip: str | None = None
        self.transfers: list[Transfer] = []

    # -- connection ---------------------------------------------------------------

    def connect(self) -> Reply:
        """TCP connect (plus the TLS handshake when implicit) and read the banner."""
        self.transcript.note(f"connect {self.host}:{self.port}")
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError as exc:
            raise FTPConnectTimeout(
                f"connect to {self.host}:{self.port} timed out after {self.timeout:g} s"
            ) from exc
        _no_delay(self.sock)
        self.peer_ip = str(self.sock.getpeername()[0])
        if self.implicit:
            self.handshake()
        return self.read_reply()

    def _context(self) -> ssl.SSLContext:
        if self.context is None:
            raise FTPDriverError("no TLS context given to the FTPS client")
        return self.context

    def handshake(self) -> TLSFacts:
        """TLS on the control connection; plaintext left in the buffer is dropped."""
        return self._upgrade_tls(
            self._context(),
            self.server_name,
            self.trust,
            f"TLS handshake (server name {self.server_name})",
        )

    @property
    def secure(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    # -- control channel I/O -------------------------------------------------------

    def io_error_text(self, exc: OSError) -> str:
        return _describe(exc)

    def tls_read_error_text(self, exc: ssl.SSLError) -> str:
        return str(exc.reason or exc)

    def handshake_failure_text(self, exc: OSError) -> str:
        return explain_tls_failure(exc)

    def send_line(self, line: str, *, secret: bool = False, label: str = "") -> None:
        """Send one command; a ``secret`` line is recorded only as ``label ********``."""
        data = command_line(line)
        if secret:
            self.transcript.sent_secret(label)
        else:
            self.transcript.sent(line)
        self._write(data)

    def read_reply(self, timeout: float | None = None) -> Reply:
        """Read one complete reply; all of it must arrive within the timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parser = ReplyParser(max_line=self.max_line, max_lines=self.max_lines)
        while True:
            raw = self._readline(deadline)
            self.transcript.received(decode_line(raw)[: self.max_line])
            reply = parser.feed(raw)
            if reply is not None:
                return reply

    def command(self, line: str, *, secret: bool = False, label: str = "") -> Reply:
        self.send_line(line, secret=secret, label=label)
        return self.read_reply()

    # -- commands -----------------------------------------------------------------

    def feat(self) -> Reply:
        """FEAT; the listed features land in :attr:`features`."""
        reply = self.command("FEAT")
        self.features = parse_feat(reply)
        return reply

    def auth_tls(self) -> Reply:
        """AUTH TLS; on 234 run the handshake (the caller reads the next reply)."""
        reply = self.command("AUTH TLS")
        if reply.code == 234:
            self.handshake()
        return reply

    def pbsz(self, size: int = 0) -> Reply:
        return self.command(f"PBSZ {size}")

    def prot(self, level: str = "P") -> Reply:
        reply = self.command(f"PROT {level}")
        if reply.code == 200:
            self.protected = level.upper() == "P"
        return reply

    def user(self, name: str) -> Reply:
        return self.command(f"USER {name}")

    def password(self, secret: str) -> Reply:
        self.transcript.add_secret(secret)
        return self.command(f"PASS {secret}", secret=True, label="PASS")

    def login(self, name: str, secret: str) -> tuple[Reply, Reply | None]:
        """USER then (on 331/332) PASS; returns both replies (PASS None if not sent)."""
        self.transcript.add_secret(secret)
        first = self.user(name)
        if first.code not in (331, 332):
            return first, None
        return first, self.password(secret)

    def type_binary(self) -> Reply:
        return self.command("TYPE I")

    def dele(self, name: str) -> Reply:
        return self.command(f"DELE {name}")

    def quit(self) -> Reply:
        return self.command("QUIT")

    def quit_quietly(self, timeout: float = 2.0) -> None:
        """QUIT if the session still stands; never raises, waits briefly."""
        if self.sock is None:
            return
        try:
            self.send_line("QUIT")
            self.read_reply(timeout=min(self.timeout, timeout))
        except (FTPDriverError, FTPProtocolError, OSError):
            pass

    def shutdown_tls(self, timeout: float | None = None) -> str:
        """Close the control connection with a TLS close_notify exchange.

        Returns ``clean`` when both sides sent close_notify, else what happened. Used
        after QUIT/221: the server may already have closed, which is reported, not raised.
        """
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            self.close()
            return "no TLS"
        sock.settimeout(timeout if timeout is not None else min(self.timeout, 3.0))
        try:
            plain = sock.unwrap()
        except (OSError, ValueError) as exc:
            outcome = f"no close_notify exchange: {_describe(exc)}"
        else:
            outcome = "clean"
            self.sock = plain
        self.transcript.note(f"control TLS shutdown: {outcome}")
        self.close()
        return outcome

    # -- passive mode and data connections -------------------------------------------

    def passive(self, command: str = "PASV") -> tuple[Reply, Passive | None]:
        """PASV or EPSV; the endpoint is None when the server refused or garbled it."""
        if command not in ("PASV", "EPSV"):
            raise ValueError(f"passive mode must be PASV or EPSV, not {command!r}")
        reply = self.command(command)
        if reply.code not in (227, 229):
            return reply, None
        if self.peer_ip is None:
            raise FTPClosed("not connected")
        try:
            if command == "PASV":
                announced, port = parse_pasv(reply)
            else:
                announced, port = None, parse_epsv(reply)
        except FTPProtocolError as exc:
            self.transcript.note(f"unusable {command} reply: {exc}")
            return reply, None
        endpoint = Passive(command, reply, announced, port, self.peer_ip)
        if announced is not None and announced != self.peer_ip:
            self.transcript.note(
                f"PASV announced {announced}:{port}; connecting to {self.peer_ip}:{port} instead"
            )
        return reply, endpoint

    def _data_socket(self, endpoint: Passive, deadline: float) -> socket.socket:
        timeout = max(0.001, min(self.timeout, deadline - time.monotonic()))
        self.transcript.note(f"data connection to {endpoint.connect_host}:{endpoint.port}")
        sock = socket.create_connection((endpoint.connect_host, endpoint.port), timeout=timeout)
        _no_delay(sock)
        return sock

    def _wrap_data(self, raw: socket.socket, record: Transfer) -> ssl.SSLSocket:
        control = self._require()
        session = None
        if self.reuse_session and isinstance(control, ssl.SSLSocket):
            session = control.session
            if (
                session is not None
                and not session.has_ticket
                and self.tls
                and (self.tls.version == "TLSv1.3")
            ):
                self.transcript.note("TLS 1.3 control session has no ticket yet")
        record.reuse_offered = session is not None
        timeout = raw.gettimeout()
        # Ragged EOFs raise, so a download can tell close_notify from a cut connection.
        sock = self._context().wrap_socket(
            raw,
            server_hostname=self.server_name,
            session=session,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
        sock.settimeout(timeout)
        try:
            sock.do_handshake()
        except TimeoutError:
            sock.close()
            record.stall = (
                f"data channel stalled: the server accepted the data connection "
                f"but did not complete the TLS handshake within {timeout:g} s"
            )
            raise
        except BaseException:
            sock.close()
            raise
        record.tls = facts_of(sock)
        self.transcript.note(
            f"data TLS {record.tls.version} {record.tls.cipher} "
            f"session reuse offered={record.reuse_offered} reused={record.tls.session_reused}"
        )
        return sock

    def transfer(
        self,
        command: str,
        *,
        mode: str = "PASV",
        upload: Iterable[bytes] | None = None,
        sink: Callable[[bytes], None] | None = None,
        keep: int = 0,
    ) -> Transfer:
        """Run one data command (LIST, NLST, RETR, STOR...) through a passive connection.

        Downloads are hashed as they arrive, passed to ``sink`` and (up to ``keep``
        bytes) kept; ``upload`` chunks are hashed as they are sent. The data phase has
        an overall deadline of ``transfer_timeout``. Data-channel failures are recorded
        in the result and the server's final reply is still read.
        """
        start = time.monotonic()
        deadline = start + self.transfer_timeout
        record = Transfer(command=command, protected=self.protected)
        self.transfers.append(record)
        try:
            self._run_transfer(record, mode, upload, sink, keep, deadline)
        except FTPClosed as exc:
            raise self._control_lost(record, exc) from exc
        finally:
            record.duration = time.monotonic() - start
        return record

    def _control_lost(self, record: Transfer, exc: FTPClosed) -> FTPControlLost:
        """Name the stage at which the server dropped the control connection."""
        if record.setup is None:
            stage = f"at {record.command.split()[0]}'s PASV/EPSV, before the transfer"
        elif record.preliminary is None:
            stage = f"after {record.command} was sent, before any reply"
        elif record.preliminary.preliminary:
            moved = ""
            if record.size:
                upload = record.command.startswith(("STOR", "APPE", "STOU"))
                moved = f", {record.size} bytes {'sent' if upload else 'received'}"
            stage = (
                f"mid-transfer: after {record.preliminary.code} to {record.command}"
                f"{moved}, no final reply"
            )
        else:
            stage = f"after {record.preliminary.code} to {record.command}"
        note = f"control connection dropped by the server {stage} ({exc})"
        record.control_lost = note
        record.error = f"{note}; {record.error}" if record.error else note
        self.transcript.note(note)
        return FTPControlLost(note, record)

    def _run_transfer(
        self,
        record: Transfer,
        mode: str,
        upload: Iterable[bytes] | None,
        sink: Callable[[bytes], None] | None,
        keep: int,
        deadline: float,
    ) -> None:
        record.setup, endpoint = self.passive(mode)
        record.passive = endpoint
        if endpoint is None:
            if not record.setup.negative:
                record.error = f"{mode} answered {record.setup.code} without a usable port"
            return
        try:
            raw = self._data_socket(endpoint, deadline)
        except OSError as exc:
            where = f"{endpoint.connect_host}:{endpoint.port}"
            record.error = f"data connection to {where} failed: {_describe(exc)}"
            self.transcript.note(record.error)
            return
        data_sock: socket.socket = raw
        try:
            record.preliminary = self.command(record.command)
            if not record.preliminary.preliminary:
                record.final = record.preliminary  # refused (or done) without a 1xx
                return
            if self.protected:
                try:
                    data_sock = self._wrap_data(raw, record)
                except (OSError, ValueError) as exc:
                    record.error = record.stall or (
                        f"data TLS handshake failed: {explain_tls_failure(exc)}"
                    )
                    self.transcript.note(record.error)
                    data_sock = raw
            if record.error is None:
                self._stream(data_sock, record, upload, sink, keep, deadline)
        finally:
            with contextlib.suppress(OSError):
                data_sock.close()
        if record.preliminary is not None and record.preliminary.preliminary:
            self._final_reply(record, deadline)

    def _stream(
        self,
        sock: socket.socket,
        record: Transfer,
        upload: Iterable[bytes] | None,
        sink: Callable[[bytes], None] | None,
        keep: int,
        deadline: float,
    ) -> None:
        digest = hashlib.sha256()
        kept = bytearray()
        peer_closed = False
        ragged = False
        try:
            if upload is not None:
                for chunk in upload:
                    self._step_timeout(sock, deadline)
                    sock.sendall(chunk)
                    digest.update(chunk)
                    record.size += len(chunk)
            else:
                while True:
                    self._step_timeout(sock, deadline)
                    try:
                        chunk = sock.recv(CHUNK)
                    except ssl.SSLEOFError:
                        ragged = True
                        break
                    if not chunk:
                        peer_closed = True
                        break
                    digest.update(chunk)
                    record.size += len(chunk)
                    if sink is not None:
                        sink(chunk)
                    if len(kept) < keep:
                        kept += chunk[: keep - len(kept)]
        except (OSError, ValueError) as exc:
            reason = _describe(exc)
            if isinstance(exc, TimeoutError) and time.monotonic() >= deadline - 0.01:
                reason = f"transfer deadline of {self.transfer_timeout:g} s exceeded"
                record.error = f"data transfer failed after {record.size} bytes: {reason}"
            elif isinstance(exc, TimeoutError):
                waited = sock.gettimeout() or self.timeout
                if upload is not None:
                    what = f"stopped reading for {waited:g} s after {record.size} bytes sent"
                elif record.size:
                    what = f"stopped sending for {waited:g} s after {record.size} bytes"
                else:
                    what = f"accepted the data connection but sent nothing for {waited:g} s"
                record.stall = f"data channel stalled: the server {what}"
                record.error = record.stall
            else:
                record.error = f"data transfer failed after {record.size} bytes: {reason}"
            self.transcript.note(record.error)
        record.sha256 = digest.hexdigest()
        record.data = bytes(kept)
        record.truncated = keep > 0 and record.size > len(kept)
        direction = "sent" if upload is not None else "received"
        self.transcript.note(f"{direction} {record.size} bytes sha256 {record.sha256}")
        if not isinstance(sock, ssl.SSLSocket):
            return
        if ragged:
            record.tls_shutdown = "server closed the data connection without close_notify"
            self.transcript.note(f"data TLS shutdown: {record.tls_shutdown}")
        elif record.error is None:
            record.tls_shutdown = self._shutdown_data(sock, deadline, peer_closed)

    def _step_timeout(self, sock: socket.socket, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"transfer deadline of {self.transfer_timeout:g} s exceeded")
        sock.settimeout(min(self.timeout, remaining))

    def _shutdown_data(self, sock: ssl.SSLSocket, deadline: float, peer_closed: bool) -> str:
        """close_notify both ways. After a download the server has sent its own already,
        so a failure to deliver ours (it may have closed TCP) does not make it unclean."""
        try:
            self._step_timeout(sock, deadline)
            sock.unwrap()
        except (OSError, ValueError) as exc:
            outcome = "clean" if peer_closed else f"no close_notify from server: {_describe(exc)}"
        else:
            outcome = "clean"
        self.transcript.note(f"data TLS shutdown: {outcome}")
        return outcome

    def _final_reply(self, record: Transfer, deadline: float) -> None:
        wait = max(self.timeout, min(self.transfer_timeout, deadline - time.monotonic()))
        try:
            record.final = self.read_reply(timeout=wait)
        except (FTPDriverError, FTPProtocolError) as exc:
            note = f"no final reply: {exc}"
            record.error = f"{record.error}; {note}" if record.error else note
            self.transcript.note(note)
            if isinstance(exc, FTPClosed):
                raise

    # -- transfer commands --------------------------------------------------------------

    def list(self, path: str = "", *, mode: str = "PASV", command: str = "LIST") -> Transfer:
        line = f"{command} {path}".rstrip()
        return self.transfer(line, mode=mode, keep=MAX_LISTING)

    def nlst(self, path: str = "", *, mode: str = "PASV") -> Transfer:
        return self.list(path, mode=mode, command="NLST")

    def stor(self, name: str, chunks: Iterable[bytes], *, mode: str = "PASV") -> Transfer:
        return self.transfer(f"STOR {name}", mode=mode, upload=chunks)

    def retr(
        self, name: str, *, mode: str = "PASV", sink: Callable[[bytes], None] | None = None
    ) -> Transfer:
        return self.transfer(f"RETR {name}", mode=mode, sink=sink)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

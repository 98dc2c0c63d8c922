"""pyftpdlib handler subclasses that give the lab server its FTPS behaviour.

What stock pyftpdlib 2.2 lacks, and is added here:

* implicit FTPS (TLS from the first byte, the IIS port-990 mode, pyftpdlib issue #160):
  the control connection is wrapped at accept and the 220 banner waits for the handshake;
* required TLS session reuse on the data channel (vsftpd ``require_ssl_reuse=YES``):
  a data connection that did not resume the control session is closed and answered
  ``522`` on the control connection, like vsftpd, and not one byte of the transfer is
  written to it before that verdict, whichever comes first, the data command or the
  handshake;
* a TLS session bound to its control connection: each control connection gets its own
  SSL context (own session cache, ticket keys and session id context), and its data
  connections are handshaken through it, so only that connection's sessions resume;
* passive-range exhaustion as an error (``425``) instead of a silent random port;
* PROT C refused at transfer time too, not only at PASV/PORT;
* deliberate faults, each switched on per server: no banner, the control connection
  dropped once data flows, a data channel that stalls, AUTH TLS refused.

The policy lives in small methods (``control_refusal``, ``data_refusal``,
``data_session_refusal``, ``passive_unavailable_reply``) so fault servers can override
one decision without copying pyftpdlib code. Every instance-specific value (context,
authorizer, flags, the owning server) is a class attribute of a per-server subclass
made by :class:`harness.lab.ftps.FTPSLabServer`, never of these shared classes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from OpenSSL import SSL
from OpenSSL._util import lib as _openssl_lib
from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP
from pyftpdlib.log import logger

REUSE_REQUIRED_REPLY = "522 SSL connection failed; session reuse required"
UNCLEAN_UPLOAD_REPLY = (
    "426 Data connection closed without TLS close_notify; upload may be truncated."
)
HANDSHAKE_UNFINISHED_REPLY = (
    "426 Data connection closed before its TLS handshake finished; transfer aborted."
)
PASSIVE_EXHAUSTED_REPLY = "425 No passive port available."
CONTROL_TLS_REQUIRED_REPLY = "550 SSL/TLS required on the control channel."
DATA_TLS_REQUIRED_REPLY = "550 SSL/TLS required on the data channel."
PROT_C_TRANSFER_REPLY = "521 Data connection cannot be opened with this PROT setting."

_DATA_SETUP_COMMANDS = frozenset({"PASV", "EPSV", "PORT", "EPRT"})
_TRANSFER_COMMANDS = frozenset({"RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"})
_ANONYMOUS_NAMES = frozenset({"anonymous", "ftp"})


class LabSink(Protocol):
    """What the handlers report to the server object that owns them."""

    def record_error(self, text: str) -> None: ...

    def record_tls_failure(self, text: str) -> None: ...

    def record_data_handshake(self, handshake: DataHandshake) -> None: ...


@dataclass(frozen=True)
class DataHandshake:
    """One completed TLS handshake on a data connection, as the server saw it."""

    tls_version: str
    session_reused: bool
    refused: bool


def session_reused(conn: SSL.Connection) -> bool:
    """Whether this server-side connection resumed an earlier TLS session.

    pyOpenSSL has no public API for it; ``SSL_session_reused`` is bound in its
    cffi library and covers TLS 1.2 session IDs/tickets and TLS 1.3 PSK resumption.
    """
    return bool(_openssl_lib.SSL_session_reused(conn._ssl))


class LabAuthorizer(DummyAuthorizer):  # type: ignore[misc]
    """Virtual users with a constant-time password check and no anonymous access.

    ``DummyAuthorizer`` skips the password for a user named ``anonymous``; here no
    name is special and a missing user fails like a wrong password.
    """

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        entry = self.user_table.get(username)
        if entry is None or username.lower() in _ANONYMOUS_NAMES:
            raise AuthenticationFailed("Authentication failed.")
        if not hmac.compare_digest(str(entry["pwd"]).encode(), password.encode()):
            raise AuthenticationFailed("Authentication failed.")


class PassivePortsExhausted(OSError):
    """No port of the configured passive range could be bound."""


class LabPassiveDTP(PassiveDTP):  # type: ignore[misc]
    """PassiveDTP that refuses to fall back to a kernel-chosen port.

    pyftpdlib binds port 0 (with only a log warning) when the whole range is busy, and
    listens on an unbound socket when every port gave EPERM; both end up here.
    """

    def listen(self, num: int) -> None:
        ports = self.cmd_channel.passive_ports
        if ports is not None:
            port = self.socket.getsockname()[1]
            if port not in ports:
                self.close()
                raise PassivePortsExhausted(f"no free port in passive range {ports[0]}-{ports[-1]}")
        super().listen(num)


class _LabControl:
    """Control-channel behaviour shared by the plain and the TLS handler."""

    lab: ClassVar[LabSink]
    no_banner: ClassVar[bool] = False
    drop_control_during_transfer: ClassVar[bool] = False
    stall_data: ClassVar[bool] = False

    def passive_unavailable_reply(self) -> str:
        return PASSIVE_EXHAUSTED_REPLY

    def greet(self) -> None:
        """The 220 banner, unless this server is the one that never greets."""
        if not self.no_banner:
            FTPHandler.handle(self)

    def handle(self) -> None:
        self.greet()

    def drop_control(self) -> None:
        """Cut the control connection like a crashed server or a NAT timeout: no reply,
        no TLS close_notify; pyftpdlib closes the data connection with it."""
        if getattr(self, "_closed", False):
            return
        self._error = True  # tells pyftpdlib's TLS mixin to skip the close_notify
        self.close()  # type: ignore[attr-defined]

    def _make_epasv(self, extmode: bool = False) -> None:
        try:
            super()._make_epasv(extmode)  # type: ignore[misc]
        except PassivePortsExhausted as exc:
            self._dtp_acceptor = None
            self.respond(self.passive_unavailable_reply())  # type: ignore[attr-defined]
            self.lab.record_error(f"PASV refused: {exc}")


class LabFTPHandler(_LabControl, FTPHandler):  # type: ignore[misc]
    """Plain FTP (no TLS at all): the baseline for benchmarks."""


class _LabDataFaults:
    """Data-channel faults, driven by the control handler's switches.

    ``stall_data``: a download's data is queued but never sent; the connection stays
    open and readable, so when the client gives up and closes it the server answers
    ``426`` like any server whose transfer was cut. ``drop_control_during_transfer``:
    as soon as the first data bytes move, the control connection is cut.
    """

    cmd_channel: Any
    ioloop: Any
    producer_fifo: Any
    _initialized: bool
    _wanted_io_events: int
    _dropping = False
    stalled = False

    def _moved_data(self) -> None:
        control = self.cmd_channel
        if control.drop_control_during_transfer and not self._dropping:
            self._dropping = True
            self.ioloop.call_later(0, control.drop_control, _errback=control.handle_error)

    def send(self, data: bytes) -> int:
        sent = int(super().send(data))  # type: ignore[misc]
        if sent:
            self._moved_data()
        return sent

    def recv(self, buffer_size: int) -> bytes:
        chunk = bytes(super().recv(buffer_size))  # type: ignore[misc]
        if chunk:
            self._moved_data()
        return chunk

    def _stall(self, item: Any) -> None:
        self.stalled = True
        self._initialized = True
        self.producer_fifo.append(item)  # queued, so closing counts as "not finished"
        self._wanted_io_events = self.ioloop.READ
        self.modify_ioloop_events(self.ioloop.READ)  # type: ignore[attr-defined]

    def readable(self) -> bool:
        if self.stalled:
            return True  # only to notice the client hanging up
        return bool(super().readable())  # type: ignore[misc]

    def writable(self) -> bool:
        return False if self.stalled else bool(super().writable())  # type: ignore[misc]

    def push(self, data: bytes) -> None:
        if self.cmd_channel.stall_data:
            self._stall(data)
            return
        super().push(data)  # type: ignore[misc]

    def push_with_producer(self, producer: Any) -> None:
        if self.cmd_channel.stall_data:
            self._stall(producer)
            return
        super().push_with_producer(producer)  # type: ignore[misc]


class LabDTPHandler(_LabDataFaults, DTPHandler):  # type: ignore[misc]
    """Plain data channel; buffer sizes are set per server."""


class LabTLSDTPHandler(_LabDataFaults, TLS_DTPHandler):  # type: ignore[misc]
    """TLS data channel that can insist on resuming the control connection's session.

    The verdict is taken when the handshake completes but delivered only once a
    transfer command has started on this channel, so the ``522`` always answers a
    transfer command (after its ``125``/``150``), as with vsftpd.

    Nothing of a transfer is written before that verdict. When the data command comes
    before the handshake is done (ftplib and the harness's client send it first and
    handshake after the ``150``; curl races the two), pyftpdlib pushes the data at once,
    and pyOpenSSL's ``send`` on a connection still in its handshake can finish the
    handshake inside ``SSL_write`` and send the data in the same call, before
    ``handle_ssl_established`` ever runs. So output pushed during the handshake is held
    (``initiate_send`` does nothing, the loop waits for reads only) and released, or
    dropped with the refusal, by the verdict.
    """

    _session_refusal: str | None = None
    _handshake_judged = False  # the handshake ended (verdict taken, or it failed)

    def _holding(self) -> bool:
        """Output must wait: TLS was requested and its verdict is not in yet."""
        return bool(self._ssl_requested) and not self._handshake_judged

    def initiate_send(self) -> None:
        if self._holding():
            return  # SSL_write would finish the handshake itself and send the data
        # An empty listing (NLST of an empty directory) queues b"": asynchat would hand
        # it to SSL_write(0), which pyOpenSSL reports as an EOF, and a 426 would follow.
        fifo = self.producer_fifo
        while fifo and isinstance(fifo[0], bytes) and not fifo[0]:
            fifo.popleft()
        super().initiate_send()

    def _wait_for_verdict(self) -> None:
        """While output is held, the handshake needs reads; a writable socket would
        only make the loop spin until the client's next flight arrives."""
        if self._closed or not self._holding():
            return
        events = self.ioloop.READ
        if self._ssl_want_write:
            events |= self.ioloop.WRITE
        self._wanted_io_events = self.ioloop.READ
        self.modify_ioloop_events(events)

    def _release(self) -> None:
        """Send what was held, now that the session has been accepted."""
        if self._initialized and not self.receive and not self.stalled and self.producer_fifo:
            self._wanted_io_events = self.ioloop.WRITE
            self.modify_ioloop_events(self.ioloop.WRITE)

    def handle_ssl_established(self) -> None:
        super().handle_ssl_established()
        control = self.cmd_channel
        refusal = control.data_session_refusal(self.socket)
        self._handshake_judged = True
        control.lab.record_data_handshake(
            DataHandshake(
                tls_version=self.socket.get_protocol_version_name(),
                session_reused=session_reused(self.socket),
                refused=refusal is not None,
            )
        )
        if refusal is not None:
            self._session_refusal = refusal
            if self._initialized:
                self._refuse_session()
        else:
            self._release()

    def _refuse_session(self) -> None:
        assert self._session_refusal is not None
        self.transfer_finished = False
        self._resp = (self._session_refusal, logger.info)
        self.producer_fifo.clear()
        self.close()

    def handle_failed_ssl_handshake(self) -> None:
        self._handshake_judged = True  # pyftpdlib answers 522 itself
        self.cmd_channel.lab.record_tls_failure("data channel TLS handshake failed")
        super().handle_failed_ssl_handshake()

    # A transfer that starts after a refused handshake is answered right away, before a
    # single byte goes out (vsftpd sends nothing either).
    def push(self, data: bytes) -> None:
        if self._session_refusal is not None:
            self._initialized = True
            self._refuse_session()
            return
        super().push(data)
        self._wait_for_verdict()

    def push_with_producer(self, producer: Any) -> None:
        if self._session_refusal is not None:
            self._initialized = True
            self._refuse_session()
            return
        super().push_with_producer(producer)
        self._wait_for_verdict()

    def close(self) -> None:
        """An upload that ends without the client's TLS close_notify may be cut short.

        pyftpdlib treats any end of the connection as the end of the file and answers
        226; a connection reset mid-upload then leaves a truncated file reported as
        complete. Like vsftpd's ``strict_ssl_read_eof``, the lab answers 426 instead.
        A transfer whose data connection closed before its handshake finished gets 426
        too: without it the control connection would never hear about that transfer.
        """
        if not self._closed and self._initialized and self._holding() and not self._resp:
            self.transfer_finished = False
            self._resp = (HANDSHAKE_UNFINISHED_REPLY, logger.info)
        if (
            not self._closed
            and self.receive
            and self.transfer_finished
            and self._session_refusal is None
            and self._ssl_established
            and not self.socket.get_shutdown() & SSL.RECEIVED_SHUTDOWN
        ):
            self.transfer_finished = False
            self._resp = (UNCLEAN_UPLOAD_REPLY, logger.info)
        super().close()

    def enable_receiving(self, type: str, cmd: str) -> None:
        super().enable_receiving(type, cmd)
        if self._session_refusal is not None:
            self._refuse_session()


class LabTLSHandler(_LabControl, TLS_FTPHandler):  # type: ignore[misc]
    """Explicit or implicit FTPS with the lab's policies.

    ``tls_control_required``/``tls_data_required`` (pyftpdlib's own switches) carry the
    policy; ``implicit_tls`` and ``require_session_reuse`` are the lab's additions.
    """

    implicit_tls: ClassVar[bool] = False
    require_session_reuse: ClassVar[bool] = False
    auth_tls_refusal: ClassVar[str | None] = None
    feat_lists_auth_tls: ClassVar[bool] = True  # False: as vsftpd 3.0.x with ssl_tlsv1=NO
    # Makes the SSL context of one control connection (None: the server-wide one).
    session_context_factory: ClassVar[Callable[[], SSL.Context] | None] = None
    _banner_pending = False

    # --- one TLS session lineage per control connection

    def secure_connection(self, ssl_context: SSL.Context) -> None:
        """Handshake through a context of this control connection's own.

        Its data connections use the same context (``LabTLSDTPHandler``), so they can
        resume this connection's sessions, and only those: another connection's TLS 1.2
        session id is not in this context's cache, its TLS 1.2 or 1.3 ticket was sealed
        with other ticket keys, and its session id context differs, so OpenSSL falls back
        to a full handshake, which ``data_session_refusal`` refuses. (vsftpd binds only
        session ids this way: its forked session processes share one set of ticket keys.)
        """
        if self.session_context_factory is not None:
            self.ssl_context = self.session_context_factory()
        super().secure_connection(self.ssl_context)

    # --- implicit FTPS: handshake first, banner afterwards

    def handle(self) -> None:
        if not self.implicit_tls:
            super().handle()
            return
        self._banner_pending = True
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        super().handle_ssl_established()
        if self._banner_pending:
            self._banner_pending = False
            self.greet()

    def handle_failed_ssl_handshake(self) -> None:
        where = "implicit TLS" if self._banner_pending else "AUTH TLS"
        self.lab.record_tls_failure(f"control channel {where} handshake failed")
        super().handle_failed_ssl_handshake()

    # --- policy

    def control_refusal(self, cmd: str) -> str | None:
        """The reply refusing a login command on a plaintext control channel, if any."""
        if cmd in ("USER", "PASS") and self.tls_control_required and not self._ssl_established:
            return CONTROL_TLS_REQUIRED_REPLY
        return None

    def data_refusal(self, cmd: str) -> str | None:
        """The reply refusing an unprotected (PROT C) data connection, if any."""
        if not self.tls_data_required or self._prot:
            return None
        if cmd in _DATA_SETUP_COMMANDS:
            return DATA_TLS_REQUIRED_REPLY
        if cmd in _TRANSFER_COMMANDS:
            return PROT_C_TRANSFER_REPLY
        return None

    def data_session_refusal(self, conn: SSL.Connection) -> str | None:
        """The reply refusing a data connection that did not resume the session, if any."""
        if self.require_session_reuse and not session_reused(conn):
            return REUSE_REQUIRED_REPLY
        return None

    def ftp_FEAT(self, line: str) -> None:
        """FEAT, without the AUTH lines when this server hides them (AUTH TLS still works)."""
        if not self.feat_lists_auth_tls:
            self._extra_feats = [feat for feat in self._extra_feats if not feat.startswith("AUTH ")]
        super().ftp_FEAT(line)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        if cmd == "AUTH" and self.auth_tls_refusal is not None:
            self.respond(self.auth_tls_refusal)
            return
        reply = self.control_refusal(cmd) or self.data_refusal(cmd)
        if reply is not None:
            self.respond(reply)
            return
        FTPHandler.process_command(self, cmd, *args, **kwargs)

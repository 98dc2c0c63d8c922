"""Session reuse on the lab's data channel, counted on the wire.

Two promises of ``require_session_reuse``:

* a refused data connection carries no byte of the transfer: the ``522`` comes first,
  whichever the client does first, the data command (curl 8, lftp, FileZilla, ftplib and
  this harness: command, ``150``, then the handshake) or the handshake (curl 7.88);
* "reuse" means the control connection's OWN session: a data connection that resumes
  another control connection's session (the same user's or another user's) is refused.

The counts are taken by a client that reads the data connection one TLS record at a
time through a memory BIO, so it knows both the application data it decrypted and every
raw byte that arrived after the handshake (session tickets and close_notify are
allowed, a record carrying application data is not). Each case loops 50 times on one
server: the leak this guards against was a race inside the server.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.lab.ftps_handlers import REUSE_REQUIRED_REPLY
from harness.protocols.ftp import Reply
from harness.protocols.ftps_client import FTPSClient, Passive
from harness.protocols.tls import Trust, client_context

pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "alice", "bob"
PASSWORDS = {ALICE: "Alice-data-7781", BOB: "Bob-data-9902"}
TIMEOUT = 5.0
REPEAT = 50
BIG = 256 * 1024 + 17  # more than one TLS record and one socket buffer
UPLOAD = os.urandom(64 * 1024)
_TLS_HEADER = 5
_APPLICATION_DATA = 23

# What each case sends; a ``{n}`` in it is the repetition number.
COMMANDS = {
    "LIST": "LIST",
    "NLST": "NLST",
    "NLST-empty": "NLST empty",
    "RETR": "RETR big.bin",
    "STOR": "STOR upload-{n}.bin",
}


@pytest.fixture(scope="module")
def server(tls_files: dict[str, Path]) -> Iterator[FTPSLabServer]:
    """One strict server for every case; the loops reuse it."""
    config = FTPSServerConfig(
        certfile=tls_files["cert"], keyfile=tls_files["key"], require_session_reuse=True,
        users=[(name, password) for name, password in PASSWORDS.items()],
    )  # fmt: skip
    with FTPSLabServer(config) as lab:
        for user in PASSWORDS:
            home = lab.home(user)
            (home / "big.bin").write_bytes(os.urandom(BIG))
            (home / "listed.txt").write_text("listed\n")
            (home / "empty").mkdir()
        yield lab
        assert lab.errors == []


def _context(tls_files: dict[str, Path], tls: str, *, tickets: bool = True) -> ssl.SSLContext:
    context = client_context(Trust(ca_file=tls_files["ca"]), min_version=tls, max_version=tls)
    if not tickets:
        context.options |= ssl.OP_NO_TICKET  # TLS 1.2 resumption by session id
    return context


@contextmanager
def _control(
    server: FTPSLabServer, context: ssl.SSLContext, user: str = ALICE, *, reuse: bool = True
) -> Iterator[FTPSClient]:
    """A logged-in, PROT P control connection of the harness's own client."""
    client = FTPSClient(server.host, server.port, context=context, server_name="localhost",
                        timeout=TIMEOUT, reuse_session=reuse)
    try:
        assert client.connect().code == 220
        assert client.auth_tls().code == 234
        _, password = client.login(user, PASSWORDS[user])
        assert password is not None and password.code == 230, password
        assert client.pbsz(0).code == 200
        assert client.prot("P").code == 200
        assert client.type_binary().code == 200
        yield client
    finally:
        client.close()


# --- a data connection read one TLS record at a time ----------------------------------------


@dataclass
class DataCount:
    """What reached the client on one data connection."""

    plaintext: int = 0  # application data bytes decrypted
    raw_after_handshake: int = 0  # every byte received after the handshake
    data_records: list[int] = field(default_factory=list)  # raw sizes of those with data
    other_records: int = 0  # session tickets, alerts
    preliminary: Reply | None = None
    final: Reply | None = None


class RecordClient:
    """TLS over a memory BIO, fed record by record from a socket with a timeout."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext,
                 session: ssl.SSLSession | None = None) -> None:
        sock.settimeout(TIMEOUT)
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost",
                                    session=session)

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def _exactly(self, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def record(self) -> bytes | None:
        """The next whole TLS record, or None at the end of the connection."""
        header = self._exactly(_TLS_HEADER)
        if header is None:
            return None
        body = self._exactly(int.from_bytes(header[3:5], "big"))
        return None if body is None else header + body

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                record = self.record()
                if record is None:
                    raise ConnectionError("data connection closed during the handshake") from None
                self.incoming.write(record)
            else:
                self._flush()
                return

    def send(self, data: bytes) -> None:
        """Best effort: a refusing server may already have closed the connection."""
        try:
            self.tls.write(data)
            self._flush()
        except (OSError, ssl.SSLError):
            pass

    def drain(self, count: DataCount) -> None:
        """Read to the end, classifying every record that arrives."""
        while (record := self.record()) is not None:
            count.raw_after_handshake += len(record)
            self.incoming.write(record)
            plaintext, closed = 0, False
            try:
                while chunk := self.tls.read(65536):
                    plaintext += len(chunk)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                closed = True
            count.plaintext += plaintext
            # Under TLS 1.2 the outer type tells; under 1.3 only decryption does.
            tls12_data = record[0] == _APPLICATION_DATA and self.tls.version() == "TLSv1.2"
            if plaintext or tls12_data:
                count.data_records.append(len(record))
            else:
                count.other_records += 1
            if closed:
                return


def _connect(endpoint: Passive) -> socket.socket:
    return socket.create_connection((endpoint.connect_host, endpoint.port), timeout=TIMEOUT)


def _wait_for_verdict(server: FTPSLabServer, before: int) -> None:
    """Until the server has judged the data handshake (its side ends after ours)."""
    deadline = time.monotonic() + TIMEOUT
    while len(server.data_handshakes) <= before:
        assert time.monotonic() < deadline, "the server never finished the data handshake"
        time.sleep(0.001)


def _record_transfer(
    server: FTPSLabServer, control: FTPSClient, command: str, order: str,
    session: ssl.SSLSession | None = None, upload: bytes | None = None,
) -> DataCount:
    """One data command over a record-counted data connection, in the given order."""
    assert control.context is not None
    count = DataCount()
    reply, endpoint = control.passive("PASV")
    assert endpoint is not None, reply
    with _connect(endpoint) as raw:
        client = RecordClient(raw, control.context, session)
        if order == "handshake-first":
            before = len(server.data_handshakes)
            client.handshake()
            _wait_for_verdict(server, before)
            control.send_line(command)
            count.preliminary = control.read_reply()
        else:
            control.send_line(command)
            count.preliminary = control.read_reply()
            if count.preliminary.preliminary:
                client.handshake()
        if count.preliminary.preliminary:
            if upload is not None:
                client.send(upload)
            client.drain(count)
    count.final = control.read_reply() if count.preliminary.preliminary else count.preliminary
    return count


# --- 1. no byte before the verdict ----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(COMMANDS))
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("order", ["command-first", "handshake-first"])
def test_refused_data_connection_carries_no_byte(
    server: FTPSLabServer, tls_files: dict[str, Path], order: str, tls: str, case: str
) -> None:
    """50 data connections without reuse: each answered 522, none carries a data record."""
    leaked: list[str] = []
    after_handshake: list[int] = []
    with _control(server, _context(tls_files, tls), reuse=False) as control:
        for n in range(REPEAT):
            command = COMMANDS[case].format(n=n)
            upload = UPLOAD if case == "STOR" else None
            count = _record_transfer(server, control, command, order, upload=upload)
            assert count.preliminary is not None and count.preliminary.code in (125, 150)
            assert count.final is not None and count.final.first == REUSE_REQUIRED_REPLY, (
                n, count.final)
            assert server.data_handshakes[-1].refused
            assert server.data_handshakes[-1].tls_version == f"TLSv{tls}"
            if case == "STOR":
                stored = server.home(ALICE) / f"upload-{n}.bin"
                written = stored.stat().st_size if stored.exists() else 0
                stored.unlink(missing_ok=True)
                if written:
                    leaked.append(f"#{n}: {written} bytes written to the file")
            elif count.plaintext or count.data_records:
                leaked.append(f"#{n}: {count.plaintext} bytes in {count.data_records}")
            after_handshake.append(count.raw_after_handshake)
        assert control.command("NOOP").code == 200  # the control connection survives
    assert leaked == [], f"{len(leaked)} of {REPEAT} refused connections leaked: {leaked[:5]}"
    # What did arrive after the handshake was close_notify (31 bytes under TLS 1.2 with
    # AES-GCM), under TLS 1.3 with the session tickets before it (566): no data record.
    assert max(after_handshake) < 1024, after_handshake


@pytest.mark.parametrize("case", sorted(COMMANDS))
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_harness_client_without_reuse_receives_no_byte(
    server: FTPSLabServer, tls_files: dict[str, Path], tls: str, case: str
) -> None:
    """The harness's own client in its own order (command, 150, handshake), 50 times."""
    leaked: list[str] = []
    with _control(server, _context(tls_files, tls), reuse=False) as client:
        for n in range(REPEAT):
            command = COMMANDS[case].format(n=n)
            if case == "STOR":
                transfer = client.transfer(command, upload=[UPLOAD])
                stored = server.home(ALICE) / f"upload-{n}.bin"
                moved = stored.stat().st_size if stored.exists() else 0
                stored.unlink(missing_ok=True)
            else:
                transfer = client.transfer(command)
                moved = transfer.size
            assert transfer.final is not None and transfer.final.first == REUSE_REQUIRED_REPLY, (
                n, transfer.describe())
            assert transfer.reuse_offered is False and transfer.session_reused is False
            if moved:
                leaked.append(f"#{n}: {moved} bytes")
        assert client.command("NOOP").code == 200
    assert leaked == [], f"{len(leaked)} of {REPEAT} refused transfers leaked: {leaked[:5]}"


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_accepted_data_connection_still_carries_everything(
    server: FTPSLabServer, tls_files: dict[str, Path], tls: str
) -> None:
    """The held data is released, whole, once the session is accepted (both orders)."""
    with _control(server, _context(tls_files, tls)) as control:
        assert control.sock is not None
        for order in ("command-first", "handshake-first"):
            for _ in range(5):
                session = control.sock.session  # type: ignore[attr-defined]
                count = _record_transfer(server, control, "RETR big.bin", order, session)
                assert count.final is not None and count.final.code == 226, count.final
                assert count.plaintext == BIG
                assert server.data_handshakes[-1].session_reused
                empty = _record_transfer(server, control, "NLST empty", order, session)
                assert empty.final is not None and empty.final.code == 226
                assert empty.plaintext == 0


def test_data_connection_closed_mid_handshake_is_answered(
    server: FTPSLabServer, tls_files: dict[str, Path]
) -> None:
    """A transfer whose data connection goes away before its handshake finished still
    gets a final reply (426), so the control connection is not left waiting."""
    with _control(server, _context(tls_files, "1.3")) as control:
        reply, endpoint = control.passive("PASV")
        assert endpoint is not None, reply
        raw = _connect(endpoint)
        control.send_line("RETR big.bin")
        assert control.read_reply().code in (125, 150)
        raw.close()
        final = control.read_reply()
        assert final.code == 426, final
        assert control.command("NOOP").code == 200


# --- 2. reuse means the control connection's own session -------------------------------------

# TLS 1.2 resumed by session id (client without tickets), by ticket, and TLS 1.3 (tickets).
KINDS = {"tls1.2-session-id": ("1.2", False), "tls1.2-ticket": ("1.2", True),
         "tls1.3-ticket": ("1.3", True)}


def _session(control: FTPSClient, tickets: bool) -> ssl.SSLSession:
    """The control connection's session, checked to be of the kind under test."""
    assert isinstance(control.sock, ssl.SSLSocket)
    session = control.sock.session
    assert session is not None
    assert session.has_ticket is tickets
    if not tickets:
        assert session.id  # resumable by its id only
    return session


@pytest.mark.parametrize("whose", ["same-user", "other-user"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_data_connection_resuming_another_control_session_is_refused(
    server: FTPSLabServer, tls_files: dict[str, Path], kind: str, whose: str
) -> None:
    """Bob's data connection offers the session of another control connection (Alice's,
    or his own other one): 522, no byte; his own session on the same control works."""
    tls, tickets = KINDS[kind]
    context = _context(tls_files, tls, tickets=tickets)  # one context: sessions are portable
    other_user = ALICE if whose == "other-user" else BOB
    with _control(server, context, other_user) as other, _control(server, context, BOB) as bob:
        foreign = _session(other, tickets)
        own = _session(bob, tickets)
        assert foreign.id != own.id
        for order in ("command-first", "handshake-first"):
            for _ in range(3):
                stolen = _record_transfer(server, bob, "RETR big.bin", order, foreign)
                assert stolen.final is not None and stolen.final.first == REUSE_REQUIRED_REPLY, (
                    order, stolen.final)
                assert not server.data_handshakes[-1].session_reused
                assert stolen.plaintext == 0 and stolen.data_records == []
                mine = _record_transfer(server, bob, "RETR big.bin", order, own)
                assert mine.final is not None and mine.final.code == 226, (order, mine.final)
                assert server.data_handshakes[-1].session_reused
                assert mine.plaintext == BIG
        # Alice's own data connections still resume her session.
        again = _record_transfer(server, other, "NLST", "command-first", foreign)
        assert again.final is not None and again.final.code == 226
        assert server.data_handshakes[-1].session_reused

"""Stopping asyncio lab servers with live TLS connections in every closing state.

Regression for CPython gh-98539 on 3.11.1-3.11.3 (Debian 12's 3.11.2): once asyncio's
TLS transport has been closed twice (aiosmtpd does that on every QUIT; a stream handler
does it when it closes a writer the stop already aborted), ``abort()`` raises
``AttributeError: 'NoneType' object has no attribute '_abort'`` and the stop fails.
On every interpreter the tests also prove that each connection is really cut (the TCP
socket closed, not left in a TLS shutdown that waits for the peer) and the stop is fast.
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.lab.portblock import Greeter
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.protocols.tls import Trust, client_context

USERS = {"alice": "tls-Stop-4711"}


def _line(sock: socket.socket) -> bytes:
    """One reply, multi-line ones whole: up to the line with a space after the code."""
    data = b""
    while not (data.endswith(b"\n") and data.splitlines()[-1][3:4] == b" "):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def _server_closed(sock: socket.socket, timeout: float = 1.0) -> bool:
    """Whether the server closed the TCP connection under ``sock``.

    Read through a duplicate plain socket, so TLS records still in flight (a
    close_notify) are skipped and only the TCP end-of-stream or a reset counts.
    """
    raw = socket.socket(fileno=os.dup(sock.fileno()))
    raw.settimeout(timeout)
    try:
        while raw.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        raw.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not reach the state in time"
        time.sleep(0.005)


def _handler_done(server: SMTPLabServer, sock: socket.socket) -> bool:
    """Whether the session of client ``sock`` ended its handler (after QUIT: both closes)."""
    peer = sock.getsockname()
    return any(
        session.session is not None and session.session.peer == peer
        and session._handler_coroutine is not None and session._handler_coroutine.done()
        for session in list(server._sessions)
    )


@pytest.fixture
def ca(tls_files: dict[str, Path]) -> ssl.SSLContext:
    return client_context(Trust(ca_file=tls_files["ca"]))


class _Clients:
    """Client sockets of one test; closed at the end whatever happens."""

    def __init__(self) -> None:
        self.sockets: dict[str, socket.socket] = {}

    def add(self, state: str, sock: socket.socket) -> socket.socket:
        self.sockets[state] = sock
        return sock

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


@pytest.fixture
def clients() -> Iterator[_Clients]:
    held = _Clients()
    yield held
    held.close()


def _smtp_tls(server: SMTPLabServer, ca: ssl.SSLContext) -> ssl.SSLSocket:
    """A session with TLS up: implicit, or STARTTLS after EHLO."""
    raw = socket.create_connection(server.address, timeout=3)
    if server.implicit_tls:
        sock = ca.wrap_socket(raw, server_hostname="localhost")
        assert _line(sock).startswith(b"220 ")
        return sock
    assert _line(raw).startswith(b"220 ")
    raw.sendall(b"EHLO client.test\r\n")
    assert _line(raw).startswith(b"250")
    raw.sendall(b"STARTTLS\r\n")
    assert _line(raw).startswith(b"220 ")
    return ca.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_smtp_lab_stops_cleanly_with_tls_sessions_in_every_closing_state(
    tls_files: dict[str, Path], ca: ssl.SSLContext, clients: _Clients, role: str
) -> None:
    server = SMTPLabServer(SMTPServerConfig(
        role=role, users=USERS, cert_file=tls_files["cert"], key_file=tls_files["key"],
    )).start()
    try:
        # TCP connected, TLS handshake not begun (implicit) or STARTTLS answered but no
        # ClientHello sent yet. First, so that it is accepted before the stop.
        handshaking = clients.add("handshaking", socket.create_connection(server.address, 3))
        if not server.implicit_tls:
            assert _line(handshaking).startswith(b"220 ")
            handshaking.sendall(b"EHLO client.test\r\n")
            assert _line(handshaking).startswith(b"250")
            handshaking.sendall(b"STARTTLS\r\n")
            assert _line(handshaking).startswith(b"220 ")
        # After QUIT the server closed its TLS transport twice (QUIT, then aiosmtpd's
        # StreamWriter.close()) and waits for our close_notify, which never comes:
        # the gh-98539 state.
        quit_session = clients.add("quit", _smtp_tls(server, ca))
        quit_session.sendall(b"QUIT\r\n")
        assert _line(quit_session).startswith(b"221 ")
        _wait_for(lambda: _handler_done(server, quit_session))
        # TLS up and idle: stop aborts it while its handler still runs.
        clients.add("idle", _smtp_tls(server, ca)).sendall(b"NOOP\r\n")
        assert _line(clients.sockets["idle"]).startswith(b"250 ")
        # An implicit-TLS session joins the sessions only once its handshake is done.
        _wait_for(lambda: len(server._sessions) == (2 if server.implicit_tls else 3))

        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 1.0
    finally:
        server.stop()
    assert server.errors == []
    assert not server.running
    for state, sock in clients.sockets.items():
        assert _server_closed(sock), f"{state}: the server left the connection open"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=1).close()


def test_greeter_stops_cleanly_with_tls_clients_in_every_closing_state(
    tls_files: dict[str, Path], ca: ssl.SSLContext, clients: _Clients
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    greeter = Greeter(tls=context).start()
    try:

        def connect(state: str) -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", greeter.port), timeout=3)
            sock = ca.wrap_socket(raw, server_hostname="localhost")
            assert _line(sock).startswith(b"220 ")
            clients.add(state, sock)
            return sock

        # TCP connected, TLS handshake not begun. First, so that it is accepted before
        # the stop (the accept loop takes connections in order).
        clients.add("handshaking", socket.create_connection(("127.0.0.1", greeter.port), 3))
        # Hung up without close_notify: the handler closes a writer whose connection is
        # already lost, then the server aborts it (the gh-98539 state).
        connect("hung up").close()
        # After QUIT the greeter closes once and waits for our close_notify.
        quit_session = connect("quit")
        quit_session.sendall(b"QUIT\r\n")
        assert _line(quit_session).startswith(b"221 ")
        # Idle: stop aborts it, then its handler closes the writer a second time.
        connect("idle")
        _wait_for(lambda: greeter.connections == 3)

        start = time.monotonic()
        greeter.stop()
        assert time.monotonic() - start < 1.0
    finally:
        greeter.stop()
    gc.collect()  # a handler's exception would otherwise only be reported by the GC
    assert greeter.errors == []
    for state, sock in clients.sockets.items():
        if state != "hung up":
            assert _server_closed(sock), f"{state}: the greeter left the connection open"

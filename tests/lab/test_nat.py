"""The NAT port-rewrite forwarder: exact bytes both ways, half-close, limits, fast stop."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.lab.nat import ForwarderError, PortForwarder
from harness.lab.portblock import PortBlock
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.protocols.smtp_client import SMTPClient
from harness.protocols.tls import Trust, client_context

MIB = 1024 * 1024
PASSWORD = "nat-Pass-5150"


class HashServer:
    """Per connection: read until EOF, remember the SHA-256, then answer with ``reply(data)``."""

    def __init__(self, reply: bytes | None = None, connections: int = 1) -> None:
        self.reply = reply
        self.connections = connections
        self.received: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        for _ in range(self.connections):
            conn, _ = self.listener.accept()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = _receive_all(conn)  # returns only at EOF: the half-close came through
            self.received.append(hashlib.sha256(data).hexdigest())
            conn.sendall(self.reply if self.reply is not None else data[::-1])

    def close(self) -> None:
        self.acceptor.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def _receive_all(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def _closed_by_peer(sock: socket.socket) -> bool:
    """The peer closed (FIN) or aborted (RST) the connection; a timeout means it did not."""
    sock.settimeout(1.5)
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_one_mib_each_way_with_half_close() -> None:
    upload, download = os.urandom(MIB), os.urandom(MIB)
    server = HashServer(download)
    try:
        with PortForwarder("127.0.0.1", server.port) as nat:
            assert nat.port not in (0, server.port)
            with socket.create_connection(nat.address, timeout=5) as client:
                client.sendall(upload)
                client.shutdown(socket.SHUT_WR)
                got = _receive_all(client)
            assert nat.wait_idle(2.0)
            stats = nat.stats()
    finally:
        server.close()
    assert server.received == [hashlib.sha256(upload).hexdigest()]
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(download).hexdigest()
    assert (stats.accepted, stats.completed, stats.failed, stats.active) == (1, 1, 0, 0)
    assert (stats.bytes_in, stats.bytes_out) == (MIB, MIB)
    assert nat.errors == []


def test_smtp_session_through_the_port_rewrite(tls_files: dict[str, Path]) -> None:
    """Outside port (the 587 role) onto the inside server: STARTTLS, AUTH, a delivered mail."""
    config = SMTPServerConfig(role="submission", users={"alice": PASSWORD},
                              cert_file=tls_files["cert"], key_file=tls_files["key"])
    message = b"From: <alice@ftps-lab.test>\r\nMessage-ID: <nat-1@lab.test>\r\n\r\nthrough NAT\r\n"
    with SMTPLabServer(config) as mail, PortForwarder(*mail.address) as nat:
        client = SMTPClient(*nat.address, timeout=3)
        try:
            assert client.connect().code == 220
            client.ehlo()
            context = client_context(Trust(ca_file=tls_files["ca"]))
            assert client.starttls(context, "localhost").code == 220
            client.ehlo()
            assert client.auth_plain("alice", PASSWORD).code == 235
            assert client.mail("alice@ftps-lab.test").code == 250
            assert client.rcpt("bob@ftps-lab.test").code == 250
            assert client.data(message).code == 250
            client.quit()
        finally:
            client.close()
        assert nat.wait_idle(2.0)
        stored = mail.mailbox.find("nat-1@lab.test")
        assert stored is not None and stored.data == message and stored.tls
        assert PASSWORD not in "\n".join(client.transcript.lines)
        assert nat.stats().completed == 1


def test_refused_inside_port_closes_the_client_and_counts_a_failure() -> None:
    with PortBlock("refused") as block, PortForwarder("127.0.0.1", block.port) as nat:
        with socket.create_connection(nat.address, timeout=2) as client:
            start = time.monotonic()
            assert _receive_all(client) == b""
            assert time.monotonic() - start < 0.5
        assert nat.wait_idle(1.0)
        stats = nat.stats()
    assert (stats.accepted, stats.failed, stats.completed) == (1, 1, 0)
    assert "ConnectionRefusedError" in stats.last_error


@pytest.mark.skipif(sys.platform != "linux", reason="userspace 'filtered' needs Linux")
def test_filtered_inside_port_is_bounded_by_the_connect_timeout() -> None:
    with PortBlock("filtered") as block, \
            PortForwarder("127.0.0.1", block.port, connect_timeout=0.3) as nat:
        with socket.create_connection(nat.address, timeout=2) as client:
            start = time.monotonic()
            assert _receive_all(client) == b""
            took = time.monotonic() - start
        assert nat.wait_idle(1.0)
        stats = nat.stats()
    assert 0.25 < took < 1.0
    assert stats.failed == 1 and "no answer within 0.3 s" in stats.last_error


def test_idle_connections_are_closed() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        with PortForwarder("127.0.0.1", server.getsockname()[1], idle_timeout=0.3) as nat:
            with socket.create_connection(nat.address, timeout=2) as client:
                server.settimeout(2)
                inside, _ = server.accept()
                with inside:
                    client.sendall(b"x")
                    assert inside.recv(1) == b"x"  # traffic resets the idle clock
                    start = time.monotonic()
                    assert _closed_by_peer(client)
                    assert 0.25 < time.monotonic() - start < 1.0
            assert nat.wait_idle(1.0)
            assert nat.stats().idle_timeouts == 1
    finally:
        server.close()


def test_stop_is_fast_with_connections_open() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(2)
    nat = PortForwarder("127.0.0.1", server.getsockname()[1]).start()
    clients, insides = [], []
    try:
        for _ in range(3):
            clients.append(socket.create_connection(nat.address, timeout=2))
            insides.append(server.accept()[0])
        deadline = time.monotonic() + 2
        while nat.stats().active < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert nat.stats().active == 3
        start = time.monotonic()
        nat.stop()
        assert time.monotonic() - start < 1.0
        for sock in (*clients, *insides):
            assert _closed_by_peer(sock)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(nat.address, timeout=1)
        assert nat.errors == []
    finally:
        for sock in (*clients, *insides, server):
            sock.close()


def test_concurrent_connections_are_relayed_and_counted() -> None:
    payloads = [os.urandom(100_000) for _ in range(5)]
    results: list[bytes] = [b""] * 5
    server = HashServer(connections=5)
    try:
        with PortForwarder("127.0.0.1", server.port) as nat:

            def run(index: int) -> None:
                with socket.create_connection(nat.address, timeout=5) as client:
                    client.sendall(payloads[index])
                    client.shutdown(socket.SHUT_WR)
                    results[index] = _receive_all(client)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            assert nat.wait_idle(2.0)
            stats = nat.stats()
    finally:
        server.close()
    assert results == [p[::-1] for p in payloads]
    assert sorted(server.received) == sorted(hashlib.sha256(p).hexdigest() for p in payloads)
    assert (stats.accepted, stats.completed, stats.active) == (5, 5, 0)
    assert stats.bytes_in == stats.bytes_out == 500_000


def test_listen_failure_is_reported() -> None:
    with pytest.raises(ForwarderError):
        PortForwarder("127.0.0.1", 25, listen_host="192.0.2.1").start()


def test_tls_passes_through_untouched(tls_files: dict[str, Path]) -> None:
    """The forwarder never looks inside: a handshake verifies end to end."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(3)

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello over tls")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with PortForwarder(*listener.getsockname()[:2]) as nat:
            client = ssl.create_default_context(cafile=str(tls_files["ca"]))
            raw = socket.create_connection(nat.address, timeout=3)
            with client.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(100) == b"hello over tls"
    finally:
        thread.join(3)
        listener.close()

"""Simulated port blocks: userspace on loopback, and real firewall rules in namespaces."""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.checks.op25b import PORT25_FILTERED, PORT25_REFUSED, PORT25_UNREACHABLE
from harness.lab.portblock import (
    NETNS_SKIP_REASON,
    Greeter,
    NetnsError,
    NetnsLab,
    PortBlock,
    accept_queue,
    available_firewalls,
    bind_socket,
    netns_unavailable,
)

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (TCP_INFO)")


def _connect(address: tuple[str, int], timeout: float) -> tuple[str, float]:
    """Outcome of one blocking connect: 'connected', 'refused' or 'timeout'."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    start = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except ConnectionRefusedError:
            return "refused", time.monotonic() - start
        except TimeoutError:
            return "timeout", time.monotonic() - start
    return "connected", time.monotonic() - start


# -- userspace -----------------------------------------------------------------------


def test_refused_block_answers_with_reset_and_holds_the_port() -> None:
    with PortBlock("refused") as block:
        outcome, took = _connect(("127.0.0.1", block.port), 1.0)
        assert outcome == "refused" and took < 0.2
        with pytest.raises(OSError) as caught:
            bind_socket("127.0.0.1", block.port)
        assert caught.value.errno == errno.EADDRINUSE


@linux_only
def test_filtered_block_drops_syns_even_after_a_retransmit() -> None:
    with PortBlock("filtered") as block:
        queued, limit = accept_queue(block.sockets[0])
        assert queued > limit  # the kernel's own "full" condition
        outcome, took = _connect(("127.0.0.1", block.port), 1.4)  # first SYN retry at ~1 s
        assert outcome == "timeout" and took >= 1.35
        assert block.queue_lengths() == [len(block.fillers)]  # nothing new got queued
        block.sockets[0].setblocking(False)
        accepted = []
        while True:
            try:
                accepted.append(block.sockets[0].accept()[0])
            except BlockingIOError:
                break
        for conn in accepted:
            assert conn.getpeername() in [f.getsockname() for f in block.fillers]
            conn.close()


@linux_only
def test_filtered_block_covers_several_addresses_and_given_sockets() -> None:
    given = bind_socket("127.0.0.3", 0)
    with PortBlock("filtered", [("127.0.0.2", 0), given]) as block:
        assert block.addresses[1] == given.getsockname()
        for address in block.addresses:
            assert _connect(address, 0.2)[0] == "timeout"
    assert given.fileno() == -1  # the block owned and closed it


@linux_only
def test_filtered_block_works_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        bind_socket("::1", 0).close()
    except OSError:
        pytest.skip("no ::1 on this host")
    with PortBlock("filtered", [("::1", 0)]) as block:
        assert _connect(("::1", block.port), 0.2)[0] == "timeout"


@linux_only
def test_closing_a_block_frees_the_port() -> None:
    block = PortBlock("filtered").start()
    address = block.addresses[0]
    block.close()
    block.close()  # idempotent
    assert _connect(address, 0.5)[0] == "refused"


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        PortBlock("stealth")


# -- greeter -------------------------------------------------------------------------


def _lines(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_greeter_greets_answers_and_says_goodbye() -> None:
    with Greeter(hostname="mx.lab.test") as greeter:
        with socket.create_connection(("127.0.0.1", greeter.port), timeout=2) as sock:
            assert _lines(sock) == b"220 mx.lab.test ESMTP lab greeter\r\n"
            sock.sendall(b"EHLO me\r\n")
            assert _lines(sock) == b"250 mx.lab.test\r\n"
            sock.sendall(b"NOOP\r\n")
            assert _lines(sock).startswith(b"502 ")
            sock.sendall(b"QUIT\r\n")
            assert _lines(sock).startswith(b"221 ")
            assert sock.recv(10) == b""
        assert greeter.connections == 1
    assert greeter.errors == []


def test_greeter_over_tls_verifies_against_the_lab_ca(tls_files: dict[str, Path]) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_files["cert"], tls_files["key"])
    client = ssl.create_default_context(cafile=str(tls_files["ca"]))
    with Greeter(tls=server) as greeter:
        raw = socket.create_connection(("127.0.0.1", greeter.port), timeout=2)
        with client.wrap_socket(raw, server_hostname="localhost") as sock:
            assert _lines(sock).startswith(b"220 ")
    assert greeter.errors == []


def test_greeter_stops_fast_with_clients_connected() -> None:
    greeter = Greeter(banner=None).start()
    clients = [socket.create_connection(("127.0.0.1", greeter.port), timeout=2)
               for _ in range(3)]
    try:
        start = time.monotonic()
        greeter.stop()
        assert time.monotonic() - start < 1.0
        for client in clients:
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(10) == b""
    finally:
        for client in clients:
            client.close()


# -- network namespaces with a real firewall ------------------------------------------

_REASON = netns_unavailable()
needs_netns = pytest.mark.skipif(_REASON is not None, reason=_REASON or NETNS_SKIP_REASON)


@pytest.fixture(scope="module", params=available_firewalls() or ["iptables"])
def netns(request: pytest.FixtureRequest) -> Iterator[NetnsLab]:
    if _REASON is not None:
        pytest.skip(_REASON)
    lab = NetnsLab(firewall=request.param)
    try:
        lab.start()
    except NetnsError as exc:
        if "Operation not permitted" in str(exc) or "Permission denied" in str(exc):
            pytest.skip(f"{NETNS_SKIP_REASON}: {exc}")
        raise
    try:
        lab.greet([25, 587])
        yield lab
    finally:
        lab.close()


@pytest.mark.netns
@needs_netns
@pytest.mark.parametrize(
    ("action", "state", "verdict"),
    [
        ("drop", "filtered", PORT25_FILTERED),
        ("reject", "closed", PORT25_REFUSED),
        ("prohibit", "unreachable", PORT25_UNREACHABLE),
    ],
)
def test_kernel_firewall_rules_are_classified(
    netns: NetnsLab, action: str, state: str, verdict: str
) -> None:
    netns.unblock_all()
    netns.block(25, action)
    data = netns.probe("25,587", 0.5, "--expect-host", "mail.ftps-lab.test")
    by_port = {r["port"]: r for r in data["results"]}
    assert by_port[25]["state"] == state, netns.rules()
    assert by_port[587]["state"] == "open"
    assert by_port[587]["banner"].startswith("220 mail.ftps-lab.test")
    assert data["verdicts"][0]["code"] == verdict


@pytest.mark.netns
@needs_netns
def test_without_rules_port_25_is_open(netns: NetnsLab) -> None:
    netns.unblock_all()
    data = netns.probe("25", 0.5)
    assert data["results"][0]["state"] == "open"


@pytest.mark.netns
@needs_netns
def test_namespaces_are_removed_on_close() -> None:
    lab = NetnsLab().start()
    names = (lab.client, lab.server)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True, timeout=10).stdout
    assert all(name in listed for name in names)
    lab.close()
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True, timeout=10).stdout
    assert not any(name in listed for name in names)

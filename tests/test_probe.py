"""The port probe: pure classification rules, then real loopback ports of every kind."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.lab.portblock import Greeter, PortBlock, bind_socket
from harness.probe import (
    PortResult,
    PortSpec,
    PortState,
    judge_connect_error,
    judge_greeting,
    parse_ports,
    port_spec,
    probe,
    probe_many,
)

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux loopback (127/8)")
EXPECT = "mail.ftps-lab.test"


@pytest.fixture
def server_tls(tls_files: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    return context


# -- pure rules ----------------------------------------------------------------------


def test_ports_parse_with_well_known_and_explicit_roles() -> None:
    assert parse_ports("25,465,587") == [
        PortSpec(25, "smtp"), PortSpec(465, "submissions"), PortSpec(587, "submission")
    ]
    assert parse_ports(" 2525:smtp, 4650:submissions,22 ") == [
        PortSpec(2525, "smtp"), PortSpec(4650, "submissions"), PortSpec(22, "tcp")
    ]
    assert port_spec((587, "tcp")) == PortSpec(587, "tcp")
    for bad in ("", "25,x", "70000", "25:imap"):
        with pytest.raises(ValueError):
            parse_ports(bad)


@pytest.mark.parametrize(
    ("data", "state", "detail"),
    [
        (b"220 mail.ftps-lab.test ESMTP Postfix\r\n", PortState.OPEN, "220"),
        (b"220-MAIL.FTPS-LAB.TEST. ESMTP\r\n220 welcome\r\n", PortState.OPEN, "220"),
        (b"220 proxy.isp.example ESMTP\r\n", PortState.INTERCEPTED, "does not name"),
        (b"220 ESMTP ready\r\n", PortState.INTERCEPTED, "does not name"),
        (b"554 5.7.1 no service for you\r\n", PortState.INTERCEPTED, "554, not 220"),
        (b"421 mail.ftps-lab.test busy\r\n", PortState.INTERCEPTED, "421, not 220"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", PortState.INTERCEPTED, "not an SMTP greeting"),
        (b"HTTP/1.1 400 Bad Request\r\n", PortState.INTERCEPTED, "not an SMTP greeting"),
        (b"", PortState.OPEN_SILENT, "no greeting"),
        (b"220-mail.ftps-lab.test first line only\r\n", PortState.OPEN_SILENT, "did not finish"),
    ],
)
def test_greetings_are_judged(data: bytes, state: PortState, detail: str) -> None:
    got, banner, text = judge_greeting(data, EXPECT)
    assert got is state
    assert detail in text
    if data and state is not PortState.OPEN_SILENT:
        assert banner


def test_any_220_is_open_without_an_expected_host() -> None:
    assert judge_greeting(b"220 whoever.example ESMTP\r\n", None)[0] is PortState.OPEN


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        (TimeoutError(), PortState.FILTERED),
        (asyncio.TimeoutError(), PortState.FILTERED),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), PortState.CLOSED),
        (OSError(errno.EHOSTUNREACH, "No route to host"), PortState.UNREACHABLE),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), PortState.UNREACHABLE),
        (PermissionError(errno.EACCES, "Permission denied"), PortState.UNREACHABLE),
        (PermissionError(errno.EPERM, "Operation not permitted"), PortState.UNREACHABLE),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), PortState.ERROR),
        (OSError(errno.EINVAL, "Invalid argument"), PortState.ERROR),
    ],
)
def test_connect_errors_are_classified(exc: BaseException, state: PortState) -> None:
    got, detail = judge_connect_error(exc, 3.0)
    assert got is state
    assert detail


def test_refused_detail_warns_that_reject_looks_the_same() -> None:
    _, detail = judge_connect_error(ConnectionRefusedError(errno.ECONNREFUSED, "x"), 1)
    assert "tcp-reset" in detail and "look the same" in detail


def test_result_round_trips_through_json_form() -> None:
    result = PortResult("h", 25, PortState.FILTERED, None, "d", 1.5, "smtp", "127.0.0.1")
    data = result.to_dict()
    assert data["state"] == "filtered"
    assert PortResult.from_dict(data) == result


# -- real ports ----------------------------------------------------------------------


@linux_only
def test_open_closed_filtered_in_bounded_time() -> None:
    with PortBlock("filtered") as filtered, PortBlock("refused") as refused, Greeter() as greeter:
        start = time.monotonic()
        results = probe(
            ["127.0.0.1"],
            [(greeter.port, "smtp"), (refused.port, "smtp"), (filtered.port, "smtp")],
            0.5,
            expect_host=EXPECT,
        )
        took = time.monotonic() - start
        assert filtered.queue_lengths() == [1]  # the probe never reached the accept queue
    states = [r.state for r in results]
    assert states == [PortState.OPEN, PortState.CLOSED, PortState.FILTERED]
    assert results[0].banner == f"220 {EXPECT} ESMTP lab greeter"
    assert results[1].elapsed < 0.2
    assert 0.45 < results[2].elapsed < 0.9
    assert took < 0.9  # concurrent: one timeout, not the sum
    assert all(r.address == "127.0.0.1" for r in results)


def test_plain_tcp_role_only_connects() -> None:
    with Greeter(banner=None) as silent:
        [result] = probe(["127.0.0.1"], [(silent.port, "tcp")], 0.5)
    assert result.state is PortState.OPEN and result.banner is None
    assert result.elapsed < 0.3


def test_silent_port_is_open_silent() -> None:
    with Greeter(banner=None) as silent:
        [result] = probe(["127.0.0.1"], [(silent.port, "submission")], 0.3)
    assert result.state is PortState.OPEN_SILENT
    assert 0.25 < result.elapsed < 0.8


def _accept_and_hang_up() -> tuple[socket.socket, threading.Thread]:
    listener = bind_socket()
    listener.listen(4)
    listener.settimeout(2.0)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_hang_up_without_greeting_is_open_silent() -> None:
    listener, thread = _accept_and_hang_up()
    with listener:
        [result] = probe(["127.0.0.1"], [(listener.getsockname()[1], "smtp")], 1.0)
        thread.join(2.0)
    assert result.state is PortState.OPEN_SILENT
    assert "closed the connection" in result.detail
    assert result.elapsed < 0.5  # EOF ends the wait, not the timeout


@pytest.mark.parametrize(
    ("banner", "detail"),
    [
        ("220 smtp-proxy.isp.example ESMTP", "does not name"),
        ("554 5.7.1 SMTP scanning gateway", "554, not 220"),
        ("SSH-2.0-OpenSSH_9.2", "not an SMTP greeting"),
    ],
)
def test_interception_is_told_apart(banner: str, detail: str) -> None:
    with Greeter(banner=banner) as impostor:
        [result] = probe(["127.0.0.1"], [(impostor.port, "submission")], 1.0,
                         expect_host=EXPECT)
    assert result.state is PortState.INTERCEPTED
    assert detail in result.detail
    assert result.banner is not None and banner.split()[0] in result.banner
    assert result.elapsed < 0.5


def test_465_greets_inside_tls(server_tls: ssl.SSLContext) -> None:
    with Greeter(tls=server_tls) as tls_greeter:
        [result] = probe(["127.0.0.1"], [(tls_greeter.port, "submissions")], 2.0,
                         expect_host=EXPECT)
    assert result.state is PortState.OPEN, result.detail
    assert result.banner and result.banner.startswith("220 ")
    assert "inside TLS" in result.detail


def test_465_speaking_plaintext_is_a_tls_error() -> None:
    with Greeter() as plain:
        [result] = probe(["127.0.0.1"], [(plain.port, "submissions")], 1.0)
    assert result.state is PortState.TLS_ERROR
    assert "TLS handshake failed" in result.detail


def test_465_without_handshake_answer_is_open_silent() -> None:
    with Greeter(banner=None) as silent:
        [result] = probe(["127.0.0.1"], [(silent.port, "submissions")], 0.3)
    assert result.state is PortState.OPEN_SILENT
    assert "TLS" in result.detail


@linux_only
def test_concurrency_bound_is_respected() -> None:
    with PortBlock("filtered", [("127.0.0.1", 0), ("127.0.0.1", 0)]) as block:
        ports = [port for _, port in block.addresses]
        start = time.monotonic()
        results = asyncio.run(probe_many(["127.0.0.1"], ports, 0.3, concurrency=1))
        took = time.monotonic() - start
    assert [r.state for r in results] == [PortState.FILTERED] * 2
    assert took >= 0.55  # one after the other


def test_sync_wrapper_works_inside_a_running_loop() -> None:
    with PortBlock("refused") as refused:

        async def inside() -> list[PortResult]:
            return probe(["127.0.0.1"], [refused.port], 1.0)

        [result] = asyncio.run(inside())
    assert result.state is PortState.CLOSED


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ValueError):
        probe(["127.0.0.1"], [25], 0)


# -- a batch of 100 hosts --------------------------------------------------------------


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for ~1000 sockets; CI shells often default to 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


Bound = dict[tuple[str, int], socket.socket]


def _common_ports(hosts: list[str], count: int) -> tuple[list[int], Bound]:
    """``count`` port numbers free on every host, each (host, port) already bound."""
    ports: list[int] = []
    bound: Bound = {}
    while len(ports) < count:
        first = bind_socket(hosts[0], 0)
        port = first.getsockname()[1]
        taken = {(hosts[0], port): first}
        try:
            for host in hosts[1:]:
                taken[(host, port)] = bind_socket(host, port)
        except OSError:
            for sock in taken.values():
                sock.close()
            continue
        ports.append(port)
        bound.update(taken)
    return ports, bound


@linux_only
def test_hundred_hosts_three_ports_take_about_one_timeout(
    many_files: None, server_tls: ssl.SSLContext
) -> None:
    hosts = [f"127.0.0.{n}" for n in range(1, 101)]
    (smtp, submissions, submission), bound = _common_ports(hosts, 3)
    open_hosts, closed_hosts, filtered_hosts = hosts[:34], hosts[34:67], hosts[67:]

    def take(group: list[str], ports: tuple[int, ...]) -> list[socket.socket]:
        return [bound.pop((host, port)) for host in group for port in ports]

    with ExitStack() as stack:
        for sock in bound.values():
            stack.callback(sock.close)
        stack.enter_context(Greeter(take(open_hosts, (smtp, submission))))
        stack.enter_context(Greeter(take(open_hosts, (submissions,)), tls=server_tls))
        stack.enter_context(PortBlock("refused", take(closed_hosts, (smtp, submissions,
                                                                     submission))))
        stack.enter_context(PortBlock("filtered", take(filtered_hosts, (smtp, submissions,
                                                                        submission))))
        specs = [(smtp, "smtp"), (submissions, "submissions"), (submission, "submission")]
        start = time.monotonic()
        results = probe(hosts, specs, 1.0, expect_host=EXPECT)
        took = time.monotonic() - start

    assert len(results) == 300
    assert took < 1.5, f"batch took {took:.2f} s"
    expected = {**{h: PortState.OPEN for h in open_hosts},
                **{h: PortState.CLOSED for h in closed_hosts},
                **{h: PortState.FILTERED for h in filtered_hosts}}
    wrong = [(r.host, r.port, r.state.value, r.detail) for r in results
             if r.state is not expected[r.host]]
    assert wrong == []
    assert [(r.host, r.port) for r in results[:3]] == [("127.0.0.1", p) for p in
                                                      (smtp, submissions, submission)]

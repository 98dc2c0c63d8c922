"""Concurrent TCP port probe that tells a blocked mail port from a closed or hijacked one.

OP25B ("outbound port 25 blocking") shows up as a port-25 connect that never answers,
is refused, or dies with an ICMP error, while 587/465 still work. A plain "can I
connect" test cannot tell these apart, nor spot a middlebox (antivirus mail scanner,
ISP transparent proxy) that accepts the connection in the server's place; so each
(host, port) is classified from the connect outcome and, on mail ports, from the
greeting:

* ``open``: connected; on a mail port the greeting was ``220`` (naming ``expect_host``
  when one is given).
* ``open-silent``: connected, but no greeting (on 465: no TLS handshake) in time.
* ``intercepted``: connected, but the greeting is not ``220``, not SMTP at all, or names
  another host than ``expect_host``.
* ``tls-error``: 465 accepted the connection but the TLS handshake failed.
* ``closed``: connection refused (RST). Nothing listens, or a firewall rule
  ``REJECT --reject-with tcp-reset``: the two look the same.
* ``filtered``: no answer within the timeout (the SYN was dropped on the way).
* ``unreachable``: an ICMP host/net unreachable or administratively-prohibited error, or
  a local rule refused the packet (EHOSTUNREACH, ENETUNREACH, EACCES, EPERM).
* ``error``: could not probe at all (the name did not resolve, other errors).

Every probe runs in one asyncio loop under a semaphore, so a batch costs about one
timeout, not the sum of them. The connect and the greeting phase each get ``timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import errno
import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from harness.protocols.smtp import ReplyParser, SMTPProtocolError
from harness.protocols.tls import Trust, client_context, explain_tls_failure

DEFAULT_PORTS = (25, 465, 587)
DEFAULT_TIMEOUT = 3.0
DEFAULT_CONCURRENCY = 512
# Well-known roles; any other port is probed for a TCP connect only.
DEFAULT_ROLES = {25: "smtp", 587: "submission", 465: "submissions"}
MAIL_ROLES = ("smtp", "submission", "submissions")
ROLES = (*MAIL_ROLES, "tcp")
_MAX_GREETING = 8192
_CLOSE_WAIT = 0.25

# errno values a connect() gets from ICMP errors or local packet filters.
_UNREACHABLE = {
    errno.EHOSTUNREACH: "host unreachable (ICMP host unreachable or administratively prohibited)",
    errno.ENETUNREACH: "network unreachable (no route, or ICMP net unreachable)",
    errno.EACCES: "permission denied (a local firewall rule or policy refused the packet)",
    errno.EPERM: "operation not permitted (a local firewall rule dropped the packet)",
}


class PortState(str, enum.Enum):
    """How a port looked from here; the value is what JSON and tables show."""

    OPEN = "open"
    OPEN_SILENT = "open-silent"
    INTERCEPTED = "intercepted"
    TLS_ERROR = "tls-error"
    CLOSED = "closed"
    FILTERED = "filtered"
    UNREACHABLE = "unreachable"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @property
    def answered(self) -> bool:
        """The TCP connection was accepted by something."""
        return self in (PortState.OPEN, PortState.OPEN_SILENT, PortState.INTERCEPTED,
                        PortState.TLS_ERROR)


class PortSpec(NamedTuple):
    """A port and the role that decides what is read after connecting."""

    port: int
    role: str


@dataclass
class PortResult:
    """One (host, port) probe: the verdict, the greeting if any, and why."""

    host: str
    port: int
    state: PortState
    banner: str | None = None
    detail: str = ""
    elapsed: float = 0.0
    role: str = "tcp"
    address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortResult:
        return cls(**{**data, "state": PortState(data["state"])})


# -- pure helpers --------------------------------------------------------------------


def port_spec(value: int | PortSpec | tuple[int, str]) -> PortSpec:
    """A port number gets its well-known role; ``(port, role)`` is taken as given."""
    if isinstance(value, int):
        return PortSpec(value, DEFAULT_ROLES.get(value, "tcp"))
    port, role = value
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return PortSpec(int(port), role)


def parse_ports(text: str) -> list[PortSpec]:
    """``"25,465,587"`` or ``"2525:smtp,4650:submissions"`` into port specs."""
    specs: list[PortSpec] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        number, _, role = item.partition(":")
        if not number.isdigit() or not 0 < int(number) < 65536:
            raise ValueError(f"not a port number: {number!r}")
        specs.append(port_spec((int(number), role) if role else int(number)))
    if not specs:
        raise ValueError("no ports given")
    return specs


def greeting_names_host(banner: str, expect_host: str) -> bool:
    """True when the first greeting line names ``expect_host`` (RFC 5321: ``220 domain``)."""
    want = expect_host.lower().rstrip(".")
    words = [word.lower().rstrip(".") for word in banner.split()[:8]]
    return want in words


def judge_greeting(
    data: bytes, expect_host: str | None
) -> tuple[PortState, str | None, str]:
    """Classify the bytes a mail port sent first: ``(state, banner, detail)``.

    Anything but a complete 220 reply, or one that names another host than expected, is
    a sign that something in the path answered instead of the server.
    """
    if not data:
        return PortState.OPEN_SILENT, None, "connected, but no greeting arrived"
    parser = ReplyParser()
    reply = None
    try:
        for raw in data.splitlines():
            reply = parser.feed(raw)
            if reply is not None:
                break
    except SMTPProtocolError as exc:
        text = data[:120].decode("utf-8", "replace")
        return PortState.INTERCEPTED, text, f"not an SMTP greeting ({exc}): something else answers"
    if reply is None:
        text = data[:120].decode("utf-8", "replace")
        return PortState.OPEN_SILENT, text, "greeting started but did not finish in time"
    banner = " | ".join(reply.wire_lines)
    if reply.code != 220:
        return (
            PortState.INTERCEPTED,
            banner,
            f"greeting is {reply.code}, not 220: the server refuses service or a "
            "middlebox (antivirus scanner, ISP proxy) answers in its place",
        )
    if expect_host and not greeting_names_host(reply.first, expect_host):
        return (
            PortState.INTERCEPTED,
            banner,
            f"greeting does not name {expect_host}: likely transparent interception "
            "(antivirus mail scanning, ISP SMTP proxy) or a redirect to another server",
        )
    return PortState.OPEN, banner, "220 greeting"


def judge_connect_error(exc: BaseException, timeout: float) -> tuple[PortState, str]:
    """Classify a failed connect by its exception and errno."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return (
            PortState.FILTERED,
            f"no answer within {timeout:g} s: a filter drops the packets (e.g. OP25B), "
            "or the host is down",
        )
    if isinstance(exc, socket.gaierror):
        return PortState.ERROR, f"name does not resolve: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return (
            PortState.CLOSED,
            "connection refused (RST): nothing listens there, or a firewall rejects with "
            "tcp-reset; from the outside the two look the same",
        )
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return PortState.UNREACHABLE, f"{name}: {_UNREACHABLE[exc.errno]}"
    return PortState.ERROR, f"{type(exc).__name__}: {exc}"


# -- I/O -----------------------------------------------------------------------------


@functools.cache
def _probe_tls_context() -> ssl.SSLContext:
    """The judging client's TLS policy, trusting anything: does 465 speak usable TLS?

    Certificates are the checks' business, so none is verified; what is offered comes
    from the client policy, so the port's state never depends on the interpreter's
    default cipher list.
    """
    return client_context(Trust(insecure=True))


async def _resolve(host: str, port: int, timeout: float) -> tuple[Any, ...]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    else:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    if not infos:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    return tuple(infos[0])


async def _read_greeting(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Bytes until a complete (possibly multi-line) reply, EOF, the limit or the timeout."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(data) < _MAX_GREETING:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            line = await asyncio.wait_for(reader.readline(), remaining)
        except (asyncio.TimeoutError, TimeoutError):
            break
        except ValueError:  # a line longer than the stream limit: certainly not SMTP
            data += b"(a line longer than 64 KiB)\n"
            break
        if not line:
            break
        data += line
        if not (line.endswith(b"\n") and line[:3].isdigit() and line[3:4] == b"-"):
            break  # complete: a final line, or not SMTP at all
    return data


async def _close(writer: asyncio.StreamWriter, polite: bool) -> None:
    try:
        if polite:
            writer.write(b"QUIT\r\n")
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT)
    except (OSError, asyncio.TimeoutError, TimeoutError, ssl.SSLError):
        writer.transport.abort()


async def _probe_one(
    host: str, spec: PortSpec, timeout: float, expect_host: str | None
) -> PortResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = PortResult(host=host, port=spec.port, state=PortState.ERROR, role=spec.role)
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, sockaddr = await _resolve(host, spec.port, timeout)
        result.address = str(sockaddr[0])
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout)
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        if sock is not None:
            sock.close()
        result.state, result.detail = judge_connect_error(exc, timeout)
        result.elapsed = loop.time() - start
        return result
    assert sock is not None
    if spec.role not in MAIL_ROLES:
        sock.close()
        result.state, result.detail = PortState.OPEN, "TCP connection accepted"
        result.elapsed = loop.time() - start
        return result
    result.state, result.banner, result.detail = await _greet(
        sock, spec.role == "submissions", host, timeout, expect_host
    )
    result.elapsed = loop.time() - start
    return result


async def _greet(
    sock: socket.socket, implicit_tls: bool, host: str, timeout: float, expect_host: str | None
) -> tuple[PortState, str | None, str]:
    """TLS first on 465, then read and judge the greeting."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                sock=sock,
                ssl=_probe_tls_context() if implicit_tls else None,
                server_hostname=(expect_host or host) if implicit_tls else None,
                ssl_handshake_timeout=timeout if implicit_tls else None,
            ),
            timeout,
        )
    except (asyncio.TimeoutError, TimeoutError):
        sock.close()
        return PortState.OPEN_SILENT, None, "connected, but no TLS handshake answer in time"
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        return (
            PortState.TLS_ERROR,
            None,
            f"TLS handshake failed ({explain_tls_failure(exc)}): port 465 does not speak "
            "implicit TLS here",
        )
    try:
        data = await _read_greeting(reader, timeout)
    except (OSError, ssl.SSLError) as exc:
        writer.transport.abort()
        return PortState.OPEN_SILENT, None, f"connection broke before a greeting: {exc}"
    state, banner, detail = judge_greeting(data, expect_host)
    if state is PortState.OPEN_SILENT and not data and reader.at_eof():
        detail = "connected, but the peer closed the connection without a greeting"
    tls_note = " (inside TLS)" if implicit_tls else ""
    await _close(writer, polite=bool(data))
    return state, banner, detail + tls_note


async def probe_many(
    hosts: Iterable[str],
    ports: Iterable[int | PortSpec | tuple[int, str]] = DEFAULT_PORTS,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    expect_host: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[PortResult]:
    """Probe every (host, port) concurrently; results in host-major input order."""
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    specs = [port_spec(port) for port in ports]
    gate = asyncio.Semaphore(max(1, concurrency))

    async def bounded(host: str, spec: PortSpec) -> PortResult:
        async with gate:
            return await _probe_one(host, spec, timeout, expect_host)

    jobs = [bounded(host, spec) for host in hosts for spec in specs]
    return list(await asyncio.gather(*jobs))


def probe(
    hosts: Iterable[str],
    ports: Iterable[int | PortSpec | tuple[int, str]] = DEFAULT_PORTS,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    expect_host: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[PortResult]:
    """Blocking :func:`probe_many`; also safe to call from inside a running event loop."""
    coroutine = probe_many(
        list(hosts), list(ports), timeout, expect_host=expect_host, concurrency=concurrency
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def by_host(results: Sequence[PortResult]) -> dict[str, list[PortResult]]:
    """Group results per host, keeping order."""
    groups: dict[str, list[PortResult]] = {}
    for result in results:
        groups.setdefault(result.host, []).append(result)
    return groups


if __name__ == "__main__":  # ``python -m harness.probe`` (e.g. inside a network namespace)
    from harness.cli.probe import probe as _command

    _command.main(prog_name="python -m harness.probe")

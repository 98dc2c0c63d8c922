"""Figure: an embedded FTPS server from nothing to a client's successful AUTH TLS, and stop.

Ours is :class:`harness.lab.ftps.FTPSLabServer`; the peer is pytest-localftpserver's own
server class (``SimpleFTPServer``, run in a thread exactly as its fixture does), not the
fixture. Both get the same certificate and are driven by the same client (the harness's
FTPS client, verifying the lab CA): connect, 220, AUTH TLS, handshake, QUIT; then the
server is stopped and the time until its thread has ended is included.

pytest-localftpserver binds its socket to all interfaces; before its loop starts, the
bench swaps that socket for one bound to 127.0.0.1, so nothing listens beyond loopback.
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time

from common import (
    LOOPBACK,
    SERVER_NAME,
    BenchError,
    Context,
    Row,
    client_tls_context,
    failure,
    interleave,
    random_password,
    write_private,
)

FIGURE = "ftps-start"
TITLE = "embedded FTPS server: start until AUTH TLS succeeds, and stop"
USER = "bench"


def quiet_pyftpdlib() -> None:
    """pyftpdlib's serve_forever() logs every command at INFO to stderr unless its logger
    already has a handler; neither side should pay for (or print) that."""
    log = logging.getLogger("pyftpdlib")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.setLevel(logging.WARNING)


def auth_tls(port: int, ca_file: object, deadline: float = 5.0) -> None:
    """Connect (retrying while the listener comes up), AUTH TLS, verify, QUIT."""
    from harness.protocols.ftps_client import FTPSClient

    context = client_tls_context(ca_file)  # type: ignore[arg-type]
    end = time.monotonic() + deadline
    while True:
        client = FTPSClient(LOOPBACK, port, context=context, server_name=SERVER_NAME, timeout=5.0)
        try:
            banner = client.connect()
        except ConnectionRefusedError:
            client.close()
            if time.monotonic() > end:
                raise BenchError(
                    f"nothing accepted on port {port} within {deadline:g} s"
                ) from None
            time.sleep(0.001)
            continue
        with client:
            if banner.code != 220:
                raise BenchError(f"banner {banner.first!r}")
            reply = client.auth_tls()
            if reply.code != 234 or not client.secure:
                raise BenchError(f"AUTH TLS answered {reply.first!r}")
            client.quit()
            return


class Parts:
    """Start-to-AUTH and stop times of each run, for the notes."""

    def __init__(self) -> None:
        self.start: list[float] = []
        self.stop: list[float] = []

    def note(self, label: str, repeat: int, what: str = "AUTH TLS") -> str:
        """Medians of the measured runs (warm-up runs come first and are left out)."""
        start, stop = self.start[-repeat:], self.stop[-repeat:]
        if not start:
            return f"{label}: no runs"
        return (
            f"{label}: start until {what} {statistics.median(start) * 1000:.1f} ms, "
            f"stop {statistics.median(stop) * 1000:.1f} ms (medians)"
        )


def run(ctx: Context) -> list[Row]:
    row = Row(
        figure=FIGURE,
        name=TITLE,
        ours_label="harness.lab.ftps.FTPSLabServer",
        peer_label="pytest-localftpserver SimpleFTPServer (TLS)",
        unit="ms",
        better="lower",
    )
    try:
        from pytest_localftpserver.servers import SimpleFTPServer
    except ImportError:
        row.skip = "pytest-localftpserver is not installed (pip install pytest-localftpserver)"
        return [row]
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig

    quiet_pyftpdlib()
    pki = ctx.pki()
    files = pki.files("lab")
    password = random_password()
    folder = ctx.directory("ftps-start")
    combined = write_private(
        folder / "keycert.pem", files.key.read_bytes() + files.cert.read_bytes()
    )
    ours_parts, peer_parts = Parts(), Parts()

    def ours() -> float:
        begin = time.perf_counter()
        server = FTPSLabServer(
            FTPSServerConfig(certfile=files.cert, keyfile=files.key, users=[(USER, password)])
        )
        server.start()
        try:
            auth_tls(server.port, pki.ca_file)
        finally:
            ready = time.perf_counter()
            server.stop()
        end = time.perf_counter()
        server.raise_errors()
        ours_parts.start.append(ready - begin)
        ours_parts.stop.append(end - ready)
        return (end - begin) * 1000.0

    def peer() -> float:
        begin = time.perf_counter()
        server = SimpleFTPServer(
            username=USER, password=password, use_TLS=True, certfile=str(combined)
        )
        loopback = socket.socket()
        loopback.bind((LOOPBACK, 0))
        server._socket.close()
        server._socket, server._ftp_port = loopback, loopback.getsockname()[1]
        thread = threading.Thread(target=server.run, name="localftpserver", daemon=True)
        thread.start()
        try:
            auth_tls(server._ftp_port, pki.ca_file)
        finally:
            ready = time.perf_counter()
            server.stop()
            thread.join(10.0)
        end = time.perf_counter()
        if thread.is_alive():
            raise BenchError("pytest-localftpserver's thread did not end within 10 s")
        peer_parts.start.append(ready - begin)
        peer_parts.stop.append(end - ready)
        return (end - begin) * 1000.0

    try:
        samples = interleave({"ours": ours, "peer": peer}, ctx.repeat, ctx.warmup)
        row.ours, row.peer = samples["ours"], samples["peer"]
        row.notes += [ours_parts.note("ours", ctx.repeat), peer_parts.note("peer", ctx.repeat)]
    except Exception as exc:
        failure(row, exc)
    return [row]

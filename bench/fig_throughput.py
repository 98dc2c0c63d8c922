"""Figure: data-channel throughput of the embedded FTPS server, against stock pyftpdlib.

The client is curl for every FTP row (a C client, so the server is what is measured),
writing downloads to /dev/null. Throughput is the data phase, curl's ``time_total -
time_pretransfer``: curl 7.88 often stalls ~200 ms before an FTPS data connection (a poll
timeout in its own loop), the same for every server, which is not server throughput.
Servers, all in this process on 127.0.0.1:

* ours: :class:`harness.lab.ftps.FTPSLabServer`, TLS required on control and data;
* stock: a plain pyftpdlib ``FTPServer`` with its own ``TLS_FTPHandler`` subclass given
  only ``certfile``/``keyfile``, an authorizer and TLS required (pyftpdlib's defaults for
  everything else), run by its own ``IOLoop`` in a thread;
* plain: the same lab server class without TLS (plain FTP), a reference;
* ceiling: raw TLS from ``openssl s_server`` (downloads: ``-WWW`` serving the same file to
  curl over HTTPS/1.0, timed like the FTP rows; uploads: ``openssl s_client`` streaming
  the file to ``s_server``, timed from the first to the last byte ``s_server`` writes
  out), a reference. For uploads the tools are not a ceiling: both move 16 KiB per
  ``select()`` round and ``s_server`` writes every piece to a pipe.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    LOOPBACK,
    SERVER_NAME,
    BenchError,
    Context,
    MiB,
    Row,
    failure,
    free_port,
    interleave,
    netrc_file,
    random_file,
    random_password,
    stop_process,
    wait_for_listener,
    which,
)
from fig_ftps_start import quiet_pyftpdlib

FIGURE = "throughput"
TITLE = "embedded server FTPS data channel throughput (client: curl)"
USER = "bench"
DEADLINE = 600.0
BLOB = "blob.bin"


class StockServer:
    """pyftpdlib as its documentation shows it: TLS_FTPHandler subclass + certfile.

    ``serve_forever()`` runs its blocking loop in a thread; a check scheduled on the loop
    itself (every 0.1 s, in the loop's thread) closes everything once a stop is asked,
    which ends the loop. (Calling ``serve_forever(blocking=False)`` repeatedly instead
    formats a log line with ``getsockname()`` on every poll: 10% of the loop's time.)
    """

    def __init__(self, cert: Path, key: Path, home: Path, password: str) -> None:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import TLS_FTPHandler
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, password, str(home), perm="elradfmw")
        handler = type("StockTLSHandler", (TLS_FTPHandler,), {
            "certfile": str(cert), "keyfile": str(key), "ssl_context": None,
            "authorizer": authorizer, "tls_control_required": True, "tls_data_required": True,
        })  # fmt: skip
        self.server = FTPServer((LOOPBACK, 0), handler, ioloop=IOLoop())
        self.port = int(self.server.address[1])
        self._stop = threading.Event()
        self.server.ioloop.call_every(0.1, self._check_stop)
        self._thread = threading.Thread(target=self._serve, name="stock-pyftpdlib", daemon=True)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            self.server.close_all()

    def _serve(self) -> None:
        try:
            self.server.serve_forever(timeout=1.0, blocking=True, handle_exit=False)
        finally:
            self.server.close_all()

    def __enter__(self) -> StockServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


class OpensslCeiling:
    """``openssl s_server`` processes for the raw-TLS ceiling, started once per direction."""

    def __init__(self, ctx: Context, cert: Path, key: Path, home: Path, size: int) -> None:
        self.ctx, self.cert, self.key, self.home, self.size = ctx, cert, key, home, size
        self.openssl = which("openssl") or "openssl"
        self.curl = which("curl") or "curl"
        self.ca_file = str(ctx.pki().ca_file)
        self._processes: list[subprocess.Popen[bytes]] = []
        self._www_port = 0
        self._sink_port = 0
        self._received = 0
        self._first: float | None = None  # when the current upload's first byte arrived
        self._arrived = threading.Condition()
        self._reader: threading.Thread | None = None

    def _server(self, port: int, *extra: str, **popen: Any) -> subprocess.Popen[bytes]:
        # stdin stays an open pipe: s_server ends ("DONE") as soon as its stdin reaches EOF.
        process = subprocess.Popen(
            [self.openssl, "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(self.cert),
             "-key", str(self.key), "-quiet", *extra],
            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, **popen,
        )  # fmt: skip
        self._processes.append(process)
        wait_for_listener(LOOPBACK, port)
        if process.poll() is not None:
            raise BenchError(f"openssl s_server exited with {process.returncode}")
        return process

    def __enter__(self) -> OpensslCeiling:
        try:
            self._www_port = free_port()
            self._server(self._www_port, "-WWW", cwd=str(self.home), stdout=subprocess.DEVNULL)
            self._sink_port = free_port()
            sink = self._server(self._sink_port, stdout=subprocess.PIPE)
            self._reader = threading.Thread(target=self._count, args=(sink,), daemon=True)
            self._reader.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _count(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        while block := process.stdout.read1(4 * MiB):
            with self._arrived:
                if self._first is None:
                    self._first = time.perf_counter()
                self._received += len(block)
                self._arrived.notify_all()

    def download(self) -> float:
        done = subprocess.run(
            [self.curl, "-sS", "--cacert", self.ca_file, "--resolve",
             f"{SERVER_NAME}:{self._www_port}:{LOOPBACK}", "--max-time", str(int(DEADLINE)),
             "-o", "/dev/null", "-w", "%{size_download} %{time_pretransfer} %{time_total}",
             f"https://{SERVER_NAME}:{self._www_port}/{BLOB}"],
            capture_output=True, text=True, timeout=DEADLINE, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"curl from s_server -WWW: exit {done.returncode}: {done.stderr}")
        size, pretransfer, total = done.stdout.split()
        if int(size) < self.size:
            raise BenchError(f"s_server -WWW sent {size} bytes, expected {self.size}")
        return self.size / MiB / (float(total) - float(pretransfer))

    def upload(self) -> float:
        with self._arrived:
            goal = self._received + self.size
            self._first = None
        with (self.home / BLOB).open("rb") as source:
            client = subprocess.Popen(
                [self.openssl, "s_client", "-connect", f"{LOOPBACK}:{self._sink_port}", "-quiet",
                 "-servername", SERVER_NAME, "-CAfile", self.ca_file, "-verify_return_error"],
                stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            with self._arrived:
                arrived = self._arrived.wait_for(lambda: self._received >= goal, DEADLINE)
                end = time.perf_counter()
            if not arrived or self._first is None:
                raise BenchError("s_server did not receive the whole file")
        finally:
            # -quiet keeps s_client connected after its input ends: stop it ourselves.
            stop_process(client)
        return self.size / MiB / (end - self._first)

    def __exit__(self, *exc_info: object) -> None:
        for process in self._processes:
            with contextlib.suppress(OSError):
                if process.stdin:
                    process.stdin.close()
            stop_process(process)
        if self._reader is not None:
            self._reader.join(5.0)


def curl_ftp(curl: str, netrc: Path, ca_file: str, port: int, tls: bool, size: int,
             home: Path, upload: Path | None = None) -> float:  # fmt: skip
    """One curl session against an FTP(S) server; MiB/s of its data phase."""
    name = "upload.bin" if upload is not None else BLOB
    argv = [curl, "-sS", "--netrc-file", str(netrc), "--resolve",
            f"{SERVER_NAME}:{port}:{LOOPBACK}", "--connect-timeout", "10",
            "--max-time", str(int(DEADLINE)),
            "-w", "%{time_pretransfer} %{time_total}"]  # fmt: skip
    if tls:
        argv += ["--ssl-reqd", "--cacert", ca_file]
    argv += ["-T", str(upload)] if upload is not None else ["-o", "/dev/null"]
    argv.append(f"ftp://{SERVER_NAME}:{port}/{name}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE, check=False)
    if done.returncode != 0:
        raise BenchError(f"curl (port {port}): exit {done.returncode}: {done.stderr[-300:]}")
    if upload is not None:
        stored = home / name
        try:
            if stored.stat().st_size != size:
                raise BenchError(f"server stored {stored.stat().st_size} bytes, sent {size}")
        finally:
            stored.unlink(missing_ok=True)
    pretransfer, total = (float(value) for value in done.stdout.split())
    return size / MiB / (total - pretransfer)


def _rows(size: int) -> dict[str, list[Row]]:
    mib = size // MiB
    rows: dict[str, list[Row]] = {}
    for direction, label in (("download", f"server sends {mib} MiB (RETR)"),
                             ("upload", f"server receives {mib} MiB (STOR)")):  # fmt: skip
        name = f"FTPS throughput, {label}"
        rows[direction] = [
            Row(FIGURE, name, "lab FTPSLabServer", "stock pyftpdlib TLS_FTPHandler", "MiB/s",
                "higher", target=2.0, target_text="at least 2x stock pyftpdlib"),
            Row(FIGURE, name, "lab FTPSLabServer", "plain FTP, same lab server", "MiB/s",
                "higher", target=None, target_text="reference (no TLS)"),
            Row(FIGURE, name, "lab FTPSLabServer", "openssl s_server raw TLS (ceiling)",
                "MiB/s", "higher", target=None, target_text="reference (ceiling)"),
        ]  # fmt: skip
    return rows


def run(ctx: Context) -> list[Row]:
    size = ctx.settings.size
    rows = _rows(size)
    every = [row for group in rows.values() for row in group]
    curl = which("curl")
    if curl is None:
        for row in every:
            row.skip = "curl is not installed"
        return every
    if which("openssl") is None:
        for group in rows.values():
            group[2].skip = "openssl is not installed"
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser

    quiet_pyftpdlib()
    pki = ctx.pki()
    files = pki.files("lab")
    ca_file = str(pki.ca_file)
    home = ctx.directory("throughput-home")
    random_file(home / BLOB, size)
    password = random_password()
    netrc = netrc_file(ctx.directory("netrc"), SERVER_NAME, USER, password)
    users = [FTPUser(USER, password, home)]
    try:
        with contextlib.ExitStack() as stack:
            ours = stack.enter_context(FTPSLabServer(FTPSServerConfig(
                certfile=files.cert, keyfile=files.key, users=users, timeout=60.0)))
            plain = stack.enter_context(FTPSLabServer(FTPSServerConfig(
                tls=False, users=users, timeout=60.0)))
            stock = stack.enter_context(StockServer(files.cert, files.key, home, password))
            ceiling = None
            if not rows["download"][2].skip:
                ceiling = stack.enter_context(
                    OpensslCeiling(ctx, files.cert, files.key, home, size))  # fmt: skip
            for direction, group in rows.items():
                source = home / BLOB if direction == "upload" else None

                def ftp(port: int, tls: bool, src: Path | None = source) -> Callable[[], float]:
                    return lambda: curl_ftp(curl, netrc, ca_file, port, tls, size, home, src)

                sides: dict[str, Callable[[], float]] = {
                    "ours": ftp(ours.port, True),
                    "stock": ftp(stock.port, True),
                    "plain": ftp(plain.port, False),
                }
                if ceiling is not None:
                    sides["ceiling"] = ceiling.upload if source else ceiling.download
                try:
                    samples = interleave(sides, ctx.repeat, ctx.warmup)
                except Exception as exc:
                    for row in group:
                        if not row.skip:
                            failure(row, exc)
                    continue
                for row, side in zip(group, ("stock", "plain", "ceiling"), strict=True):
                    if side in samples:
                        row.ours, row.peer = samples["ours"], samples[side]
            ours.raise_errors()
    except Exception as exc:
        for row in every:
            if not (row.skip or row.error or row.ours):
                failure(row, exc)
    return every

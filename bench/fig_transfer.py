"""Figure: FTPS download and upload throughput of our client against curl, same server.

Ours is :class:`harness.protocols.ftps_client.FTPSClient` in its own process (see
``ftps_worker``); the peer is ``curl --ssl-reqd``. Each session is complete: TLS context
with the lab CA, connect, AUTH TLS, login, PBSZ 0, PROT P, TYPE I, one RETR or STOR, QUIT.
Every transfer is SHA-256 checked: our client hashes as it streams (it always does);
curl's download is piped into ``sha256sum``; uploads are hashed on the server side
afterwards (outside the timing, for both). Times are each client's own clock, never a
process start. The row is the data phase (throughput): ours from PASV to the final 226,
curl's ``time_total - time_pretransfer``; whole-session medians are in the notes. The
split matters: curl 7.88 often stalls ~200 ms before its FTPS data connection (a poll
timeout in its own loop, seen against every server), which is not throughput.

Servers: the embedded lab server (TLS required on control and data, session reuse
required), and a real vsftpd when it is installed and the bench runs as root.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ftps_worker
from common import (
    LOOPBACK,
    SERVER_NAME,
    BenchError,
    Context,
    MiB,
    Row,
    failure,
    interleave,
    netrc_file,
    random_file,
    random_password,
    sha256_file,
    which,
)

FIGURE = "transfer"
TITLE = "FTPS download and upload, SHA-256 checked: our client vs curl"
USER = "bench"
TARGET = 0.9  # the issue: our client within 10% of curl's throughput
DEADLINE = 600.0


class Endpoint:
    """One FTPS server both clients talk to, and where its files live on disk."""

    def __init__(self, label: str, port: int, user: str, password: str, home: Path) -> None:
        self.label, self.port, self.user = label, port, user
        self.password, self.home = password, home


class Clients:
    """Both clients, sharing the test file, CA and credentials for one endpoint."""

    def __init__(
        self, ctx: Context, endpoint: Endpoint, blob: str, digest: str, local: Path
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.blob, self.digest, self.local = blob, digest, local
        self.size = local.stat().st_size
        self.ca_file = str(ctx.pki().ca_file)
        self.netrc = netrc_file(ctx.directory("netrc"), SERVER_NAME, endpoint.user,
                                endpoint.password)  # fmt: skip
        self.curl = which("curl") or "curl"
        self.hasher = which("sha256sum")
        self.facts: dict[str, Any] = {}
        self.sessions: dict[str, list[float]] = {}
        self.pool = ftps_worker.pool()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _mib_s(self, side: str, transfer: float, session: float) -> float:
        """Throughput of the data phase; the whole session's time is kept for the notes."""
        self.sessions.setdefault(side, []).append(session)
        return self.size / MiB / transfer

    def _check_upload(self, name: str) -> None:
        stored = self.endpoint.home / name
        try:
            if sha256_file(stored) != self.digest:
                raise BenchError(f"uploaded {name} differs from the source (SHA-256)")
        finally:
            stored.unlink(missing_ok=True)

    # -- ours --------------------------------------------------------------------------------

    def _ours(self, operation: str, remote: str) -> dict[str, Any]:
        end = self.endpoint
        future = self.pool.submit(
            ftps_worker.session, LOOPBACK, end.port, self.ca_file, SERVER_NAME, end.user,
            end.password, operation, remote, str(self.local),
        )  # fmt: skip
        result: dict[str, Any] = future.result(timeout=DEADLINE)
        if not result["ok"]:
            raise BenchError(f"our {operation} failed: {result['error'] or result['final']}")
        if result["size"] != self.size or result["sha256"] != self.digest:
            raise BenchError(f"our {operation}: {result['size']} bytes, SHA-256 mismatch")
        self.facts = result
        return result

    def ours_download(self) -> float:
        result = self._ours("download", self.blob)
        return self._mib_s("ours", result["transfer_seconds"], result["seconds"])

    def ours_upload(self) -> float:
        result = self._ours("upload", "upload-ours.bin")
        self._check_upload("upload-ours.bin")
        return self._mib_s("ours", result["transfer_seconds"], result["seconds"])

    # -- curl --------------------------------------------------------------------------------

    def _curl_argv(self, path: str) -> list[str]:
        port = self.endpoint.port
        return [
            self.curl, "-sS", "--ssl-reqd", "--cacert", self.ca_file, "--netrc-file",
            str(self.netrc), "--resolve", f"{SERVER_NAME}:{port}:{LOOPBACK}",
            "--connect-timeout", "10", "--max-time", str(int(DEADLINE)),
            f"ftp://{SERVER_NAME}:{port}/{path}",
        ]  # fmt: skip

    WRITE_OUT = "%{time_pretransfer} %{time_total}\n"

    def _curl_rate(self, text: str, what: str) -> float:
        """MiB/s from curl's -w line: the transfer is time_total - time_pretransfer."""
        try:
            pretransfer, total = (float(v) for v in text.strip().splitlines()[-1].split())
        except (ValueError, IndexError):
            raise BenchError(f"curl {what}: no timing line in {text[-300:]!r}") from None
        return self._mib_s("curl", total - pretransfer, total)

    def curl_download(self) -> float:
        argv = [*self._curl_argv(self.blob), "-w", "%{stderr}" + self.WRITE_OUT]
        if self.hasher is None:  # no sha256sum: to a file, hashed afterwards
            target = self.ctx.workdir / "curl-download.bin"
            done = subprocess.run([*argv, "-o", str(target)], capture_output=True, text=True,
                                  timeout=DEADLINE, check=False)  # fmt: skip
            try:
                if done.returncode != 0:
                    raise BenchError(f"curl download: exit {done.returncode}: {done.stderr[-300:]}")
                if sha256_file(target) != self.digest:
                    raise BenchError("curl download: SHA-256 mismatch")
            finally:
                target.unlink(missing_ok=True)
            return self._curl_rate(done.stderr, "download")
        curl = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        hasher = subprocess.Popen([self.hasher], stdin=curl.stdout, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        assert curl.stdout is not None and curl.stderr is not None
        curl.stdout.close()  # sha256sum holds the only reading end
        try:
            digest_line, _ = hasher.communicate(timeout=DEADLINE)
            errors = curl.stderr.read().decode(errors="replace")
            code = curl.wait(timeout=10)
        finally:
            for process in (curl, hasher):
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
            curl.stderr.close()
        if code != 0:
            raise BenchError(f"curl download: exit {code}: {errors[-300:]}")
        if digest_line.split()[:1] != [self.digest.encode()]:
            raise BenchError("curl download: SHA-256 mismatch")
        return self._curl_rate(errors, "download")

    def curl_upload(self) -> float:
        argv = [*self._curl_argv("upload-curl.bin"), "-T", str(self.local), "-w", self.WRITE_OUT]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE, check=False)
        if done.returncode != 0:
            raise BenchError(f"curl upload: exit {done.returncode}: {done.stderr[-300:]}")
        rate = self._curl_rate(done.stdout, "upload")
        self._check_upload("upload-curl.bin")
        return rate


def _rows(server: str, size: int) -> tuple[Row, Row]:
    mib = size // MiB
    down = Row(FIGURE, f"FTPS download {mib} MiB from {server}", "harness FTPSClient",
               "curl --ssl-reqd | sha256sum", "MiB/s", "higher", target=TARGET,
               target_text="within 10% of curl")  # fmt: skip
    up = Row(FIGURE, f"FTPS upload {mib} MiB to {server}", "harness FTPSClient",
             "curl --ssl-reqd -T", "MiB/s", "higher", target=TARGET,
             target_text="within 10% of curl")  # fmt: skip
    return down, up


def _measure(ctx: Context, clients: Clients, down: Row, up: Row) -> None:
    pairs: list[tuple[Row, Callable[[], float], Callable[[], float]]] = [
        (down, clients.ours_download, clients.curl_download),
        (up, clients.ours_upload, clients.curl_upload),
    ]
    for row, ours, peer in pairs:
        clients.sessions.clear()
        try:
            samples = interleave({"ours": ours, "peer": peer}, ctx.repeat, ctx.warmup)
            row.ours, row.peer = samples["ours"], samples["peer"]
            facts = clients.facts
            ours_s, curl_s = (statistics.median(clients.sessions[side][-ctx.repeat:])
                              for side in ("ours", "curl"))  # fmt: skip
            row.notes.append(
                f"whole session (connect to QUIT) medians: ours {ours_s:.3f} s, curl "
                f"{curl_s:.3f} s; {facts.get('tls_version')} {facts.get('cipher')}, data "
                f"session reused: {facts.get('session_reused')}"
            )
        except Exception as exc:
            failure(row, exc)


def run(ctx: Context) -> list[Row]:
    lab_down, lab_up = _rows("the lab server", ctx.settings.size)
    vs_down, vs_up = _rows("vsftpd", ctx.settings.size)
    rows = [lab_down, lab_up, vs_down, vs_up]
    if which("curl") is None:
        for row in rows:
            row.skip = "curl is not installed"
        return rows
    from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser

    pki = ctx.pki()
    files = pki.files("lab")
    home = ctx.directory("transfer-home")
    digest = random_file(home / "blob.bin", ctx.settings.size)
    password = random_password()
    config = FTPSServerConfig(
        certfile=files.cert, keyfile=files.key, require_session_reuse=True,
        users=[FTPUser(USER, password, home)], timeout=60.0,
    )  # fmt: skip
    try:
        with FTPSLabServer(config) as server:
            clients = Clients(ctx, Endpoint("lab", server.port, USER, password, home), "blob.bin",
                              digest, home / "blob.bin")  # fmt: skip
            try:
                _measure(ctx, clients, lab_down, lab_up)
            finally:
                clients.close()
    except Exception as exc:
        for row in (lab_down, lab_up):
            if not row.error:
                failure(row, exc)
    _vsftpd(ctx, files, home / "blob.bin", digest, vs_down, vs_up)
    shutil.rmtree(home, ignore_errors=True)
    return rows


def _vsftpd(ctx: Context, files: Any, source: Path, digest: str, down: Row, up: Row) -> None:
    import vsftpd_server

    reason = vsftpd_server.unavailable()
    if reason is not None:
        down.skip = up.skip = reason
        return
    try:
        with vsftpd_server.Vsftpd(files.cert, files.key, parent=ctx.data_dir) as server:
            local = server.put("blob.bin", source)
            endpoint = Endpoint("vsftpd", server.port, server.user, server.password, server.home)
            clients = Clients(ctx, endpoint, "blob.bin", digest, local)
            try:
                _measure(ctx, clients, down, up)
                for row in (down, up):
                    row.notes.append(server.banner)
            finally:
                clients.close()
    except Exception as exc:
        for row in (down, up):
            if not row.error:
                failure(row, exc)

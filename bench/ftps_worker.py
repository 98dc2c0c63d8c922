"""The harness's FTPS client, run in a separate process for the transfer figures.

A real client is not in the server's process: running it in a thread next to the lab
server would make both share one interpreter lock and measure that instead. The worker
process is started once (imports done) and handed one session at a time; it times the
session itself, from building the TLS context to QUIT, as curl's ``time_total`` does.
Credentials arrive through the pool's pipe, never on a command line.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(size):
            yield block


def session(
    host: str,
    port: int,
    ca_file: str,
    server_name: str,
    user: str,
    password: str,
    operation: str,
    remote: str,
    local: str | None = None,
) -> dict[str, Any]:
    """One FTPS session: AUTH TLS, login, PBSZ/PROT P, TYPE I, one RETR or STOR, QUIT.

    ``seconds`` is the whole session; ``transfer_seconds`` the data command alone, from
    PASV through the data connection and its TLS handshake to the final 226.
    """
    from harness.protocols.ftps_client import CHUNK, FTPSClient
    from harness.protocols.tls import Trust, client_context

    begin = time.perf_counter()
    context = client_context(Trust(ca_file=Path(ca_file)))
    client = FTPSClient(host, port, context=context, server_name=server_name, timeout=10.0,
                        transfer_timeout=600.0)  # fmt: skip
    with client:
        steps = [("banner", client.connect(), 220), ("AUTH TLS", client.auth_tls(), 234)]
        first, second = client.login(user, password)
        steps += [("USER", first, 331), ("PASS", second, 230)]
        steps += [("PBSZ", client.pbsz(0), 200), ("PROT", client.prot("P"), 200)]
        steps += [("TYPE", client.type_binary(), 200)]
        for label, reply, code in steps:
            if reply is None or reply.code != code:
                got = reply.first if reply is not None else "nothing"
                raise RuntimeError(f"{label} answered {got!r}, expected {code}")
        if operation == "download":
            record = client.retr(remote)
        elif operation == "upload" and local is not None:
            record = client.stor(remote, _chunks(Path(local), CHUNK))
        else:
            raise ValueError(f"unknown operation {operation!r}")
        client.quit_quietly()
    seconds = time.perf_counter() - begin
    return {
        "seconds": seconds,
        "transfer_seconds": record.duration,
        "ok": record.ok,
        "error": record.error,
        "final": record.final.first if record.final else None,
        "size": record.size,
        "sha256": record.sha256,
        "tls_version": record.tls.version if record.tls else None,
        "cipher": record.tls.cipher if record.tls else None,
        "session_reused": record.session_reused,
    }


def pool() -> ProcessPoolExecutor:
    """One spawned worker process (no fork of a process that runs server threads)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

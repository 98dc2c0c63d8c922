"""The embedded lab under load: every client served, every byte verified, no error.

Bounded in count and time, loopback only. The figures (wall time, errors) are printed
with ``-s`` and kept in docs/performance.md; no timing is asserted here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.certs import LabPKI, lab_pki
from harness.checks import run_check
from harness.lab.ftps import FTPSLabServer, FTPSServerConfig, FTPUser
from harness.lab.mailbox import Mailbox
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.protocols.tls import Trust
from harness.results import Status
from harness.targets import Target

FTPS_CLIENTS = 100
MESSAGES = 200
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return lab_pki()


@pytest.fixture()
def ftps(pki: LabPKI) -> Iterator[tuple[FTPSLabServer, Target]]:
    password = secrets.token_urlsafe(12)
    files = pki.files("lab")
    config = FTPSServerConfig(
        certfile=files.cert,
        keyfile=files.key,
        require_session_reuse=True,
        users=[FTPUser("load", password)],
        max_cons=4 * FTPS_CLIENTS,
        timeout=60.0,
    )
    with FTPSLabServer(config) as server:
        target = Target(
            name="load",
            protocol="ftps",
            host=server.host,
            port=server.port,
            trust=Trust(ca_file=pki.ca_file),
            server_name="localhost",
            user="load",
            password=password,
            timeout=30.0,
            passive_address=server.host,
        )
        yield server, target


def test_ftps_lab_serves_100_concurrent_clients_byte_for_byte(
    ftps: tuple[FTPSLabServer, Target], capsys: pytest.CaptureFixture[str]
) -> None:
    server, target = ftps
    params = {"files": 1, "size": 128 * 1024}
    started = time.perf_counter()
    with ThreadPoolExecutor(FTPS_CLIENTS) as pool:
        results = list(
            pool.map(lambda _: run_check("transfers", target, params), range(FTPS_CLIENTS))
        )
    elapsed = time.perf_counter() - started
    failed = [r.describe() for r in results if r.status is not Status.PASS]
    assert not failed, failed[0]
    assert server.errors == []
    handshakes = server.data_handshakes
    assert handshakes and all(h.session_reused and not h.refused for h in handshakes)
    with capsys.disabled():
        print(
            f"\nFTPS load: {FTPS_CLIENTS} clients x (STOR+LIST+RETR 128 KiB, SHA-256) "
            f"in {elapsed:.2f} s, {len(handshakes)} data handshakes, errors 0"
        )


def test_submission_lab_takes_200_concurrent_messages_all_delivered(
    pki: LabPKI, capsys: pytest.CaptureFixture[str]
) -> None:
    password = secrets.token_urlsafe(12)
    files = pki.files("lab")
    mailbox = Mailbox()
    config = SMTPServerConfig(
        role="submission", users={"load": password}, cert_file=files.cert, key_file=files.key
    )
    with SMTPLabServer(config, mailbox) as server:
        target = Target(
            name="load",
            protocol="submission",
            host=server.host,
            port=server.port,
            trust=Trust(ca_file=pki.ca_file),
            server_name="localhost",
            user="load",
            password=password,
            timeout=30.0,
        )
        started = time.perf_counter()
        with ThreadPoolExecutor(MESSAGES) as pool:
            results = list(
                pool.map(
                    lambda _: run_check("submit-message", target, {"mailbox": mailbox}),
                    range(MESSAGES),
                )
            )
        elapsed = time.perf_counter() - started
    failed = [r.describe() for r in results if r.status is not Status.PASS]
    assert not failed, failed[0]
    ids = {r.evidence["message_id"] for r in results}
    assert len(ids) == MESSAGES == len(mailbox)
    for result in results:
        stored = mailbox.find(result.evidence["message_id"])
        assert stored is not None and stored.sha256 == result.evidence["sha256"]
    with capsys.disabled():
        print(
            f"\nsubmission load: {MESSAGES} concurrent STARTTLS+AUTH+DATA sessions "
            f"in {elapsed:.2f} s, all in the mailbox byte for byte, errors 0"
        )


def _own_socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = str(fd.readlink())
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _listening_ports() -> set[tuple[str, int]]:
    """TCP sockets this process listens on, from /proc (Linux); other processes on the
    machine (a parallel CI job) do not count."""
    own = _own_socket_inodes()
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in own:  # LISTEN, ours
                address, port = fields[1].rsplit(":", 1)
                found.add((address, int(port, 16)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_a_closed_lab_leaves_no_thread_port_or_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile
    import threading

    from harness.lab.pool import LabPool
    from harness.scenario import LabServer

    lab_pki()  # the certificate cache is meant to stay; create it before counting
    temp = tmp_path / "temp"  # a private temp dir: other processes' files do not count
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    threads_before = set(threading.enumerate())
    ports_before = _listening_ports()
    temp_before = set(temp.iterdir())
    pool = LabPool()
    servers = [
        LabServer("f", "ftps", {"passive_ports": 4}),
        LabServer("i", "ftps", {"implicit": True}),
        LabServer("n", "ftps-nat", {"masquerade": "external"}),
        LabServer("s", "smtp", {"role": "submission"}),
        LabServer("m", "smtp-nat", {}),
        LabServer("o", "op25b-network", {"port25": "filtered"}),
    ]
    for server in servers:
        target = pool.target_for(server)
        check = "transfers" if target.protocol.startswith("ftps") else "smtp-banner"
        result = run_check(check, target, pool.params_for(server, check, {}))
        assert result.status is Status.PASS, result.describe()
    assert _listening_ports() - ports_before
    assert set(temp.iterdir()) - temp_before, "the lab's home directories live in temp"
    pool.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(threading.enumerate()) - threads_before:
        time.sleep(0.05)
    assert [t.name for t in set(threading.enumerate()) - threads_before] == []
    assert _listening_ports() - ports_before == set()
    assert set(temp.iterdir()) - temp_before == set()

"""A real third-party FTPS client (curl) against the embedded lab server, explicit FTPS.

The lab server runs with policy ``require`` and ``require_session_reuse=True``, the
strictest setting (vsftpd's ``require_ssl_reuse=YES``): curl resumes the control TLS
session on every data connection, so uploads, downloads and listings must all work,
byte for byte. Without ``--ssl-reqd`` curl must be turned away before it sends a
password, and with session reuse switched off (``--no-sessionid``) its data connections
must be refused with ``522``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.lab.ftps import FTPSLabServer, FTPSServerConfig
from harness.lab.ftps_handlers import CONTROL_TLS_REQUIRED_REPLY, REUSE_REQUIRED_REPLY
from harness.lab.pool import free_port_range

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

CURL = shutil.which("curl") or "/usr/bin/curl"
USER = "curl-user"
PASSWORD = "curl-Ftps-Only-Test-5127"
REDACTED = "********"
PAYLOAD_SIZE = 1024 * 1024 + 4099  # ~1 MiB, not a multiple of any buffer size
TLS_NAMES = {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}
TLS_FLAGS = {"1.2": ["--tlsv1.2", "--tls-max", "1.2"], "1.3": ["--tlsv1.3"]}
_PASSIVE_PORT = re.compile(r"^< 229 .*\(\|\|\|(\d+)\|\)", re.MULTILINE)


@pytest.fixture(scope="module")
def curl() -> str:
    if not os.access(CURL, os.X_OK):
        pytest.skip("curl is not installed (Debian package curl); this test needs a real client")
    return CURL


@pytest.fixture
def netrc(tmp_path: Path) -> Path:
    """Credentials in a 0600 file, so the password never appears on a command line."""
    path = tmp_path / "netrc"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    return path


@pytest.fixture
def server(tls_files: dict[str, Path]) -> Iterator[FTPSLabServer]:
    """An explicit-FTPS lab server that requires TLS and session reuse on data."""
    config = FTPSServerConfig(
        certfile=tls_files["cert"],
        keyfile=tls_files["key"],
        policy="require",
        require_session_reuse=True,
        passive_ports=free_port_range(4, ("127.0.0.1",)),
        users=[(USER, PASSWORD)],
    )
    with FTPSLabServer(config) as lab:
        yield lab
        assert lab.errors == []


def _curl(
    curl: str, netrc: Path, url: str, *args: str | Path, tls_required: bool = True,
    ca: Path | None = None, max_time: int = 10,
) -> subprocess.CompletedProcess[str]:
    """Run curl verbosely, bounded in time; the password is redacted from its output
    (curl's ``-v`` echoes ``PASS``), so it cannot reach a log or an assertion message."""
    command = [
        curl, "--verbose", "--show-error", "--no-progress-meter",
        "--netrc-file", str(netrc),
        "--connect-timeout", "5", "--max-time", str(max_time),
    ]
    if tls_required:
        command.append("--ssl-reqd")
    if ca is not None:
        command += ["--cacert", str(ca)]
    command += [str(arg) for arg in args]
    command.append(url)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=max_time + 10,
                               check=False)
    completed.stdout = completed.stdout.replace(PASSWORD, REDACTED)
    completed.stderr = completed.stderr.replace(PASSWORD, REDACTED)
    return completed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(65536), b""):
            digest.update(chunk)
    return digest.hexdigest()


# curl up to at least 7.88 may close a TLS 1.3 upload's data connection with the server's
# session ticket unread, so the kernel sends a reset and the tail of the file can be lost
# (curl/curl#6149): uploads are pinned to TLS 1.2; downloads and listings use ``tls``.
UPLOAD_TLS = "1.2"


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_curl_uploads_downloads_and_lists_over_explicit_ftps(
    curl: str, server: FTPSLabServer, tls_files: dict[str, Path], netrc: Path,
    tmp_path: Path, tls: str,
) -> None:
    payload = os.urandom(PAYLOAD_SIZE)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    download = tmp_path / "download.bin"
    name = f"curl-{os.urandom(4).hex()}.bin"
    base = f"ftp://127.0.0.1:{server.port}/"
    ca = tls_files["ca"]
    flags = TLS_FLAGS[tls]

    stored = _curl(curl, netrc, base + name, *TLS_FLAGS[UPLOAD_TLS], "--upload-file", upload,
                   ca=ca)
    assert stored.returncode == 0, stored.stderr
    on_server = (server.home(USER) / name).read_bytes()
    assert len(on_server) == PAYLOAD_SIZE, stored.stderr
    assert on_server == payload  # what the server wrote, byte for byte

    fetched = _curl(curl, netrc, base + name, *flags, "--output", download, ca=ca)
    assert fetched.returncode == 0, fetched.stderr
    assert download.stat().st_size == PAYLOAD_SIZE
    assert _sha256(download) == hashlib.sha256(payload).hexdigest()

    listed = _curl(curl, netrc, base, *flags, "--list-only", ca=ca)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [name]

    # The password went only over TLS: curl negotiated it before USER.
    for run, version in ((stored, UPLOAD_TLS), (fetched, tls), (listed, tls)):
        log = run.stderr
        assert log.index("< 234 ") < log.index("> USER ") < log.index("> PASS ")
        assert f"SSL connection using {TLS_NAMES[version]}" in log
        assert "> PROT P" in log and "< 200 " in log
        ports = [int(port) for port in _PASSIVE_PORT.findall(log)]
        low, high = server.config.passive_ports or (0, 0)
        assert ports and all(low <= port <= high for port in ports), ports
    assert PASSWORD not in "".join(run.stderr + run.stdout for run in (stored, fetched, listed))

    # One data connection per curl run, each resumed the control session (else 522).
    handshakes = server.data_handshakes
    assert len(handshakes) == 3
    assert all(h.session_reused and not h.refused for h in handshakes), handshakes
    assert [h.tls_version for h in handshakes] == [TLS_NAMES[v] for v in (UPLOAD_TLS, tls, tls)]
    assert server.tls_failures == []


def test_curl_without_ssl_reqd_is_refused_before_the_password(
    curl: str, server: FTPSLabServer, netrc: Path
) -> None:
    """Plain ``ftp://`` without ``--ssl-reqd``/``--ssl``: curl sends USER in clear text,
    the lab answers 550 (IIS 'Require SSL' style) and curl gives up with exit 67
    (login denied) without ever sending PASS."""
    (server.home(USER) / "secret.txt").write_text("not for clear-text clients\n")
    result = _curl(curl, netrc, f"ftp://127.0.0.1:{server.port}/secret.txt",
                   tls_required=False)
    assert result.returncode == 67, result.stderr
    assert f"< {CONTROL_TLS_REQUIRED_REPLY}" in result.stderr
    assert "curl: (67) Access denied: 550" in result.stderr
    assert "AUTH" not in result.stderr  # curl never tried TLS
    assert "> PASS" not in result.stderr
    assert result.stdout == ""
    assert server.data_handshakes == []


def test_curl_without_session_reuse_is_refused_522(
    curl: str, server: FTPSLabServer, tls_files: dict[str, Path], netrc: Path
) -> None:
    """``--no-sessionid`` makes curl start every data connection with a full handshake;
    ``require_session_reuse`` refuses it with 522 and curl fails (exit 18)."""
    (server.home(USER) / "listed.txt").write_text("hello\n")
    result = _curl(curl, netrc, f"ftp://127.0.0.1:{server.port}/", "--list-only",
                   "--no-sessionid", ca=tls_files["ca"])
    assert result.returncode == 18, result.stderr
    assert f"< {REUSE_REQUIRED_REPLY}" in result.stderr
    assert len(server.data_handshakes) == 1
    handshake = server.data_handshakes[0]
    assert handshake.refused and not handshake.session_reused


# --- no byte of a refused transfer reaches curl ---------------------------------------------

REPEAT = 50
# One curl run per case with REPEAT URLs (``{n}`` is the URL's number), eight at a time:
# run one after the other, curl 7.88 waits a second before it reuses a control connection
# whose last transfer was refused.
NO_REUSE_CASES = {
    "LIST": ("{base}", ()),
    "NLST": ("{base}", ("--list-only",)),
    "NLST-empty": ("{base}empty/", ("--list-only",)),
    "RETR": ("{base}big.bin", ()),
    "STOR": ("{base}curl-up-{n}.bin", ()),
}


@pytest.fixture(scope="module")
def strict_server(tls_files: dict[str, Path]) -> Iterator[FTPSLabServer]:
    """Like ``server``, shared by the loops below, with kernel-chosen passive ports: a
    range of four, reused 50 times in a row, makes curl's connects wait for SYN retries."""
    config = FTPSServerConfig(
        certfile=tls_files["cert"], keyfile=tls_files["key"], policy="require",
        require_session_reuse=True, users=[(USER, PASSWORD)],
    )  # fmt: skip
    with FTPSLabServer(config) as lab:
        home = lab.home(USER)
        (home / "big.bin").write_bytes(os.urandom(256 * 1024))
        (home / "listed.txt").write_text("listed\n")
        (home / "empty").mkdir()
        yield lab
        assert lab.errors == []


@pytest.mark.parametrize("case", sorted(NO_REUSE_CASES))
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_curl_without_session_reuse_receives_no_byte(
    curl: str, strict_server: FTPSLabServer, tls_files: dict[str, Path], netrc: Path,
    tmp_path: Path, tls: str, case: str,
) -> None:
    """``--no-sessionid``, 50 transfers: every data connection is refused, and curl's
    own count of the bytes it received (``%{size_download}``) stays 0; an upload leaves
    nothing in the file. curl 7.88 starts the data handshake as soon as the data
    connection is up, so it races its data command (both orders happen);
    tests/lab/test_ftps_data_refusal.py drives each order on purpose."""
    server = strict_server
    home = server.home(USER)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(64 * 1024))
    template, flags = NO_REUSE_CASES[case]
    base = f"ftp://127.0.0.1:{server.port}/"
    args: list[str | Path] = [*TLS_FLAGS[tls], *flags, "--no-sessionid",
                              "--parallel", "--parallel-max", "8",
                              "--write-out", "%{size_download}\\n"]
    urls: list[str | Path] = []
    for n in range(REPEAT):
        if case == "STOR":
            urls += ["--upload-file", upload]
        else:
            urls += ["--output", "/dev/null"]
        urls.append(template.format(base=base, n=n))
    before = len(server.data_handshakes)
    result = _curl(curl, netrc, str(urls.pop()), *args, *urls, ca=tls_files["ca"],
                   max_time=60)
    assert result.returncode != 0, result.stderr  # every transfer failed
    received = [int(line) for line in result.stdout.split()]
    assert received == [0] * REPEAT, received
    handshakes = server.data_handshakes[before:]
    assert len(handshakes) == REPEAT
    assert all(h.refused and not h.session_reused for h in handshakes)
    assert {h.tls_version for h in handshakes} == {TLS_NAMES[tls]}
    if case == "STOR":
        stored = [home / f"curl-up-{n}.bin" for n in range(REPEAT)]
        sizes = [path.stat().st_size for path in stored if path.exists()]
        for path in stored:
            path.unlink(missing_ok=True)
        assert not any(sizes), sizes

"""A real third-party client (curl) submits through the embedded lab, byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.lab.smtp import SMTPLabServer, SMTPServerConfig

pytestmark = pytest.mark.interop

CURL = shutil.which("curl") or "/usr/bin/curl"
PASSWORD = "curl-Only-Test-4411"


@pytest.fixture(scope="module")
def curl() -> str:
    if not os.access(CURL, os.X_OK):
        pytest.skip(
            "curl is not installed (Debian package curl); this interop test needs a real "
            "SMTP client"
        )
    return CURL


def _netrc(directory: Path, password: str) -> Path:
    """Credentials in a 0600 file, so they never appear on a command line."""
    path = directory / "netrc"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"machine 127.0.0.1 login alice password {password}\n")
    return path


@pytest.mark.parametrize(("role", "scheme"), [("submission", "smtp"), ("submissions", "smtps")])
def test_curl_submits_through_the_lab(
    curl: str, tls_files: dict[str, Path], tmp_path: Path, role: str, scheme: str
) -> None:
    message_id = f"<{uuid.uuid4().hex}@curl.test>"
    body = b"Hello from curl.\r\n.A line with a leading dot.\r\nBye.\r\n"
    message = (
        b"From: <alice@ftps-lab.test>\r\n"
        b"To: <bob@example.invalid>\r\n"
        b"Subject: curl interop\r\n"
        + f"Message-ID: {message_id}\r\n".encode()
        + b"\r\n"
        + body
    )
    upload = tmp_path / "message.eml"
    upload.write_bytes(message)
    config = SMTPServerConfig(
        role=role,
        users={"alice": PASSWORD},
        cert_file=tls_files["cert"],
        key_file=tls_files["key"],
    )
    with SMTPLabServer(config) as server:
        command = [
            curl,
            "--silent", "--show-error",
            f"{scheme}://127.0.0.1:{server.port}/probe.ftps-lab.test",
            "--cacert", str(tls_files["ca"]),
            "--mail-from", "alice@ftps-lab.test",
            "--mail-rcpt", "bob@example.invalid",
            "--netrc-file", str(_netrc(tmp_path, PASSWORD)),
            "--upload-file", str(upload),
            "--max-time", "10",
        ]
        if scheme == "smtp":
            command.append("--ssl-reqd")
        completed = subprocess.run(command, capture_output=True, timeout=15, check=False)
        assert completed.returncode == 0, completed.stderr.decode(errors="replace")
        stored = server.mailbox.wait_for(message_id, timeout=2)
        assert server.errors == []
    assert stored is not None, "curl reported success but nothing reached the mailbox"
    assert stored.mail_from == "alice@ftps-lab.test"
    assert stored.rcpt_tos == ("bob@example.invalid",)
    assert stored.user == "alice" and stored.tls
    assert stored.data == message  # curl adds nothing for a CRLF message with headers
    assert stored.data.endswith(body)

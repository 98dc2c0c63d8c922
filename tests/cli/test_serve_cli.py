"""``lab serve``: what it prints is enough to log in, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.checks import run_check
from harness.protocols.tls import Trust
from harness.targets import Target

SERVE = [sys.executable, "-c", "from harness.cli import main; main()", "serve"]


def _read_until_ready(process: subprocess.Popen[str], timeout: float = 20.0) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "CA file" in line:  # the last line printed for a server
            break
    return lines


def test_serve_ftps_prints_what_a_person_needs_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [*SERVE, "ftps"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = _read_until_ready(process)
        text = "\n".join(lines)
        port = int(re.search(r"ftps://127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        password = re.search(r"password (\S+)", text).group(1)  # type: ignore[union-attr]
        ca_file = re.search(r"CA file (\S+)", text).group(1)  # type: ignore[union-attr]
        assert re.search(r"SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}", text)
        target = Target(
            name="served",
            protocol="ftps",
            host="127.0.0.1",
            port=port,
            trust=Trust(ca_file=Path(ca_file)),
            server_name="localhost",
            user="labuser",
            password=password,
            timeout=5.0,
        )
        result = run_check("login", target, {})
        assert result.status.value == "pass", result.describe()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
        assert "stopped cleanly" in (process.stderr.read() if process.stderr else "")
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_listening_beyond_loopback_is_warned_about() -> None:
    from harness.cli.serve import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    assert "not loopback" in (exposure_warning("0.0.0.0") or "")
    assert "not loopback" in (exposure_warning("192.0.2.7") or "")

"""wait-listening: a late server is waited for; a dead or filtered port is a diagnosis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from harness.checks import run_check
from harness.lab.pool import closed_port
from harness.lab.portblock import PortBlock
from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.results import Status
from harness.targets import Target


def _target(port: int, protocol: str = "smtp") -> Target:
    return Target(name="late", protocol=protocol, host="127.0.0.1", port=port, timeout=2.0)


def test_a_server_that_starts_late_is_waited_for(tls_files: dict[str, Path]) -> None:
    port = closed_port()
    config = SMTPServerConfig(
        role="mta", port=port, cert_file=tls_files["cert"], key_file=tls_files["key"]
    )
    server = SMTPLabServer(config)
    starter = threading.Timer(0.6, server.start)
    starter.start()
    try:
        result = run_check("wait-listening", _target(port), {"timeout": 10, "interval": 0.1})
    finally:
        starter.join()
        server.stop()
    assert result.status is Status.PASS, result.describe()
    assert result.evidence["attempts"] > 1 and result.evidence["waited_s"] >= 0.5
    assert "greeting: 220" in result.observed


def test_nothing_listening_fails_within_the_deadline() -> None:
    started = time.monotonic()
    result = run_check("wait-listening", _target(closed_port()), {"timeout": 1, "interval": 0.1})
    assert time.monotonic() - started < 2.0
    assert result.status is Status.FAIL and "connection refused" in result.summary


def test_a_filtered_port_fails_within_the_deadline() -> None:
    with PortBlock("filtered") as block:
        started = time.monotonic()
        result = run_check("wait-listening", _target(block.port), {"timeout": 1})
    assert time.monotonic() - started < 2.5
    assert result.status is Status.FAIL and "no answer" in result.summary

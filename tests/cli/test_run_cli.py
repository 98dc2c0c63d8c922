"""``lab run``: the scenarios through the command line, and Ctrl-C in the middle of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = [sys.executable, "-c", "from harness.cli import main; main()"]


def test_run_passes_one_scenario() -> None:
    run = subprocess.run(
        [*LAB, "run", "scenarios/ftps-policy-contrast.yaml", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert "passed" in run.stdout


def test_ctrl_c_during_a_run_stops_it_promptly_and_cleanly() -> None:
    # Unbuffered: through a pipe the child would hold its first PASSED lines in an 8 KiB
    # buffer, and a fast machine could finish the whole run before the signal.
    process = subprocess.Popen(
        [*LAB, "run", "scenarios", "-v"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A suite started in the background (`cmd &` in a script) inherits SIGINT ignored,
        # and Python keeps an ignored SIGINT ignored: give the child the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the lab is up and checks run
        line = process.stdout.readline()
        seen.append(line)
        if "PASSED" in line or not line:
            break
    process.send_signal(signal.SIGINT)
    interrupted_at = time.monotonic()
    try:
        rest, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    stopped_after = time.monotonic() - interrupted_at
    output = "".join(seen) + rest
    assert process.returncode == 2, output[-3000:]  # pytest: interrupted
    assert "KeyboardInterrupt" in output
    assert stopped_after < 10, f"took {stopped_after:.1f} s to stop"

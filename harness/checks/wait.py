"""``wait-listening``: wait until a slow-starting server answers, instead of a fixed sleep.

Put it first in a scenario (goss-style ``retry`` covers one check; this covers a server
that is still booting). It polls with a short connect timeout until the port accepts and,
for protocols that greet in plaintext, sends its ``220``; it never waits past its own
deadline, and a port that never answers is a diagnosis (refused or filtered), not a hang.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from harness.checks import check
from harness.results import CheckResult, Status
from harness.targets import Target

NAME = "wait-listening"
PROTOCOLS = ("ftps", "ftps-implicit", "ftp", "smtp", "submission", "submissions")
_GREETS_IN_PLAINTEXT = ("ftps", "ftp", "smtp", "submission")


def _attempt(target: Target, timeout: float) -> tuple[bool, str]:
    """One try: (ready, what was seen)."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except ConnectionRefusedError:
        return False, "connection refused (nothing listening, or a firewall REJECT)"
    except TimeoutError:
        return False, f"no answer within {timeout:g} s (filtered, or the host is down)"
    except OSError as exc:
        return False, f"cannot connect: {exc.strerror or exc}"
    with sock:
        if target.protocol not in _GREETS_IN_PLAINTEXT:
            return True, "port accepts connections (TLS first: greeting not read)"
        sock.settimeout(timeout)
        try:
            line = sock.makefile("rb").readline(512).decode("utf-8", "replace").strip()
        except (TimeoutError, OSError):
            return False, f"port accepts connections but no greeting within {timeout:g} s"
        if line.startswith("220"):
            return True, f"greeting: {line[:120]}"
        return False, f"greeting is not 220: {line[:120]!r}"


@check(NAME, PROTOCOLS)
def wait_listening(target: Target, params: dict[str, Any]) -> CheckResult:
    """Wait (up to ``params.timeout`` s, default 30) until the server greets."""
    deadline_s = float(params.get("timeout", 30.0))
    interval = float(params.get("interval", 0.2))
    if deadline_s <= 0 or interval <= 0:
        raise ValueError("params.timeout and params.interval must be positive")
    start = time.monotonic()
    deadline = start + deadline_s
    attempts = 0
    seen = ""
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        ready, seen = _attempt(target, max(0.05, min(remaining, target.timeout, 2.0)))
        elapsed = time.monotonic() - start
        if ready:
            return CheckResult(
                check=NAME,
                status=Status.PASS,
                summary=f"ready after {elapsed:.2f} s ({attempts} attempt(s))",
                expected=f"a listening server within {deadline_s:g} s",
                observed=seen,
                evidence={"attempts": attempts, "waited_s": round(elapsed, 3)},
            )
        if time.monotonic() + interval >= deadline:
            return CheckResult(
                check=NAME,
                status=Status.FAIL,
                summary=f"not ready after {elapsed:.1f} s: {seen}",
                expected=f"a listening server within {deadline_s:g} s",
                observed=seen,
                evidence={"attempts": attempts, "waited_s": round(elapsed, 3)},
                advice="Check that the service is started and listening on "
                f"{target.host}:{target.port}, and that no firewall drops the port.",
            )
        time.sleep(interval)

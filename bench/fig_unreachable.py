"""Figure: what an unreachable target costs, before and after the one-connect preflight.

The target is an FTPS URL (with a user, so the login checks try too) whose port on
127.0.0.2 is *filtered*: a listener with a full accept queue, so the kernel drops the SYN
like a firewall DROP (``harness.lab.portblock``). The scenario is the sixteen FTPS checks
of the shipped IIS walkthrough (``wait-listening`` left out: it waits as long as its own
``params.timeout`` says). ``pytest`` runs in a subprocess, timed from start to exit.

- ours: the plugin as shipped. One TCP connect with the target's timeout before its first
  check; the target then has one ERROR and fifteen could-not-run skips.
- peer: the same run with ``--lab-no-preflight``: every check connects by itself and
  waits out the timeout, which is how the harness behaved before (the "before" row).

A second row compares the time the target's checks took in the session (the sum of the
JSON report's durations) with the issue's budget: one timeout plus 1 s. The timeout is
``--probe-timeout`` (1 s; quick 0.3 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, BenchError, Context, Row, failure, interleave, random_password

FIGURE = "unreachable"
TITLE = "an unreachable (filtered) target: 16 FTPS checks, with and without the preflight"
CHECKS = (
    "banner", "feat-auth-tls", "auth-tls", "certificate-trust", "certificate-lint",
    "legacy-tls-refused", "pbsz-before-auth-refused", "pbsz-prot-p", "login",
    "plaintext-login-refused", "prot-c-refused", "pasv-address", "epsv",
    "data-session-reuse", "transfers", "quit",
)  # fmt: skip
HOST = "127.0.0.2"


def _scenario(directory: Path) -> Path:
    scenarios = directory / "scenarios"
    scenarios.mkdir()
    (scenarios / "unreachable.yaml").write_text(
        "scenario: unreachable\nprotocols: [ftps]\nchecks:\n"
        + "".join(f"  - {check}\n" for check in CHECKS)
    )
    (directory / "pytest.ini").write_text("[pytest]\n")
    return scenarios


def run(ctx: Context) -> list[Row]:
    from harness.lab.portblock import PortBlock

    timeout = ctx.settings.probe_timeout
    name = f"unreachable target (filtered port), {len(CHECKS)} FTPS checks, timeout {timeout:g} s"
    before = Row(FIGURE, f"{name}: pytest wall time", "preflight (one connect per target)",
                 "--lab-no-preflight (one timeout per check, as before)", "s", "lower",
                 target=1.0, target_text="faster than before")  # fmt: skip
    budget = Row(FIGURE, f"{name}: time in the target's checks", "preflight",
                 "budget: one timeout + 1 s", "s", "lower", target=1.0,
                 target_text="within one timeout plus 1 s")  # fmt: skip
    directory = ctx.directory("unreachable")
    scenarios = _scenario(directory)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAB_")}
    env["LAB_PASSWORD"] = random_password()
    in_checks: dict[str, list[float]] = {"ours": [], "peer": []}
    counts: dict[str, str] = {}

    try:
        with PortBlock("filtered", [(HOST, 0)]) as block:
            url = f"ftps://deploy@{HOST}:{block.port}?timeout={timeout:g}"

            def side(label: str, *extra: str) -> float:
                report = directory / f"{label}.json"
                begin = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                     "-c", str(directory / "pytest.ini"), "--rootdir", str(directory),
                     str(scenarios), "--lab-url", url, "--lab-json", str(report), *extra],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                    check=False,
                )  # fmt: skip
                elapsed = time.perf_counter() - begin
                if done.returncode != 1 or not report.exists():
                    raise BenchError(f"pytest exit {done.returncode}: {done.stdout[-500:]}")
                results = json.loads(report.read_text())["results"]
                statuses = [r["status"] for r in results]
                counts[label] = (f"{statuses.count('error')} error, "
                                 f"{statuses.count('skip')} skip")
                in_checks[label].append(sum(r["duration"] for r in results))
                return elapsed

            samples = interleave(
                {"ours": lambda: side("ours"),
                 "peer": lambda: side("peer", "--lab-no-preflight")},
                ctx.repeat, ctx.warmup,
            )  # fmt: skip
        before.ours, before.peer = samples["ours"], samples["peer"]
        budget.ours = in_checks["ours"][-ctx.repeat:]
        budget.peer = [timeout + 1.0] * len(budget.ours)
        peer_checks = sorted(in_checks["peer"][-ctx.repeat:])
        before.notes.append(
            f"results: preflight {counts['ours']}; without it {counts['peer']}; time in "
            f"the checks without the preflight: median "
            f"{peer_checks[len(peer_checks) // 2]:.2f} s"
        )
    except Exception as exc:
        failure(before, exc)
        failure(budget, exc)
    return [before, budget]

"""Figure: wall time of the full shipped scenario suite against the embedded lab.

``python -m pytest scenarios -p no:cacheprovider -q`` in a subprocess, timed from start to
exit (interpreter start, collection, every lab server, every check). There is no peer;
the issue's target is under 10 s. ``LAB_*`` variables are removed from the child's
environment so the run is always the embedded lab, never a remote target. In quick mode
only one scenario file runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, BenchError, Context, Row, failure, interleave

FIGURE = "scenarios"
TITLE = "the shipped scenario suite against the embedded lab"
TARGET_SECONDS = 10.0
QUICK_SCENARIO = "scenarios/ftps-implicit.yaml"


def run(ctx: Context) -> list[Row]:
    path = QUICK_SCENARIO if ctx.quick else "scenarios"
    row = Row(FIGURE, f"pytest {path} (subprocess wall time)", "pytest + harness plugin",
              f"target: {TARGET_SECONDS:g} s", "s", "lower",
              target=1.0, target_text=f"under {TARGET_SECONDS:g} s")  # fmt: skip
    if not (ROOT / path).exists():
        row.skip = f"{path} not found (run from a checkout)"
        return [row]
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAB_")}
    summary: list[str] = []

    def suite() -> float:
        begin = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", path, "-p", "no:cacheprovider", "-q"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - begin
        if done.returncode != 0:
            raise BenchError(f"pytest exit {done.returncode}: {done.stdout[-500:]}")
        lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
        summary.append(lines[-1] if lines else "")
        return elapsed

    try:
        samples = interleave({"ours": suite}, ctx.repeat, ctx.warmup)
        row.ours = samples["ours"]
        row.peer = [TARGET_SECONDS] * len(row.ours)
        row.notes.append(f"pytest said: {summary[-1]}")
    except Exception as exc:
        failure(row, exc)
    return [row]

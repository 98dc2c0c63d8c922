"""Figure: fleet reports: HTML for 500 targets x 40 checks, merging 8 shards, a 500-target diff.

No peer: the issue's budgets are the reference (HTML under 2 s and under 5 MB; merging 8
shards of 60 targets under 1 s; a diff of two 500-target runs under 1 s). The runs are
synthetic (``harness.report.fleet_sample``: seeded, every status, realistic evidence), so
the figure needs no servers. Merge and diff are timed from the JSON text, as ``lab report
merge`` and ``lab diff`` start (``harness.report.load.loads``: parse and normalise, then
combine); the HTML from the model, as the plugin renders it. Quick mode uses 50 targets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from common import Context, Row, failure, interleave

from harness.report import diff as diffing
from harness.report import html
from harness.report.fleet_sample import fleet_model
from harness.report.load import loads, normalise
from harness.report.merge import merge

FIGURE = "reports"
TITLE = "fleet reports: HTML, shard merge, run diff"


def _seconds(work: Callable[[], object]) -> Callable[[], float]:
    def measure() -> float:
        begin = time.perf_counter()
        work()
        return time.perf_counter() - begin

    return measure


def _row(name: str, ours: str, budget: float, unit: str = "s") -> Row:
    return Row(FIGURE, name, ours, f"budget: {budget:g} {unit}", unit, "lower",
               target=1.0, target_text=f"under {budget:g} {unit}")


def run(ctx: Context) -> list[Row]:
    targets = 50 if ctx.quick else 500
    rows: list[Row] = []
    model = fleet_model(targets, 40)
    page = _row(f"HTML report, {targets} targets x 40 checks: render", "harness.report.html",
                2.0)
    size = _row(f"HTML report, {targets} targets x 40 checks: file size",
                "harness.report.html", 5.0, "MB")
    try:
        samples = interleave({"ours": _seconds(lambda: html.render(model))},
                             ctx.repeat, ctx.warmup)
        page.ours, page.peer = samples["ours"], [2.0] * len(samples["ours"])
        megabytes = len(html.render(model).encode()) / 1e6
        size.ours, size.peer = [megabytes], [5.0]
    except Exception as exc:
        failure(page, exc)
    rows += [page, size]

    per_shard = 6 if ctx.quick else 60
    shards = [json.dumps(fleet_model(per_shard * 8, 40, shard=(i, 8)).to_dict())
              for i in range(1, 9)]
    joined = _row(f"merge 8 shards of {per_shard} targets x 40 checks (JSON text to one model)",
                  "harness.report.merge", 1.0)
    try:
        def combine() -> object:
            return merge([(f"s{i}", loads(text)) for i, text in enumerate(shards, 1)])
        samples = interleave({"ours": _seconds(combine)}, ctx.repeat, ctx.warmup)
        joined.ours, joined.peer = samples["ours"], [1.0] * len(samples["ours"])
    except Exception as exc:
        failure(joined, exc)
    rows.append(joined)

    old = fleet_model(targets, 40).to_dict()
    new = fleet_model(targets, 40, seed=8).to_dict()
    texts = json.dumps(old), json.dumps(new)
    compared = _row(f"diff two {targets}-target runs x 40 checks (JSON text to changes)",
                    "harness.report.diff", 1.0)
    try:
        def compare() -> object:
            return diffing.diff(loads(texts[0]), loads(texts[1]))
        samples = interleave({"ours": _seconds(compare)}, ctx.repeat, ctx.warmup)
        compared.ours, compared.peer = samples["ours"], [1.0] * len(samples["ours"])
        compared.notes.append(f"{len(diffing.diff(normalise(old), normalise(new)).changes)} "
                              "changes found")
    except Exception as exc:
        failure(compared, exc)
    rows.append(compared)
    return rows

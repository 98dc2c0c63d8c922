"""The few lines at the end of a run: counts per target, then one line per problem.

pytest has already printed each failure in full; this is the overview someone reads
first: which server is broken, what the diagnosis is and what to do about it.
"""

from __future__ import annotations

from harness.report.model import STATUSES, RunModel, printable

SUMMARY_WIDTH = 110
ADVICE_WIDTH = 120


def _clip(text: str, width: int) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def lines(model: RunModel) -> list[str]:
    """Counts per target (aligned) with ``ok`` or how many results were not as expected,
    then one ``STATUS target scenario::check: summary -> advice`` line per such result."""
    if not model.results and not model.collection_errors:
        return []
    by_target = model.counts_by_target()
    width = max((len(t.id) for t in model.targets), default=0)
    out: list[str] = []
    for target in model.targets:
        counts = by_target[target.id]
        numbers = "  ".join(f"{counts[s]:>3} {s}" for s in STATUSES)
        verdict = f"{counts['unexpected']} not as expected" if counts["unexpected"] else "ok"
        out.append(f"{printable(target.id):<{width}}  {numbers}  {verdict}")
    problems = model.problems()
    if problems:
        out.append(f"{len(problems)} result(s) not as expected:")
    for record in problems:
        label = record.status.upper()
        if record.expect != "pass":
            label += f" (expected {record.expect})"
        line = (
            f"  {label} {printable(record.target)} {printable(record.case)}: "
            f"{_clip(record.summary or record.message, SUMMARY_WIDTH)}"
        )
        if record.advice:
            line += f" -> {_clip(record.advice, ADVICE_WIDTH)}"
        out.append(line)
    for problem in model.collection_errors:
        headline = _clip(problem.headline(), SUMMARY_WIDTH)
        out.append(f"  NOT RUN {printable(problem.nodeid)}: {headline}")
    return out

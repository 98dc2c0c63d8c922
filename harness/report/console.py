"""The few lines at the end of a run: counts per target, then one line per problem.

pytest has already printed each failure in full; this is the overview someone reads
first: which server is broken, what the diagnosis is and what to do about it.
"""

from __future__ import annotations

from harness.report.model import SKIP_COUNT_KEYS, STATUSES, ResultRecord, RunModel, printable

SUMMARY_WIDTH = 110
ADVICE_WIDTH = 120


def _clip(text: str, width: int) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def verdict(counts: dict[str, int]) -> str:
    """``ok`` only when every result was as expected, nothing warned and nothing skipped;
    otherwise how many were not as expected, warned and skipped (by kind).

    A skip is never ``ok``: a check that did not run proved nothing, and the reader must
    see whether it did not apply or could not be run. Nor is a warning: it passes the
    run, but it is a deviation someone should read.
    """
    parts: list[str] = []
    if counts["unexpected"]:
        parts.append(f"{counts['unexpected']} not as expected")
    if counts["warn"]:
        parts.append(f"{counts['warn']} warning(s)")
    if counts["skip"]:
        kinds = ", ".join(
            f"{counts[key]} {kind.replace('-', ' ')}"
            for kind, key in SKIP_COUNT_KEYS.items()
            if counts[key]
        )
        parts.append(f"{counts['skip']} skipped ({kinds})")
    return "; ".join(parts) or "ok"


def _line(label: str, record: ResultRecord) -> str:
    line = (
        f"  {label} {printable(record.target)} {printable(record.case)}: "
        f"{_clip(record.summary or record.message, SUMMARY_WIDTH)}"
    )
    if record.advice:
        line += f" -> {_clip(record.advice, ADVICE_WIDTH)}"
    return line


def lines(model: RunModel) -> list[str]:
    """Counts per target (aligned) with ``ok`` or how many results were not as expected,
    warned and skipped; then one ``STATUS target scenario::check: summary -> advice`` line
    per result not as expected, then one ``WARN ...`` line per warning that passed."""
    if not model.results and not model.collection_errors:
        return []
    by_target = model.counts_by_target()
    width = max((len(t.id) for t in model.targets), default=0)
    out: list[str] = []
    for target in model.targets:
        counts = by_target[target.id]
        numbers = "  ".join(f"{counts[s]:>3} {s}" for s in STATUSES)
        out.append(f"{printable(target.id):<{width}}  {numbers}  {verdict(counts)}")
    problems = model.problems()
    if problems:
        out.append(f"{len(problems)} result(s) not as expected:")
    for record in problems:
        label = record.status.upper()
        if record.skip_kind:
            label += f" ({record.skip_label})"
        if record.expect != "pass":
            label += f" (expected {record.expect})"
        out.append(_line(label, record))
    for problem in model.collection_errors:
        headline = _clip(problem.headline(), SUMMARY_WIDTH)
        out.append(f"  NOT RUN {printable(problem.nodeid)}: {headline}")
    warnings = model.warnings()
    if warnings:
        out.append(f"{len(warnings)} warning(s) (passed; strict fails them):")
    out.extend(_line("WARN", record) for record in warnings)
    return out

"""Skip reasons, grouped and counted at the end of every run.

pytest prints only "N skipped" unless ``-rs`` is given, and ``-rs`` lists one line per
location. A run in which a whole interoperability suite skipped for a missing package then
looks green; this summary puts every distinct reason, with its count, on the last screen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

SECTION = "skip reasons"


def skip_reason(report: pytest.TestReport) -> str:
    """The human reason of a skipped report, without pytest's ``Skipped:`` prefix."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
    for prefix in ("Skipped: ", "SKIP "):
        text = text.removeprefix(prefix)
    return " ".join(text.split()) or "(no reason given)"


def group_reasons(reports: Iterable[pytest.TestReport]) -> list[tuple[int, str]]:
    """``(count, reason)`` pairs, most frequent first, ties in alphabetical order."""
    counts = Counter(skip_reason(r) for r in reports if r.skipped)
    return sorted(((n, reason) for reason, n in counts.items()), key=lambda p: (-p[0], p[1]))


class SkipSummary:
    """Writes the grouped skip reasons after pytest's own summary (controller only)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(terminalreporter.config, "workerinput"):
            return
        reports = [r for r in terminalreporter.stats.get("skipped", [])
                   if isinstance(r, pytest.TestReport)]
        grouped = group_reasons(reports)
        if not grouped or terminalreporter.config.get_verbosity() < -1:
            return
        terminalreporter.write_sep("-", f"{SECTION} ({sum(n for n, _ in grouped)} skipped)")
        for count, reason in grouped:
            terminalreporter.write_line(f"{count:5d}  {reason}")

"""Skip reasons grouped and counted (harness/report/skips.py)."""

from __future__ import annotations

import pytest

from harness.report.skips import group_reasons, skip_reason


def _skipped(reason: str, *, as_tuple: bool = True) -> pytest.TestReport:
    longrepr = ("t.py", 3, f"Skipped: {reason}") if as_tuple else reason
    return pytest.TestReport("t.py::x", ("t.py", 3, "x"), {}, "skipped", longrepr, "call")


def test_reasons_are_grouped_counted_and_ordered() -> None:
    reports = [_skipped("needs root"), _skipped("b"), _skipped("needs root"),
               _skipped("a", as_tuple=False)]
    reports.append(pytest.TestReport("t.py::y", ("t.py", 4, "y"), {}, "passed", None, "call"))
    assert group_reasons(reports) == [(2, "needs root"), (1, "a"), (1, "b")]


def test_a_reason_is_one_line_without_the_prefix() -> None:
    assert skip_reason(_skipped("vsftpd is\n  not installed")) == "vsftpd is not installed"
    assert skip_reason(_skipped("")) == "(no reason given)"

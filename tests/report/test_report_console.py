"""The end-of-run summary: counts per target, one line per problem with its advice."""

from __future__ import annotations

from report_samples import IIS, MAIL, PASSWORD, synthetic_model, synthetic_run_info

from harness.report import console
from harness.report.model import RunModel


def test_counts_per_target_then_one_line_per_problem() -> None:
    lines = console.lines(synthetic_model(errors=True))
    assert lines[0].split() == [
        IIS.id, "1", "pass", "2", "fail", "1", "skip", "1", "error", "2", "not", "as", "expected"
    ]
    assert lines[1].startswith(MAIL.id + " ") and lines[1].endswith("1 not as expected")
    assert lines[2] == "3 result(s) not as expected:"
    problems = lines[3:6]
    assert problems[0].startswith(f"  FAIL {IIS.id} iis-site::certificate-trust: certificate")
    assert problems[0].endswith("-> Renew the certificate and bind the new one.")
    assert problems[1].startswith(f"  ERROR {IIS.id} iis-site::data-session-reuse: connection")
    assert "-> Open the passive port range" in problems[1]
    assert "RuntimeError: boom" in problems[2]
    assert lines[6].startswith("  NOT RUN scenarios/broken.yaml: ")
    assert len(lines) == 7


def test_expected_failures_are_not_listed_and_lines_stay_short() -> None:
    model = synthetic_model()
    model.results = [r for r in model.results if r.target == IIS.id and r.as_expected]
    assert console.lines(model)[0].endswith("  0 error  ok")
    lines = console.lines(synthetic_model())
    assert not any("legacy-caught" in line for line in lines)
    assert all(len(line) < 320 for line in lines)
    assert PASSWORD not in "\n".join(lines)


def test_long_text_is_clipped_and_control_characters_shown() -> None:
    model = synthetic_model()
    record = next(r for r in model.results if r.check_id == "certificate-trust")
    record.summary = "x\x1b[2J" + "y" * 500
    line = next(line for line in console.lines(model) if "certificate-trust" in line)
    assert "\x1b" not in line and "x\\x1b[2J" in line and "…" in line


def test_nothing_to_say_without_results() -> None:
    assert console.lines(RunModel.build(synthetic_run_info(), [])) == []

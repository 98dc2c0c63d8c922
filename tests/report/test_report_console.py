"""The end-of-run summary: counts per target, one line per problem with its advice."""

from __future__ import annotations

from report_samples import IIS, MAIL, PASSWORD, synthetic_model, synthetic_run_info

from harness.report import console
from harness.report.model import RunModel


def test_counts_per_target_then_one_line_per_problem_then_the_warnings() -> None:
    lines = console.lines(synthetic_model(errors=True))
    assert lines[0].split() == [
        IIS.id, "1", "pass", "0", "warn", "2", "fail", "1", "skip", "1", "error",
        "2", "not", "as", "expected;", "1", "skipped", "(1", "could", "not", "run)",
    ]
    assert lines[1].startswith(MAIL.id + " ")
    assert lines[1].endswith(
        "1 not as expected; 1 warning(s); 1 skipped (1 not applicable)"
    )
    assert lines[2] == "3 result(s) not as expected:"
    problems = lines[3:6]
    assert problems[0].startswith(f"  FAIL {IIS.id} iis-site::certificate-trust: certificate")
    assert problems[0].endswith("-> Renew the certificate and bind the new one.")
    assert problems[1].startswith(f"  ERROR {IIS.id} iis-site::data-session-reuse: connection")
    assert "-> Open the passive port range" in problems[1]
    assert "RuntimeError: boom" in problems[2]
    assert lines[6].startswith("  NOT RUN scenarios/broken.yaml: ")
    # A warning passed the run, but is shown with its advice.
    assert lines[7] == "1 warning(s) (passed; strict fails them):"
    assert lines[8] == (
        f"  WARN {MAIL.id} submission::extensions: not offered after TLS: PIPELINING, "
        "ENHANCEDSTATUSCODES, DSN -> Offer the missing extensions (Postfix: "
        "smtpd_discard_ehlo_keywords)."
    )
    assert len(lines) == 9


def test_a_warning_is_not_ok_and_under_strict_is_a_problem() -> None:
    model = synthetic_model()
    model.results = [r for r in model.results if r.check_id in ("starttls", "extensions")]
    model.targets = [t for t in model.targets if t.id == MAIL.id]
    assert console.lines(model)[0].endswith("  0 error  1 warning(s)")
    warn = next(r for r in model.results if r.status == "warn")
    warn.outcome, warn.message = "failed", "check warned, expected pass; --lab-strict fails it"
    lines = console.lines(model)
    assert lines[0].endswith("  0 error  1 not as expected; 1 warning(s)")
    assert lines[1:] == [
        "1 result(s) not as expected:",
        f"  WARN {MAIL.id} submission::extensions: not offered after TLS: PIPELINING, "
        "ENHANCEDSTATUSCODES, DSN -> Offer the missing extensions (Postfix: "
        "smtpd_discard_ehlo_keywords).",
    ]


def test_a_skip_is_never_ok_and_says_its_kind() -> None:
    """A target whose only imperfection is a skip under expect: pass is not "ok"."""
    model = synthetic_model()
    model.results = [r for r in model.results if r.target == IIS.id and r.as_expected]
    assert [r.status for r in model.results].count("skip") == 1
    assert console.lines(model)[0].endswith("  0 error  1 skipped (1 could not run)")
    model.results = [r for r in model.results if r.status != "skip"]
    assert console.lines(model)[0].endswith("  0 error  ok")


def test_expected_failures_are_not_listed_and_lines_stay_short() -> None:
    model = synthetic_model()
    model.results = [
        r for r in model.results if r.target == IIS.id and r.as_expected and r.status != "skip"
    ]
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

"""A skip under ``expect: pass`` is counted as a skip, of one of two kinds, never as "ok".

The scenario below runs against the embedded lab and skips twice, once of each kind:

- ``smtp-certificate-trust`` on a server whose trust is ``insecure``: the check applies but
  has nothing to verify against, so it *could not run* (the certificate is unproven);
- ``mail-before-auth-refused`` on an MTA (port 25 role): an MTA accepts mail without AUTH,
  so the check is *not applicable*.

``--lab-strict`` (or ``LAB_STRICT``, or the ``lab_strict`` ini key) fails the first and
leaves the second a skip.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.report import json_report

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

SCENARIO = """\
scenario: skip-kinds
description: one skip of each kind
protocols: [submission, smtp]
lab:
  - name: sub
    server: smtp
    trust: insecure
  - name: mta
    server: smtp
    role: mta
checks:
  - smtp-banner
  - check: smtp-certificate-trust
    targets: [sub]
  - check: mail-before-auth-refused
    targets: [mta]
"""
SUB, MTA = "submission://lab-sub", "smtp://lab-mta"


@pytest.fixture
def scenario(pytester: pytest.Pytester) -> Path:
    path = pytester.path / "scenarios" / "skip-kinds.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO)
    return path


def _run(pytester: pytest.Pytester, scenario: Path, *args: str) -> pytest.RunResult:
    # A subprocess, as users run it: an in-process run would drop and re-import modules
    # (cryptography's among them) between runs.
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rs", str(scenario),
        "--lab-json", "r.json", "--lab-junit", "r.xml", "--lab-html", "r.html", *args,
    )


def _summary(result: pytest.RunResult) -> list[str]:
    out = result.stdout.lines
    start = next(i for i, line in enumerate(out) if "ftps-lab summary" in line)
    return out[start + 1 :]


def test_skips_are_counted_by_kind_in_every_output(
    pytester: pytest.Pytester, scenario: Path
) -> None:
    result = _run(pytester, scenario)
    result.assert_outcomes(passed=2, skipped=2)
    summary = _summary(result)
    by_target = {line.split()[0]: line for line in summary if line.startswith(("smtp", "sub"))}
    assert by_target[SUB].endswith("0 error  1 skipped (1 could not run)"), by_target
    assert by_target[MTA].endswith("0 error  1 skipped (1 not applicable)"), by_target
    assert not any(line.rstrip().endswith(" ok") for line in by_target.values())
    # pytest's own skip reasons name the kind (-rs and the grouped skip summary).
    text = result.stdout.str()
    assert "could not run: target trust is 'insecure'" in text
    assert "not applicable: an MTA on port 25 accepts mail without AUTH" in text

    document = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    json_report.validate(document)
    kinds = {(r["check_id"], r["target"]): (r["status"], r["outcome"], r["skip_kind"])
             for r in document["results"]}
    assert kinds[("smtp-certificate-trust", SUB)] == ("skip", "skipped", "could-not-run")
    assert kinds[("mail-before-auth-refused", MTA)] == ("skip", "skipped", "not-applicable")
    assert kinds[("smtp-banner", SUB)] == ("pass", "passed", None)
    totals = document["totals"]
    assert (totals["skip"], totals["skip_not_applicable"], totals["skip_could_not_run"]) == (
        2, 1, 1
    )

    root = ET.parse(pytester.path / "r.xml").getroot()
    case = root.find(".//testcase[@name='skip-kinds::smtp-certificate-trust']")
    assert case is not None
    skipped = case.find("skipped")
    # jenkins-junit.xsd: the reason is the element's text, the facts head the system-out.
    assert skipped is not None and (skipped.text or "").startswith("could not run: ")
    assert "\nskip_kind: could-not-run\n" in "\n" + (case.findtext("system-out") or "") + "\n"

    page = (pytester.path / "r.html").read_text(encoding="utf-8")
    assert "\u2013 SKIP<small>could not run</small>" in page
    assert "\u2013 SKIP<small>not applicable</small>" in page


@pytest.mark.parametrize("how", ["flag", "env", "ini"])
def test_strict_fails_could_not_run_and_keeps_not_applicable_a_skip(
    pytester: pytest.Pytester, scenario: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args: tuple[str, ...] = ()
    if how == "flag":
        args = ("--lab-strict",)
    elif how == "env":
        monkeypatch.setenv("LAB_STRICT", "1")
    else:
        pytester.makeini("[pytest]\nlab_strict = true\n")
    result = _run(pytester, scenario, *args)
    result.assert_outcomes(passed=2, skipped=1, failed=1)
    text = result.stdout.str()
    assert "check could not run (skip), expected pass; --lab-strict fails it" in text
    summary = _summary(result)
    assert any(
        line.startswith(f"  SKIP (could not run) {SUB} skip-kinds::smtp-certificate-trust: ")
        for line in summary
    ), summary
    document = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    json_report.validate(document)
    kinds = {r["check_id"]: (r["outcome"], r["skip_kind"]) for r in document["results"]
             if r["status"] == "skip"}
    assert kinds == {
        "smtp-certificate-trust": ("failed", "could-not-run"),
        "mail-before-auth-refused": ("skipped", "not-applicable"),
    }


def test_strict_off_by_environment_wins_over_the_ini(
    pytester: pytest.Pytester, scenario: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nlab_strict = true\n")
    monkeypatch.setenv("LAB_STRICT", "0")
    _run(pytester, scenario).assert_outcomes(passed=2, skipped=2)


def test_a_skip_without_a_kind_could_not_run_and_other_statuses_have_none() -> None:
    from harness.checks.ftps_verdicts import LegacyOutcome, judge_legacy_tls
    from harness.results import CheckResult, SkipKind, Status

    assert CheckResult("x", Status.SKIP, "why").skip_kind is SkipKind.COULD_NOT_RUN
    assert CheckResult("x", Status.PASS, "ok", skip_kind=SkipKind.NOT_APPLICABLE).skip_kind is None
    # This client cannot offer TLS 1.0: the server's refusal is unproven, not irrelevant.
    legacy = judge_legacy_tls([LegacyOutcome("1.0", "untestable", "no protocols available")])
    assert (legacy.status, legacy.skip_kind) == (Status.SKIP, SkipKind.COULD_NOT_RUN)
    assert legacy.to_dict()["skip_kind"] == "could-not-run"

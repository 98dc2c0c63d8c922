"""A warning passes the run, is shown with its advice, and fails it only under strict.

``extensions`` warns against the embedded lab's submission server, honestly: aiosmtpd
offers no PIPELINING, ENHANCEDSTATUSCODES or DSN (RFC 6409 sec. 7 SHOULDs), and the
server is secure and clients work. The same check demonstrates ``expect: warn``.
Strict comes from ``--lab-strict`` (every target) or from ``strict: true`` on one
inventory target (that target only), and fails its could-not-run skips too.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.lab.smtp import SMTPLabServer, SMTPServerConfig
from harness.report import json_report

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

LAB_SCENARIO = """\
scenario: warn-demo
description: the lab's EHLO lacks RFC 6409 SHOULDs
protocols: [submission]
lab:
  - name: sub
    server: smtp
checks:
  - smtp-banner
  - extensions
  - check: extensions
    id: extensions-demo
    expect: warn
  - check: smtp-banner
    id: banner-not-a-warning
    expect: warn
"""
SUB = "submission://lab-sub"
WARNING = "not offered after TLS: PIPELINING, ENHANCEDSTATUSCODES, DSN"


def _scenario(pytester: pytest.Pytester, text: str, name: str) -> Path:
    path = pytester.path / "scenarios" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lab-json", "r.json", "--lab-junit", "r.xml",
        "--lab-html", "r.html", *args,
    )


def _document(pytester: pytest.Pytester) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((pytester.path / "r.json").read_text("utf-8"))
    json_report.validate(document)
    return document


def _summary(result: pytest.RunResult) -> list[str]:
    out = result.stdout.lines
    start = next(i for i, line in enumerate(out) if "ftps-lab summary" in line)
    return out[start + 1 :]


def test_a_warning_passes_and_every_report_shows_it_with_its_advice(
    pytester: pytest.Pytester,
) -> None:
    path = _scenario(pytester, LAB_SCENARIO, "warn.yaml")
    result = _run(pytester, str(path))
    # extensions (expect pass) and extensions-demo (expect warn) pass; a pass under
    # expect: warn does not meet it.
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*expected this check to report the deviation (status warn), "
                                 "but it ended pass*"])
    summary = _summary(result)
    assert summary[0].split()[:11] == [SUB, "2", "pass", "2", "warn", "0", "fail", "0", "skip",
                                       "0", "error"]
    assert summary[0].endswith("1 not as expected; 2 warning(s)")
    assert "1 warning(s) (passed; strict fails them):" in summary
    warn_lines = [line for line in summary if line.startswith("  WARN ")]
    assert len(warn_lines) == 1  # the demonstration (expect: warn) is not listed
    assert warn_lines[0].startswith(f"  WARN {SUB} warn-demo::extensions: {WARNING} -> Offer")

    results = {r["check_id"]: r for r in _document(pytester)["results"]}
    assert [(results[c]["status"], results[c]["outcome"]) for c in
            ("extensions", "extensions-demo", "banner-not-a-warning")] == [
        ("warn", "passed"), ("warn", "passed"), ("pass", "failed")
    ]
    assert results["extensions"]["advice"].startswith("Offer the missing extensions")

    case = ET.parse(pytester.path / "r.xml").getroot().find(
        ".//testcase[@name='warn-demo::extensions']"
    )
    assert case is not None and case.find("failure") is None
    # jenkins-junit.xsd allows no <properties> on a test case: the facts head its system-out.
    out = case.findtext("system-out") or ""
    assert out.startswith(f"WARN extensions: {WARNING}\nadvice:")
    assert "\nstatus: warn\n" in out
    page = (pytester.path / "r.html").read_text("utf-8")
    assert '<td class="warn"><a class="cell"' in page and "\u26a0 WARN" in page


@pytest.mark.parametrize("how", ["flag", "env", "ini"])
def test_strict_fails_a_warning_under_expect_pass_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = _scenario(pytester, LAB_SCENARIO.replace("  - check: smtp-banner\n    id: banner-"
                                                    "not-a-warning\n    expect: warn\n", ""),
                     "warn.yaml")
    args: tuple[str, ...] = ()
    if how == "flag":
        args = ("--lab-strict",)
    elif how == "env":
        monkeypatch.setenv("LAB_STRICT", "1")
    else:
        pytester.makeini("[pytest]\nlab_strict = true\n")
    result = _run(pytester, str(path), *args)
    result.assert_outcomes(passed=2, failed=1)  # the demonstration still meets expect: warn
    result.stdout.fnmatch_lines(["*check warned, expected pass; --lab-strict fails it*"])
    assert any(line.startswith(f"  WARN {SUB} warn-demo::extensions: ")
               for line in _summary(result))
    results = {r["check_id"]: r for r in _document(pytester)["results"]}
    assert (results["extensions"]["status"], results["extensions"]["outcome"]) == (
        "warn", "failed"
    )
    case = ET.parse(pytester.path / "r.xml").getroot().find(
        ".//testcase[@name='warn-demo::extensions']/failure"
    )
    assert case is not None and case.get("type") == "warn"


REMOTE_SCENARIO = """\
scenario: remote-warn
description: a warning and a could-not-run skip on two targets, one of them strict
protocols: [submission]
checks:
  - smtp-banner
  - extensions
  - auth-plain
"""


@pytest.fixture
def mail_server(tls_files: dict[str, Path]) -> Iterator[SMTPLabServer]:
    config = SMTPServerConfig(role="submission", users={"alice": "Warn-Pw-1"},
                              cert_file=tls_files["cert"], key_file=tls_files["key"])
    with SMTPLabServer(config) as server:
        yield server


def test_strict_true_on_an_inventory_target_fails_its_warnings_and_skips_only(
    pytester: pytest.Pytester, mail_server: SMTPLabServer, tls_files: dict[str, Path]
) -> None:
    """Two names for one server: ``strict`` is on one of them (no user on either, so
    auth-plain could not run)."""
    pytester.path.joinpath("inventory.yaml").write_text(
        "version: 1\n"
        f"defaults: {{port: {mail_server.port}, server_name: localhost, timeout: 5,\n"
        f"           trust: {{ca_file: {tls_files['ca']}}}}}\n"
        "targets:\n"
        "  relaxed: {protocol: submission, host: 127.0.0.1}\n"
        "  picky: {protocol: submission, host: 127.0.0.1, strict: true}\n"
    )
    path = _scenario(pytester, REMOTE_SCENARIO, "remote.yaml")
    result = _run(pytester, str(path), "--lab-inventory", "inventory.yaml")
    result.assert_outcomes(passed=3, skipped=1, failed=2)
    result.stdout.fnmatch_lines([
        "*check warned, expected pass; strict: true on target picky fails it*",
        "*check could not run (skip), expected pass; strict: true on target picky fails it*",
    ])
    outcomes = {(r["check_id"], r["target"]): (r["status"], r["outcome"])
                for r in _document(pytester)["results"]}
    assert outcomes == {
        ("smtp-banner", "submission://relaxed"): ("pass", "passed"),
        ("smtp-banner", "submission://picky"): ("pass", "passed"),
        ("extensions", "submission://relaxed"): ("warn", "passed"),
        ("extensions", "submission://picky"): ("warn", "failed"),
        ("auth-plain", "submission://relaxed"): ("skip", "skipped"),
        ("auth-plain", "submission://picky"): ("skip", "failed"),
    }

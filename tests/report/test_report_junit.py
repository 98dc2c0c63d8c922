"""JUnit XML: one testsuite per target, parseable, and shaped as CI servers expect."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from report_samples import CONTROL, HOSTILE, IIS, MAIL, PASSWORD, synthetic_model

from harness.report import junit

# The JUnit shape Jenkins, GitLab and Azure read (jenkins-junit.xsd, validated in full in
# test_report_junit_xsd.py): element -> (allowed attributes, allowed children).
SHAPE: dict[str, tuple[set[str], set[str]]] = {
    "testsuites": (
        {"name", "tests", "failures", "errors", "time"},
        {"testsuite"},
    ),
    "testsuite": (
        {"name", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname"},
        {"properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), {"property"}),
    "property": ({"name", "value"}, set()),
    "testcase": (
        {"name", "classname", "time"},
        {"failure", "error", "skipped", "system-out", "system-err"},
    ),
    "failure": ({"message", "type"}, set()),
    "error": ({"message", "type"}, set()),
    "skipped": (set(), set()),
    "system-out": (set(), set()),
    "system-err": (set(), set()),
}
COUNTED = ("tests", "failures", "errors", "skipped")


def check_structure(root: ET.Element) -> None:
    """Every element, attribute and count where a JUnit consumer expects it."""
    assert root.tag == "testsuites"
    for element in root.iter():
        attributes, children = SHAPE[element.tag]
        assert set(element.attrib) <= attributes, (element.tag, element.attrib)
        for child in element:
            assert child.tag in children, (element.tag, child.tag)
        for key in COUNTED:
            if key in element.attrib:
                assert int(element.attrib[key]) >= 0
        if "time" in element.attrib:
            assert float(element.attrib["time"]) >= 0
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases)
        outcomes = [c.find("failure") is not None for c in cases]
        assert int(suite.get("failures", "-1")) == sum(outcomes)
        assert int(suite.get("errors", "-1")) == sum(c.find("error") is not None for c in cases)
        assert int(suite.get("skipped", "-1")) == sum(c.find("skipped") is not None for c in cases)
        for case in cases:
            verdicts = [c for c in case if c.tag in ("failure", "error", "skipped")]
            assert len(verdicts) <= 1
    for key in ("tests", "failures", "errors"):
        assert int(root.get(key, "-1")) == sum(int(s.get(key, "0")) for s in root)


def _properties(element: ET.Element) -> dict[str, str]:
    """A suite's properties, or a test case's facts (``key: value`` heading system-out)."""
    if element.tag == "testcase":
        lines = (element.findtext("system-out") or "").split("\ntranscript:")[0].splitlines()
        pairs = [line.split(": ", 1) for line in lines if not line.startswith("WARN ")]
        return {k: v for k, v in pairs if k in junit.FACT_KEYS or k == "advice"}
    found = element.find("properties")
    assert found is not None
    return {p.get("name", ""): p.get("value", "") for p in found.findall("property")}


@pytest.fixture(scope="module")
def root() -> ET.Element:
    return ET.fromstring(junit.render(synthetic_model(errors=True)).encode("utf-8"))


def test_it_parses_and_has_the_junit_shape(root: ET.Element) -> None:
    check_structure(root)


def test_one_testsuite_per_target(root: ET.Element) -> None:
    names = [s.get("name") for s in root.findall("testsuite")]
    assert names == [IIS.id, MAIL.id, "collection"]
    iis = root.find(f"testsuite[@name='{IIS.id}']")
    assert iis is not None
    suite_properties = _properties(iis)
    assert suite_properties["target"] == IIS.id
    assert suite_properties["groups"] == "iis,release-42"
    assert suite_properties["label.site"] == "<Default FTP Site>"
    assert [c.get("name") for c in iis.findall("testcase")] == [
        "iis-site::banner",
        "iis-site::certificate-trust",
        "iis-site::legacy-caught",
        "iis-site::data-session-reuse",
        "iis-site::epsv",
    ]
    assert (iis.get("tests"), iis.get("failures"), iis.get("errors"), iis.get("skipped")) == (
        "5", "1", "1", "1"
    )


def test_testcase_properties_and_failure_text(root: ET.Element) -> None:
    model = synthetic_model()
    record = next(r for r in model.results if r.check_id == "certificate-trust")
    case = root.find(f"testsuite[@name='{IIS.id}']/testcase[@name='iis-site::certificate-trust']")
    assert case is not None
    assert _properties(case) == {
        "target": IIS.id,
        "protocol": "ftps",
        "tls_version": "TLSv1.3",
        "status": "fail",
        "expect": "pass",
        "cert_days_left": "-400",
        "file": "scenarios/iis-site.yaml:11",
    }
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == record.summary
    text = failure.text or ""
    assert record.describe().splitlines()[0] in text
    assert "advice:   Renew the certificate" in text
    assert HOSTILE in text  # escaped in the file, intact once parsed


def test_an_expected_failure_is_a_passing_testcase(root: ET.Element) -> None:
    case = root.find(f"testsuite[@name='{IIS.id}']/testcase[@name='iis-site::legacy-caught']")
    assert case is not None
    assert _properties(case)["status"] == "fail" and _properties(case)["expect"] == "fail"
    assert [c.tag for c in case if c.tag in ("failure", "error", "skipped")] == []


def test_errors_skips_and_collection_errors(root: ET.Element) -> None:
    reuse = root.find(".//testcase[@name='iis-site::data-session-reuse']")
    assert reuse is not None and reuse.find("error") is not None
    internal = root.find(".//testcase[@name='submission::internal']")
    assert internal is not None
    error = internal.find("error")
    assert error is not None and "RuntimeError: boom" in (error.get("message") or "")
    skipped = root.find(".//testcase[@name='submission::not-applicable']/skipped")
    assert skipped is not None and "does not apply" in (skipped.text or "")


def test_a_skip_says_its_kind(root: ET.Element) -> None:
    """Property and message name the kind; the suite counts each kind."""
    for name, kind in (("submission::not-applicable", "not-applicable"),
                       ("iis-site::epsv", "could-not-run")):
        case = root.find(f".//testcase[@name='{name}']")
        assert case is not None
        assert _properties(case)["skip_kind"] == kind
        skipped = case.find("skipped")
        assert skipped is not None
        assert (skipped.text or "").startswith(kind.replace("-", " ") + ": ")
    iis = _properties(root.find(f"testsuite[@name='{IIS.id}']"))  # type: ignore[arg-type]
    assert (iis["checks_skip"], iis["checks_skip_could_not_run"]) == ("1", "1")
    assert iis["checks_skip_not_applicable"] == "0"
    trust = root.find(".//testcase[@name='iis-site::certificate-trust']")
    assert trust is not None and "skip_kind" not in _properties(trust)
    broken = root.find("testsuite[@name='collection']/testcase/error")
    assert broken is not None and "polcy" in (broken.get("message") or "")
    assert root.get("errors") == "3"


def test_a_warning_passes_with_its_advice_in_system_out(
    root: ET.Element,
) -> None:
    case = root.find(".//testcase[@name='submission::extensions']")
    assert case is not None
    assert [c.tag for c in case if c.tag in ("failure", "error", "skipped")] == []
    props = _properties(case)
    assert props["status"] == "warn" and props["expect"] == "pass"
    assert props["advice"].startswith("Offer the missing extensions")
    out = (case.findtext("system-out") or "").splitlines()
    assert out[:2] == [
        "WARN extensions: not offered after TLS: PIPELINING, ENHANCEDSTATUSCODES, DSN",
        "advice: Offer the missing extensions (Postfix: smtpd_discard_ehlo_keywords).",
    ]
    after = out[out.index("transcript:") + 1]
    assert after.endswith("> EHLO ftps-lab.test")
    mail = _properties(root.find(f"testsuite[@name='{MAIL.id}']"))  # type: ignore[arg-type]
    assert mail["checks_warn"] == "1"


def test_a_warning_failed_under_strict_is_a_failure() -> None:
    model = synthetic_model()
    warn = next(r for r in model.results if r.status == "warn")
    warn.outcome, warn.message = "failed", "check warned, expected pass; --lab-strict fails it"
    root = ET.fromstring(junit.render(model).encode("utf-8"))
    check_structure(root)
    failure = root.find(".//testcase[@name='submission::extensions']/failure")
    assert failure is not None and failure.get("type") == "warn"
    assert (failure.get("message") or "").startswith(
        "check warned, expected pass; --lab-strict fails it: not offered after TLS"
    )
    assert "advice:   Offer the missing extensions" in (failure.text or "")


def test_control_characters_cannot_break_the_xml(tmp_path: Path) -> None:
    text = junit.render(synthetic_model())
    assert "\x00" not in text and "\x1b" not in text
    assert "550 bad\\x00\\x1b[31mred\\x07\\x0c" in ET.fromstring(text.encode()).find(
        ".//testcase[@name='iis-site::certificate-trust']/failure"
    ).text  # type: ignore[union-attr]
    assert CONTROL not in text
    path = tmp_path / "junit.xml"
    junit.write(synthetic_model(), path)
    check_structure(ET.parse(path).getroot())


def test_no_password_in_the_xml() -> None:
    text = junit.render(synthetic_model())
    assert PASSWORD not in text
    assert PASSWORD in junit.render(synthetic_model(scrub=False))

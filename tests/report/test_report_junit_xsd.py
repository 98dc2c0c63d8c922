"""The JUnit file against jenkins-junit.xsd, and read back the way CI tools read it.

``jenkins-junit.xsd`` (beside this file) is the schema JUnit 5 validates its own XML with
and most JUnit readers (Jenkins, GitLab, junitparser) accept: no properties on a test
case, no attributes on ``<skipped>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from report_samples import synthetic_model

from harness.report import junit
from harness.report.fleet_sample import fleet_model

XSD = Path(__file__).with_name("jenkins-junit.xsd")
etree = pytest.importorskip("lxml.etree", reason="lxml is in the test extra")
junitparser = pytest.importorskip("junitparser", reason="junitparser is in the test extra")


def assert_valid(text: str) -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    document = etree.fromstring(text.encode("utf-8"))
    assert schema.validate(document), schema.error_log


@pytest.mark.parametrize("errors", [False, True])
def test_every_status_validates(errors: bool) -> None:
    assert_valid(junit.render(synthetic_model(errors=errors)))


def test_a_fleet_validates() -> None:
    assert_valid(junit.render(fleet_model(20, 12)))


def test_junitparser_reads_warns_skips_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "lab.xml"
    junit.write(synthetic_model(), path)
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert "ftps://iis-build-42" in suites
    cases = {case.name: case for suite in xml for case in suite}
    warn = cases["submission::extensions"]
    assert warn.is_passed and warn.system_out.startswith("WARN extensions: not offered")
    skip = cases["submission::not-applicable"]
    assert skip.is_skipped
    (skipped,) = skip.result
    assert skipped.text.startswith("not applicable: ")
    epsv = cases["iis-site::epsv"]
    assert epsv.result[0].text.startswith("could not run: ")
    trust = cases["iis-site::certificate-trust"]
    (failure,) = trust.result
    assert isinstance(failure, junitparser.Failure) and failure.type == "fail"
    assert "cert_days_left: -400" in trust.system_out
    iis = suites["ftps://iis-build-42"]
    props = {p.name: p.value for p in iis.properties()}
    assert props["cert_days_left"] == "-400" and props["checks_fail"] == "2"
